//! Scenario 7, poison records, one placed last: all dead-lettered with headers, lag back to 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::headers as h;
use orderstream_consumer::{BackoffConfig, ConsumerConfig};
use orderstream_orders::{OrderProcessor, SampleConfig};
use orderstream_schema::EventType;
use orderstream_testkit::TestEnv;
use rdkafka::Message;

use super::checker::{Ev, Observed, check};
use super::support::{self, consumer_config, pipeline_topics, spawn_member};
use super::{finish, order_producer, producer_support, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s7_poison_records() {
    let started = Instant::now();
    let (env, t) = setup("rel-s7").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let mut good = Vec::new();
    for seq in 0..4 {
        good.extend((0..50).map(|k| producer_support::event(k, seq)));
    }
    let mut plog = support::ProduceLog::default();
    let t0 = Instant::now();
    let outcomes = p.send_batch(&good).await;
    plog.record(&good, outcomes, t0);
    assert_eq!(plog.acked.len(), good.len(), "valid events must be acked");
    let codec = producer_support::codec(&env);
    let valid = codec
        .encode(&topic, &producer_support::event(999, 0))
        .await
        .unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&valid.schema_id.to_be_bytes());
    let mut bad_magic = valid.bytes.clone();
    bad_magic[0] = 7;
    let mut unknown = vec![0u8];
    unknown.extend_from_slice(&0x7fff_fff0u32.to_be_bytes());
    unknown.extend_from_slice(&valid.bytes[5..]);
    let truncated = valid.bytes[..valid.bytes.len() / 2].to_vec();
    let mut oversized = frame.clone();
    oversized.resize(1_000_000 - 16_384, 0xff);
    let mut illegal_ev = producer_support::event(1_000, 2); // shipped before created
    illegal_ev.event_type = EventType::Shipped;
    let illegal = codec.encode(&topic, &illegal_ev).await.unwrap().bytes;
    let poison: Vec<(&str, &str, Vec<u8>)> = vec![
        ("bad_magic", "order-poison-1", bad_magic),
        ("unknown_schema_id", "order-poison-2", unknown),
        ("truncated", "order-poison-3", truncated),
        ("oversized", "order-poison-4", oversized),
        ("illegal_transition", "order-001000", illegal),
    ];
    let mut positions = BTreeMap::new();
    for (kind, key, bytes) in &poison {
        let o = p
            .send_raw(
                Some(key.as_bytes()),
                bytes,
                &[("poison-kind", kind.as_bytes())],
            )
            .await;
        let pos = o
            .position()
            .unwrap_or_else(|| panic!("poison {kind} not delivered: {o:?}"));
        positions.insert(pos, (*kind).to_owned());
    }
    let ends = env.end_offsets(&topic);
    let last_in_partition: Vec<&String> = positions
        .iter()
        .filter(|((p, o), _)| ends[p] == o + 1)
        .map(|(_, k)| k)
        .collect();
    assert!(
        !last_in_partition.is_empty(),
        "a poison record must be last"
    );
    let processor = Arc::new(OrderProcessor::new(
        producer_support::codec(&env),
        SampleConfig {
            unknown_schema_max_attempts: 2,
            ..SampleConfig::default()
        },
    ));
    let group = env.group_id("rel-s7");
    let topics = pipeline_topics(&t);
    let cfg = ConsumerConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max_attempts: 3,
            ..BackoffConfig::default()
        },
        retry_topic_delay: Duration::from_millis(200),
        ..consumer_config(&env.bootstrap, &group, topics.clone())
    };
    let (cancel, member) = spawn_member(cfg, Arc::clone(&processor));
    let t0 = Instant::now();
    loop {
        let c = env.committed_offsets(&group, &topic).await;
        if c == ends {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "lag did not return to 0: committed {c:?}, ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lag_zero_after = t0.elapsed();
    cancel.cancel();
    let summary = member.await.unwrap();
    // Lag as the broker sees it once the member has stopped (the loop above only saw it reach
    // 0 once; a stop must not move it back).
    let committed_at_end = env.committed_offsets(&group, &topic).await;
    let lag_at_end: i64 = ends
        .iter()
        .map(|(p, e)| e - committed_at_end.get(p).copied().unwrap_or(0))
        .sum();
    let dl = env
        .read_all(&topics.dead_letter, Duration::from_secs(30))
        .await;
    let mut in_dlq = BTreeMap::new();
    let mut missing_headers = 0;
    for m in &dl {
        let hs: BTreeMap<String, String> = rdkafka::message::Headers::iter(m.headers().unwrap())
            .map(|x| {
                (
                    x.key.to_owned(),
                    String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        for name in [
            h::DLQ_SOURCE_TOPIC,
            h::DLQ_SOURCE_PARTITION,
            h::DLQ_SOURCE_OFFSET,
            h::DLQ_ERROR_CLASS,
            h::DLQ_ERROR_MESSAGE,
            h::DLQ_ATTEMPTS,
            h::DLQ_GROUP,
            "poison-kind",
        ] {
            if !hs.contains_key(name) {
                missing_headers += 1;
            }
        }
        let pos = (
            hs.get(h::DLQ_SOURCE_PARTITION)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(-1),
            hs.get(h::DLQ_SOURCE_OFFSET)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1),
        );
        in_dlq.insert(pos, hs.get(h::DLQ_ERROR_CLASS).cloned().unwrap_or_default());
    }
    let dead_lettered = positions.keys().filter(|p| in_dlq.contains_key(*p)).count();
    let retry_ends = env.end_offsets(&topics.retry);
    // the retry topic is read by the members' second consumer, in its own group
    let retry_committed = env
        .committed_offsets(&format!("{group}.retry"), &topics.retry)
        .await;
    let retry_lag_zero = retry_ends
        .iter()
        .all(|(p, e)| *e == 0 || retry_committed.get(p) == Some(e));
    let snap = processor.snapshot();
    let consumed_good = read_topic_decodable(&env, &topic).await;
    let f = check(
        "7 poison records",
        &Observed {
            acked: plog.acked.clone(),
            // Records are also sent outside this log (poison, other writers): phantoms and
            // gaps cannot be judged from it.
            unacked: None,
            possibly_persisted: 0,
            consumed: consumed_good,
            effects: None,
            recover: Some(lag_zero_after),
        },
    )
    .with("poison", poison.len())
    .with("poison_dead_lettered", dead_lettered)
    .with("dlq_records", dl.len())
    .with("dlq_missing_headers", missing_headers)
    .with(
        "dlq_classes",
        in_dlq.values().cloned().collect::<Vec<_>>().join(","),
    )
    .with("poison_last_in_partition", last_in_partition.len())
    .with("valid_applied", snap.applied_events)
    .with("lag_at_end", lag_at_end)
    .with("retry_lag_zero", retry_lag_zero)
    .with("recover", "time until committed == end offsets");
    let f = finish(f, started);
    println!("{summary:?}");
    f.assert_promise();
    assert_eq!(
        lag_at_end, 0,
        "lag after the stop: committed {committed_at_end:?}, ends {ends:?}"
    );
    assert_eq!(
        dead_lettered,
        poison.len(),
        "100% of poison in the DLQ: {in_dlq:?}"
    );
    assert_eq!(dl.len(), poison.len(), "only the poison in the DLQ");
    assert_eq!(missing_headers, 0);
    assert_eq!(
        snap.applied_events as usize,
        good.len(),
        "every valid event applied"
    );
    assert!(retry_lag_zero, "retry topic lag back to 0");
}

/// Every record of `topic` that decodes as an order event (poison records skipped).
async fn read_topic_decodable(env: &TestEnv, topic: &str) -> Vec<Ev> {
    let codec = producer_support::codec(env);
    let mut out = Vec::new();
    for m in env.read_all(topic, Duration::from_secs(60)).await {
        let Some(bytes) = m.payload() else { continue };
        if let Ok(d) = codec.decode(bytes).await {
            out.push(Ev {
                event_id: d.event.event_id,
                key: d.event.order_id,
                sequence: d.event.sequence,
                partition: m.partition(),
                offset: m.offset(),
            });
        }
    }
    out
}
