//! Java-compatible key partitioning: Kafka's `Utils.murmur2` and `BuiltInPartitioner.partitionForKey`.
//!
//! librdkafka's `partitioner=murmur2_random` computes the same function for every non-null key
//! (including the empty key, which is hashed, not treated as null); a null key gets a random
//! partition. Golden vectors from the Java client (`scripts/java/Murmur2Vectors.java`) are
//! checked against both this function and librdkafka in the tests.

/// Kafka's `org.apache.kafka.common.utils.Utils.murmur2` (32-bit MurmurHash2, seed `0x9747b28c`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Java uses `int` length; keys never exceed i32::MAX bytes.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java producer (and librdkafka's `murmur2_random`) picks for a non-null key:
/// `toPositive(murmur2(key)) % partitions`. Returns `None` when `partitions <= 0`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> Option<i32> {
    if partitions <= 0 {
        return None;
    }
    Some((murmur2(key) & 0x7fff_ffff) % partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `crates/producer/tests/fixtures/murmur2_vectors.csv`.
    pub(crate) fn vectors() -> Vec<(Vec<u8>, i32, i32)> {
        let text = include_str!("../tests/fixtures/murmur2_vectors.csv");
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut it = l.split(',');
                let hex = it.next().expect("key_hex");
                let n: i32 = it.next().expect("partitions").parse().expect("int");
                let p: i32 = it.next().expect("partition").parse().expect("int");
                let key = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect();
                (key, n, p)
            })
            .collect()
    }

    #[test]
    fn matches_java_golden_vectors() {
        let v = vectors();
        assert!(
            v.len() >= 500,
            "expected the full vector set, got {}",
            v.len()
        );
        let mut empty_seen = false;
        let mut non_ascii_seen = false;
        for (key, n, expected) in &v {
            empty_seen |= key.is_empty();
            non_ascii_seen |= key.iter().any(|b| *b >= 0x80);
            assert_eq!(
                partition_for_key(key, *n),
                Some(*expected),
                "key {key:02x?} partitions {n}"
            );
        }
        assert!(empty_seen && non_ascii_seen);
    }

    #[test]
    fn known_java_values() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(partition_for_key(b"x", 0), None);
    }
}
