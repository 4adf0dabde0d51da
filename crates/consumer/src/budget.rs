//! One byte budget per member, split between librdkafka's prefetch and our in-flight window.
//!
//! Why both at once: librdkafka prefetches into its consumer queue on its own threads, and a
//! member holds records it handed to partition owners until they finish. Either alone can take
//! all the memory when the handler is slower than the fetcher, so one number bounds both.
//!
//! librdkafka's limits count other bytes than memory holds. Its queue threshold counts message
//! bytes, but a message lives in its batch's decompression buffer, freed with the batch's last
//! message: for lz4 that buffer starts at 4× the compressed batch (librdkafka does not know the
//! decompressed size), so text that compresses 2× takes twice the bytes counted. Its fetch limits
//! count compressed bytes, so one fetch response of `F` bytes becomes up to `4F` of buffers, one
//! response in flight per broker. The split charges each part for what it takes in memory with
//! lz4 on data compressing about 2×, fetching from one broker:
//!
//! ```text
//!                                               counted by librdkafka   held in memory
//! queued.max.messages.kbytes = B/4 / 1024       B/4                     2 × B/4
//! fetch.max.bytes            = B/16             B/16 (one response      4 × B/16
//!                                                     past the threshold)
//! max.partition.fetch.bytes  = min(1 MiB, B/64)
//! window                     = B/4              records handed to owners and not finished
//!                                               (split evenly over the partitions owned)
//! held at most               ≈ B/2 + B/4 + B/4 = B
//! ```
//! Each further broker leading an owned partition adds one response (`B/4`). Data that does not
//! compress takes up to twice the prefetch share; below a share of 16 000 000 bytes the 1 MB
//! floor of `fetch.max.bytes` loosens the bound (docs/configuration.md has the figures).
//! A member consuming the retry topic runs a second consumer: each of the two gets half of the
//! member's budget. Process overhead (code, runtime, the retry/dead-letter producer's buffers,
//! per-record bookkeeping of at most `max_in_flight_per_partition` offsets per partition) comes
//! on top and does not grow with the backlog.

/// librdkafka requires `fetch.max.bytes` to be at least `message.max.bytes` (default 1 000 000).
const MIN_FETCH_MAX_BYTES: usize = 1_000_000;

/// How one consumer's share of the memory budget is spent (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryBudget {
    /// The share this split was made from, in bytes.
    pub total: usize,
    /// `queued.max.messages.kbytes`.
    pub prefetch_kbytes: usize,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: usize,
    /// `max.partition.fetch.bytes`.
    pub partition_fetch_max_bytes: usize,
    /// Bytes of records handed to partition owners and not finished, over all partitions.
    pub window_bytes: usize,
}

impl MemoryBudget {
    /// Splits `total` bytes.
    pub fn split(total: usize) -> MemoryBudget {
        let quarter = total / 4;
        MemoryBudget {
            total,
            prefetch_kbytes: (quarter / 1024).max(1),
            fetch_max_bytes: (total / 16).max(MIN_FETCH_MAX_BYTES),
            partition_fetch_max_bytes: (total / 64).clamp(1, 1 << 20),
            window_bytes: quarter.max(1),
        }
    }

    /// The window of one partition when `partitions` are owned.
    pub fn window_per_partition(&self, partitions: usize) -> usize {
        (self.window_bytes / partitions.max(1)).max(1)
    }

    /// The librdkafka properties this split sets.
    pub(crate) fn properties(&self) -> [(&'static str, String); 3] {
        [
            (
                "queued.max.messages.kbytes",
                self.prefetch_kbytes.to_string(),
            ),
            ("fetch.max.bytes", self.fetch_max_bytes.to_string()),
            (
                "max.partition.fetch.bytes",
                self.partition_fetch_max_bytes.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each part holds in memory with lz4 on data compressing 2× (see the module docs).
    fn held(b: &MemoryBudget) -> usize {
        2 * b.prefetch_kbytes * 1024 + 4 * b.fetch_max_bytes + b.window_bytes
    }

    #[test]
    fn parts_add_up_to_the_budget() {
        for total in [16usize << 20, 64 << 20, 1 << 30] {
            let b = MemoryBudget::split(total);
            assert!(held(&b) <= total, "{b:?}");
            assert!(held(&b) >= total - 4096, "{b:?}");
            assert!(b.partition_fetch_max_bytes <= b.fetch_max_bytes);
        }
    }

    #[test]
    fn window_is_shared_by_the_owned_partitions() {
        let b = MemoryBudget::split(64 << 20);
        assert_eq!(b.window_per_partition(4), (16 << 20) / 4);
        assert_eq!(b.window_per_partition(0), 16 << 20);
    }
}
