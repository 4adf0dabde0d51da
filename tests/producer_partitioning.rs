//! Java-compatible partitioning, proven on the real cluster: every golden vector key computed by
//! the Java client (`scripts/java/Murmur2Vectors.java`, committed as
//! `crates/producer/tests/fixtures/murmur2_vectors.csv`) is produced through librdkafka with
//! `partitioner=murmur2_random`, and the partition the broker acknowledged must equal Java's.

mod producer_support;

use std::collections::BTreeSet;

use orderstream_producer::{ProducerTopic, RawProducer, partition_for_key};
use orderstream_testkit::TestEnv;
use rdkafka::Message;

fn vectors() -> Vec<(Vec<u8>, i32, i32)> {
    let text = include_str!("../crates/producer/tests/fixtures/murmur2_vectors.csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split(',');
            let hex = it.next().expect("hex");
            let n = it.next().expect("n").parse().expect("int");
            let p = it.next().expect("p").parse().expect("int");
            let key = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            (key, n, p)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_murmur2_random_equals_java_partitioner() {
    let env = TestEnv::connect().await;
    let all = vectors();
    for n in [6, 12] {
        let topic = env.unique(&format!("murmur2-{n}"));
        env.create_topic(&topic, n).await;
        let p = RawProducer::new(
            producer_support::config(&env),
            ProducerTopic::new(&topic, n),
        )
        .await
        .expect("start");
        let mut keys = Vec::new();
        let mut pending = Vec::new();
        for (key, parts, want) in all.iter().filter(|(_, parts, _)| *parts == n) {
            keys.push((key.clone(), *parts, *want));
            pending.push(key.clone());
        }
        let records: Vec<(Option<&[u8]>, &[u8])> = pending
            .iter()
            .map(|k| (Some(k.as_slice()), b"v".as_slice()))
            .collect();
        let outcomes = p.send_raw_batch(&records, &[]).await;
        let mut checked = 0;
        for ((key, parts, want), out) in keys.iter().zip(&outcomes) {
            let (got, _) = out
                .position()
                .unwrap_or_else(|| panic!("not delivered: {out:?}"));
            assert_eq!(
                got, *want,
                "key {key:02x?} over {parts} partitions: librdkafka {got}, Java {want}"
            );
            assert_eq!(partition_for_key(key, *parts), Some(*want));
            checked += 1;
        }
        println!(
            "partitions={n}: {checked} Java golden vectors matched by librdkafka murmur2_random"
        );
        assert!(checked >= 100);
        p.shutdown(std::time::Duration::from_secs(10)).await;
    }
}

/// confluentinc/librdkafka#4510: empty and null keys differ. With `murmur2_random` an **empty** key
/// (zero bytes, not null) is hashed like Java does (murmur2 of no bytes → partition 3 of 6) and
/// is stored as an empty key; a **null** key gets a (sticky) random partition and is stored
/// as null. The default `consistent_random` partitioner would instead treat an empty key like a
/// null one, which is why we never use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_key_is_hashed_like_java_and_null_key_stays_null() {
    let env = TestEnv::connect().await;
    let topic = env.unique("empty-key");
    env.create_topic(&topic, 6).await;
    let p = RawProducer::new(
        producer_support::config(&env),
        ProducerTopic::new(&topic, 6),
    )
    .await
    .expect("start");
    let java_empty = vectors()
        .into_iter()
        .find(|(k, n, _)| k.is_empty() && *n == 6)
        .map(|(_, _, p)| p)
        .expect("empty-key vector");
    for _ in 0..20 {
        let out = p.send_raw(Some(b""), b"empty", &[]).await;
        assert_eq!(out.position().map(|(p, _)| p), Some(java_empty), "{out:?}");
    }
    let mut null_partitions = BTreeSet::new();
    for _ in 0..20 {
        let out = p.send_raw(None, b"null", &[]).await;
        null_partitions.insert(out.position().expect("delivered").0);
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    let msgs = env.read_all(&topic, producer_support::READ_TIMEOUT).await;
    assert_eq!(msgs.len(), 40);
    for m in &msgs {
        match m.payload() {
            Some(b"empty") => assert_eq!(
                m.key(),
                Some(&b""[..]),
                "empty key must stay empty, not null"
            ),
            Some(b"null") => assert_eq!(m.key(), None, "null key must stay null"),
            other => panic!("unexpected payload {other:?}"),
        }
    }
    println!(
        "empty key -> partition {java_empty} (Java: {java_empty}); null keys -> partitions {null_partitions:?}"
    );
}
