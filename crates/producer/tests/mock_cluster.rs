//! Fast error-injection tests against librdkafka's in-process mock cluster (no real Kafka).
//! The real-cluster proofs live in the workspace's `tests/producer_*.rs`.

use std::time::{Duration, Instant};

use futures::future::join_all;
use orderstream_producer::{
    DeliveryOutcome, ProducerConfig, ProducerError, ProducerTopic, RDKafkaErrorCode, RawProducer,
    partition_for_key,
};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn config(bootstrap: String) -> ProducerConfig {
    ProducerConfig {
        bootstrap_servers: bootstrap,
        startup_timeout: Duration::from_secs(5),
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    }
}

fn mock(
    topic: &str,
    partitions: i32,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let m = MockCluster::new(3).expect("mock cluster");
    m.create_topic(topic, partitions, 1).expect("topic");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_and_reports_partition_offset() {
    let m = mock("t", 6);
    let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 6))
        .await
        .expect("start");
    let out = p.send_raw(Some(b"order-1"), b"hello", &[("h", b"v")]).await;
    match out {
        DeliveryOutcome::Delivered {
            partition, offset, ..
        } => {
            assert_eq!(partition, partition_for_key(b"order-1", 6).expect("p"));
            assert_eq!(offset, 0);
        }
        other => panic!("expected delivered, got {other:?}"),
    }
    assert_eq!(p.in_flight(), 0);
    let report = p.flush(Duration::from_secs(5)).await;
    assert!(report.complete, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_partitioner_matches_java_vectors_on_mock() {
    // The full proof runs against the real cluster (tests/producer_partitioning.rs); this is
    // the fast check of the same vectors through librdkafka's murmur2_random.
    let m = mock("v6", 6);
    m.create_topic("v12", 12, 1).expect("topic");
    let text = include_str!("fixtures/murmur2_vectors.csv");
    for (topic, n) in [("v6", 6), ("v12", 12)] {
        let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new(topic, n))
            .await
            .expect("start");
        let mut checked = 0;
        for line in text.lines().skip(1) {
            let mut it = line.split(',');
            let hex = it.next().expect("hex");
            let parts: i32 = it.next().expect("n").parse().expect("int");
            let want: i32 = it.next().expect("p").parse().expect("int");
            if parts != n {
                continue;
            }
            let key: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let out = p.send_raw(Some(&key), b"x", &[]).await;
            let (got, _) = out.position().unwrap_or_else(|| panic!("{out:?}"));
            assert_eq!(got, want, "key {hex} over {n} partitions");
            checked += 1;
        }
        assert!(checked > 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_partition_count_mismatch() {
    let m = mock("t", 3);
    let err = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 6))
        .await
        .expect_err("must refuse");
    match &err {
        ProducerError::PartitionMismatch {
            expected, actual, ..
        } => assert_eq!((*expected, *actual), (6, 3)),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains('6') && msg.contains('3'), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_missing_topic() {
    let m = mock("t", 3);
    let err = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("nope", 3))
        .await
        .expect_err("must refuse");
    assert!(matches!(err, ProducerError::TopicMissing { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bootstrap_fails_within_bound() {
    let cfg = ProducerConfig {
        bootstrap_servers: "127.0.0.1:1".into(),
        startup_timeout: Duration::from_secs(2),
        ..ProducerConfig::default()
    };
    // Room for a loaded 2-core machine; still catches a producer that ignores the timeout.
    let bound = cfg.startup_timeout * 3;
    let started = Instant::now();
    let err = RawProducer::new(cfg, ProducerTopic::new("t", 3))
        .await
        .expect_err("must fail");
    let took = started.elapsed();
    assert!(matches!(err, ProducerError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(took < bound, "took {took:?}, bound {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_broker_error_is_failed_not_retriable() {
    let m = mock("t", 1);
    let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 1))
        .await
        .expect("start");
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let out = p.send_raw(Some(b"k"), b"v", &[]).await;
    match out {
        DeliveryOutcome::Failed { error, retriable } => {
            assert!(!retriable);
            assert_eq!(
                error.code(),
                Some(RDKafkaErrorCode::TopicAuthorizationFailed)
            );
            assert!(error.to_string().contains("`t`"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_transparently() {
    let m = mock("t", 1);
    let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 1))
        .await
        .expect("start");
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let out = p.send_raw(Some(b"k"), b"v", &[]).await;
    assert!(out.is_delivered(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_error_without_retries_is_failed_retriable() {
    let m = mock("t", 1);
    let mut cfg = config(m.bootstrap_servers());
    cfg.enable_idempotence = false;
    cfg.extra.insert("retries".into(), "0".into());
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS],
    );
    let out = p.send_raw(Some(b"k"), b"v", &[]).await;
    match out {
        DeliveryOutcome::Failed { error, retriable } => {
            assert!(retriable, "{error}");
            assert_eq!(error.code(), Some(RDKafkaErrorCode::NotEnoughReplicas));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_possibly_persisted() {
    let m = mock("t", 1);
    let mut cfg = config(m.bootstrap_servers());
    cfg.request_timeout = Duration::from_millis(500);
    cfg.delivery_timeout = Duration::from_millis(1500);
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    // Every broker answers after 3 s: requests time out, delivery.timeout.ms expires.
    m.broker_round_trip_time(-1, Duration::from_secs(3))
        .expect("rtt");
    let out = p.send_raw(Some(b"k"), b"v", &[]).await;
    match out {
        DeliveryOutcome::PossiblyPersisted { error, .. } => {
            assert_eq!(
                error.code(),
                Some(RDKafkaErrorCode::MessageTimedOut),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_fails_permanently() {
    let m = mock("t", 1);
    let mut cfg = config(m.bootstrap_servers());
    cfg.message_max_bytes = 10_000;
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    let big = vec![7u8; 20_000];
    let out = p.send_raw(Some(b"k"), &big, &[]).await;
    match out {
        DeliveryOutcome::Failed { error, retriable } => {
            assert!(!retriable);
            assert_eq!(
                error.code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_outcomes_keep_input_order_when_some_records_never_reach_librdkafka() {
    let m = mock("t", 1);
    let mut cfg = config(m.bootstrap_servers());
    cfg.message_max_bytes = 10_000;
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    let big = vec![7u8; 20_000];
    let keys: Vec<String> = (0..7).map(|i| format!("order-{i}")).collect();
    // Records 1, 2 and 5 are refused at enqueue (too large); the others are delivered.
    let refused = [1, 2, 5];
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let payload: &[u8] = if refused.contains(&i) { &big } else { b"small" };
            (Some(k.as_bytes()), payload)
        })
        .collect();
    let outcomes = p.send_raw_batch(&records, &[("h", b"v")]).await;
    assert_eq!(outcomes.len(), records.len());
    let mut next_offset = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            DeliveryOutcome::Delivered { offset, .. } => {
                assert!(!refused.contains(&i), "record {i} must have been refused");
                assert_eq!(
                    *offset, next_offset,
                    "record {i}: offsets follow input order"
                );
                next_offset += 1;
            }
            DeliveryOutcome::Failed { error, retriable } => {
                assert!(
                    refused.contains(&i),
                    "record {i} must have been delivered: {error}"
                );
                assert!(!retriable);
                assert_eq!(error.code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
                assert!(
                    error.to_string().contains(&keys[i]),
                    "record {i}'s error names its own key: {error}"
                );
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert_eq!(next_offset, 4);
    assert_eq!(
        p.in_flight(),
        0,
        "nothing counted in flight once outcomes are read"
    );

    // Failures reported by the broker after enqueue carry their own record's key too.
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 8],
    );
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .map(|k| (Some(k.as_bytes()), &b"small"[..]))
        .collect();
    let outcomes = p.send_raw_batch(&records, &[]).await;
    assert_eq!(outcomes.len(), records.len());
    for (i, outcome) in outcomes.iter().enumerate() {
        let Some(error) = outcome.error() else {
            panic!("record {i}: {outcome:?}");
        };
        assert_eq!(
            error.code(),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        );
        assert!(
            error.to_string().contains(&format!("`{}`", keys[i])),
            "record {i}'s error names its own key: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_applies_backpressure_not_errors() {
    let m = mock("t", 3);
    let mut cfg = config(m.bootstrap_servers());
    cfg.queue_buffering_max_messages = 10;
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 3))
        .await
        .expect("start");
    m.broker_round_trip_time(-1, Duration::from_millis(20))
        .expect("rtt");
    let sends = (0..300u32).map(|i| {
        let p = p.clone();
        async move {
            let key = format!("order-{i}");
            p.send_raw(Some(key.as_bytes()), b"payload", &[]).await
        }
    });
    let outcomes = join_all(sends).await;
    let delivered = outcomes.iter().filter(|o| o.is_delivered()).count();
    assert_eq!(
        delivered,
        300,
        "{:?}",
        outcomes.iter().find(|o| !o.is_delivered())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_error_rebuilds_handle_and_reports_in_doubt() {
    let m = mock("t", 1);
    let mut cfg = config(m.bootstrap_servers());
    cfg.batch_num_messages = 1;
    cfg.linger = Duration::ZERO;
    let p = RawProducer::new(cfg, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    // Warm up: the idempotent producer id is acquired and one record is acked.
    assert!(p.send_raw(Some(b"k"), b"warm", &[]).await.is_delivered());
    // The head-of-line request fails with OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka can no
    // longer reason about the sequence state and raises a fatal idempotence error.
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER; 8],
    );
    let sends = (0..5u32).map(|i| {
        let p = p.clone();
        async move {
            p.send_raw(Some(b"k"), format!("v{i}").as_bytes(), &[])
                .await
        }
    });
    let t0 = Instant::now();
    let outcomes = join_all(sends).await;
    // The poisoned handle is purged on rebuild: nothing waits for delivery_timeout (30 s).
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    for o in &outcomes {
        match o {
            DeliveryOutcome::PossiblyPersisted {
                error: ProducerError::Fatal { reason, .. },
                ..
            } => assert!(!reason.is_empty()),
            other => panic!("expected in-doubt fatal outcome, got {other:?}"),
        }
    }
    m.clear_request_errors(RDKafkaApiKey::Produce);
    // The next send goes through a fresh handle.
    let out = p.send_raw(Some(b"k"), b"after", &[]).await;
    assert!(out.is_delivered(), "{out:?}");
    // At least one rebuild. More are legitimate: a send enqueued after the first handle went
    // fatal is handed to the fresh handle, which can meet one of the injected errors still
    // queued in the mock and go fatal in turn (seen in ~1 run in 10).
    let rebuilds = p.rebuilds();
    assert!((1..=5).contains(&rebuilds), "rebuilds {rebuilds}");
    assert!(p.fatal_error().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_and_refuses_new_records() {
    let m = mock("t", 1);
    let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 1))
        .await
        .expect("start");
    let sender = p.clone();
    let task = tokio::spawn(async move { sender.send_raw(Some(b"k"), b"v", &[]).await });
    let cancel = tokio_util::sync::CancellationToken::new();
    let c2 = cancel.clone();
    let shut = tokio::spawn({
        let p = p.clone();
        async move { p.shutdown_on(c2, Duration::from_secs(5)).await }
    });
    cancel.cancel();
    let report = shut.await.expect("join");
    assert!(report.complete, "{report:?}");
    assert_eq!(report.unflushed, 0);
    let _ = task.await.expect("join");
    let after = p.send_raw(Some(b"k"), b"late", &[]).await;
    assert!(
        matches!(
            after,
            DeliveryOutcome::NotSent {
                error: ProducerError::ShuttingDown { .. },
                ..
            }
        ),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_given_fewer_or_more_records_than_its_length_still_reports_each() {
    let m = mock("t", 1);
    let p = RawProducer::new(config(m.bootstrap_servers()), ProducerTopic::new("t", 1))
        .await
        .expect("start");
    let mut short = p.batch(3);
    short.send(Some(b"k"), b"v", &[], None).await;
    let outcomes = tokio::time::timeout(Duration::from_secs(10), short.outcomes(|_| None))
        .await
        .expect("a short batch completes");
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].is_delivered(), "{outcomes:?}");

    let mut long = p.batch(1);
    long.send(Some(b"k"), b"v1", &[], None).await;
    long.send(Some(b"k"), b"v2", &[], None).await;
    let outcomes = tokio::time::timeout(Duration::from_secs(10), long.outcomes(|_| None))
        .await
        .expect("an overfull batch completes");
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes[0].is_delivered(), "{outcomes:?}");
    assert!(
        matches!(
            &outcomes[1],
            DeliveryOutcome::NotSent {
                error: ProducerError::BatchFull { len: 1, .. },
                retriable: false
            }
        ),
        "{outcomes:?}"
    );
    assert_eq!(p.in_flight(), 0);
}

/// Senders serve delivery reports between their sends; once nobody sends, the producer's own
/// thread must, or a lone record and a batch that has finished sending would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_served_when_nobody_sends() {
    let m = mock("quiet", 6);
    let p = RawProducer::new(
        config(m.bootstrap_servers()),
        ProducerTopic::new("quiet", 6),
    )
    .await
    .expect("start");
    let within = Duration::from_secs(5);
    let lone = tokio::time::timeout(within, p.send_raw(Some(b"k"), b"v", &[]))
        .await
        .expect("a lone record's report was never served");
    assert!(
        matches!(lone, DeliveryOutcome::Delivered { .. }),
        "{lone:?}"
    );
    let keys: Vec<String> = (0..2000).map(|i| format!("order-{i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .map(|k| (Some(k.as_bytes()), &b"v"[..]))
        .collect();
    let outcomes = tokio::time::timeout(within, p.send_raw_batch(&records, &[]))
        .await
        .expect("a sent batch's reports were never served");
    let delivered = outcomes
        .iter()
        .filter(|o| matches!(o, DeliveryOutcome::Delivered { .. }))
        .count();
    assert_eq!(delivered, records.len(), "{:?}", outcomes.first());
    assert_eq!(p.in_flight(), 0);
}
