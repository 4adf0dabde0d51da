//! `orderstream dlq` against the real cluster: listing by group, and a replay into the retry
//! topic that parks each dead letter for the group that gave up on it.

mod support;

use std::time::Duration;

use orderstream_consumer::headers as h;
use orderstream_testkit::TestEnv;
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::{orderstream, text};

/// Writes a dead letter as a member of `group` would, for source `orders`/2@41.
async fn dead_letter(env: &TestEnv, dlq: &str, orders: &str, group: &str, key: &str) {
    let headers = [
        ("event_id", "e-1"),
        (h::DLQ_SOURCE_TOPIC, orders),
        (h::DLQ_SOURCE_PARTITION, "2"),
        (h::DLQ_SOURCE_OFFSET, "41"),
        (h::DLQ_SOURCE_TIMESTAMP, ""),
        (h::DLQ_ERROR_CLASS, "test_poison"),
        (h::DLQ_ERROR_MESSAGE, "poison"),
        (h::DLQ_ATTEMPTS, "1"),
        (h::DLQ_GROUP, group),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |hs, (k, v)| {
        hs.insert(Header {
            key: k,
            value: Some(v),
        })
    });
    env.producer()
        .send(
            FutureRecord::to(dlq)
                .key(key)
                .payload("value")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("dead letter written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_the_retry_topic_parks_each_letter_for_its_group() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("dlq-into-retry");
    let layout = layout.to_str().expect("utf-8");
    assert!(
        orderstream(&env, &["--topology", layout, "topics", "apply"])
            .status
            .success()
    );
    dead_letter(&env, &names.dead_letter, &names.orders, "billing", "k1").await;
    dead_letter(&env, &names.dead_letter, &names.orders, "notify", "k2").await;

    let out = orderstream(
        &env,
        &["--topology", layout, "dlq", "list", "--group", "billing"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 dead letter(s)"), "{stdout}");

    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "dlq",
            "replay",
            "--group",
            "billing",
            "--into",
            "retry",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("replayed 1 to {}", names.retry)),
        "{stdout}"
    );
    let parked = env.read_all(&names.retry, Duration::from_secs(20)).await;
    assert_eq!(parked.len(), 1, "only billing's dead letter");
    let m = &parked[0];
    assert_eq!(m.key(), Some(&b"k1"[..]));
    let partitions = i32::try_from(env.end_offsets(&names.retry).len()).expect("count");
    assert!(
        partitions > 1,
        "the layout's retry topic has several partitions"
    );
    assert_eq!(
        Some(m.partition()),
        orderstream_producer::partition_for_key(b"k1", partitions),
        "parked by key (murmur2), where a member parks it"
    );
    let hs: std::collections::BTreeMap<String, String> = m
        .headers()
        .expect("headers")
        .iter()
        .map(|x| {
            (
                x.key.to_owned(),
                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(hs[h::RETRY_GROUP], "billing");
    assert_eq!(hs[h::RETRY_SOURCE_TOPIC], names.orders);
    assert_eq!(
        (
            hs[h::RETRY_SOURCE_PARTITION].as_str(),
            hs[h::RETRY_SOURCE_OFFSET].as_str()
        ),
        ("2", "41")
    );
    assert_eq!(
        (hs[h::RETRY_ATTEMPTS].as_str(), hs[h::RETRY_ROUND].as_str()),
        ("0", "0"),
        "a fresh retry budget"
    );
    assert_eq!(hs["event_id"], "e-1", "the original headers travel");
    assert!(
        !hs.keys().any(|k| k.starts_with(h::DLQ_PREFIX)),
        "no dead-letter headers on the parked copy"
    );
    assert!(
        env.end_offsets(&names.orders).values().all(|o| *o == 0),
        "nothing went back to the orders topic"
    );
}
