//! Per-key order on the real cluster: 10 000 Avro order events over 1 000 order ids on a
//! 6-partition topic; every order's events come back from exactly one partition (the one the
//! Java partitioner picks), in sequence order, once.

mod producer_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orderstream_producer::DeliveryOutcome;
use orderstream_testkit::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_10k_events_1k_keys_6_partitions() {
    let env = TestEnv::connect().await;
    let (topic, p) =
        producer_support::producer(&env, "per-key-order", 6, producer_support::config(&env)).await;
    const KEYS: usize = 1_000;
    const PER_KEY: i64 = 10;
    // Interleave keys: sequence s of every order, then s+1 …, in batches of 1 000.
    let events: Vec<_> = (0..PER_KEY)
        .flat_map(|seq| (0..KEYS).map(move |k| producer_support::event(k, seq)))
        .collect();
    let started = Instant::now();
    let mut acked = Vec::with_capacity(events.len());
    for chunk in events.chunks(1_000) {
        let outcomes = p.send_batch(chunk).await;
        for (e, o) in chunk.iter().zip(outcomes) {
            match o {
                DeliveryOutcome::Delivered { partition, .. } => {
                    assert_eq!(partition, p.partition_for_order(&e.order_id));
                    acked.push(e.event_id.clone());
                }
                other => panic!("not delivered: {other:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    let report = p.shutdown(Duration::from_secs(10)).await;
    assert!(report.complete, "{report:?}");
    println!(
        "produced {} events in {:.2?} ({:.0} msg/s)",
        acked.len(),
        elapsed,
        acked.len() as f64 / elapsed.as_secs_f64()
    );

    let msgs = env.read_all(&topic, producer_support::READ_TIMEOUT).await;
    for m in msgs.iter().take(5) {
        assert!(producer_support::header(m, "event_id").is_some());
        assert_eq!(
            producer_support::header(m, "content-type"),
            Some(orderstream_orders::CONTENT_TYPE.as_bytes())
        );
    }
    let read = producer_support::decode_all(p.codec(), &msgs).await;
    let audit = producer_support::audit(&acked, &read);
    println!("{audit:?}");
    assert_eq!(audit.read, 10_000);
    assert_eq!(audit.duplicates, 0);
    assert_eq!(audit.acked_lost, 0);
    assert_eq!(audit.reorderings, 0);

    let mut per_key: BTreeMap<String, Vec<(i32, i64, i64)>> = BTreeMap::new();
    for (partition, offset, e) in &read {
        per_key
            .entry(e.order_id.clone())
            .or_default()
            .push((*partition, *offset, e.sequence));
    }
    assert_eq!(per_key.len(), KEYS);
    let mut used = std::collections::BTreeSet::new();
    for (key, mut recs) in per_key {
        let partitions: std::collections::BTreeSet<i32> = recs.iter().map(|r| r.0).collect();
        assert_eq!(
            partitions.len(),
            1,
            "order {key} spread over {partitions:?}"
        );
        assert_eq!(recs[0].0, p.partition_for_order(&key));
        used.insert(recs[0].0);
        recs.sort_by_key(|r| r.1);
        let seqs: Vec<i64> = recs.iter().map(|r| r.2).collect();
        assert_eq!(seqs, (0..PER_KEY).collect::<Vec<_>>(), "order {key}");
    }
    assert_eq!(used.len(), 6, "1 000 keys should use every partition");
}
