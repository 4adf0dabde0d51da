//! Bad input gives a clear, typed error: invalid configuration, unreachable bootstrap servers,
//! registry down, oversized record, partition-count mismatch, missing topic.

mod producer_support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use orderstream_orders::OrderProducer;
use orderstream_producer::{
    Acks, ConfigError, DeliveryOutcome, ProducerConfig, ProducerError, ProducerTopic,
    RDKafkaErrorCode,
};
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig};
use orderstream_testkit::TestEnv;

fn offline_codec() -> OrderCodec {
    OrderCodec::new(RegistryConfig {
        url: "http://127.0.0.1:1/apis/ccompat/v7".into(),
        request_timeout: Duration::from_secs(1),
        ..RegistryConfig::default()
    })
    .expect("codec")
}

/// Fails if anything connected to `listener` (non-blocking) so far.
fn assert_nothing_connected(listener: &TcpListener, what: &str, case: &str) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => {
            panic!("{case}: validation must not connect, but {peer} connected to the {what}")
        }
        Err(e) => panic!("accept on the {what} listener: {e}"),
    }
}

#[tokio::test]
async fn invalid_config_is_refused_before_connecting() {
    // A silent "broker" and "registry" owned by this test: a producer that connected before
    // validating (even to fail afterwards) leaves a connection in their accept queues.
    let broker = TcpListener::bind("127.0.0.1:0").expect("bind broker listener");
    let registry = TcpListener::bind("127.0.0.1:0").expect("bind registry listener");
    broker.set_nonblocking(true).expect("nonblocking");
    registry.set_nonblocking(true).expect("nonblocking");
    let bootstrap = broker.local_addr().expect("addr").to_string();
    // Built once, outside the timed section (it builds an HTTP client).
    let codec = OrderCodec::new(RegistryConfig {
        url: format!(
            "http://{}/apis/ccompat/v7",
            registry.local_addr().expect("addr")
        ),
        request_timeout: Duration::from_secs(1),
        ..RegistryConfig::default()
    })
    .expect("codec");
    let base = || ProducerConfig {
        bootstrap_servers: bootstrap.clone(),
        ..ProducerConfig::default()
    };
    let mut extra = base();
    extra
        .extra
        .insert("enable.idempotence".into(), "false".into());
    let cases: Vec<(&str, ProducerConfig)> = vec![
        (
            "bootstrap_servers",
            ProducerConfig {
                bootstrap_servers: String::new(),
                ..base()
            },
        ),
        (
            "acks",
            ProducerConfig {
                acks: Acks::Leader,
                ..base()
            },
        ),
        (
            "max_in_flight",
            ProducerConfig {
                max_in_flight: 6,
                ..base()
            },
        ),
        (
            "delivery_timeout",
            ProducerConfig {
                delivery_timeout: Duration::ZERO,
                ..base()
            },
        ),
        (
            "request_timeout",
            ProducerConfig {
                request_timeout: Duration::ZERO,
                ..base()
            },
        ),
        (
            "delivery_timeout",
            ProducerConfig {
                delivery_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(5),
                linger: Duration::from_millis(10),
                ..base()
            },
        ),
        ("enable.idempotence", extra),
    ];
    for (needle, cfg) in cases {
        // A producer that connected first would wait for the silent listener's metadata
        // answer up to `startup_timeout` (10 s); validation alone takes microseconds.
        let bound = cfg.startup_timeout / 2;
        let started = Instant::now();
        let err = OrderProducer::new(cfg, codec.clone(), ProducerTopic::new("t", 6))
            .await
            .expect_err(needle);
        let took = started.elapsed();
        assert_nothing_connected(&broker, "broker", needle);
        assert_nothing_connected(&registry, "registry", needle);
        assert!(
            took < bound,
            "{needle}: refusal took {took:?}: validation must not wait on a connection"
        );
        assert!(matches!(err, ProducerError::Config(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(needle),
            "error for {needle} must name it: {msg}"
        );
        println!("refused: {msg}");
    }
    // A connection attempt a refused producer started in the background would have landed by
    // now, after every case.
    assert_nothing_connected(&broker, "broker", "any case");
    assert_nothing_connected(&registry, "registry", "any case");
    assert!(matches!(
        ProducerConfig {
            max_in_flight: 6,
            ..base()
        }
        .validate(),
        Err(ConfigError::IdempotenceMaxInFlight { .. })
    ));
}

#[tokio::test]
async fn unreachable_bootstrap_fails_clearly_within_bound() {
    let cfg = ProducerConfig {
        bootstrap_servers: "127.0.0.1:1,127.0.0.1:2".into(),
        startup_timeout: Duration::from_secs(3),
        ..ProducerConfig::default()
    };
    // The bound is the startup timeout, with room for a loaded 2-core machine: it catches a
    // producer that ignores the timeout (librdkafka alone would retry for ever).
    let bound = cfg.startup_timeout * 3;
    let codec = offline_codec();
    let started = Instant::now();
    let err = OrderProducer::new(cfg, codec, ProducerTopic::new("orders.events", 6))
        .await
        .expect_err("must fail");
    let took = started.elapsed();
    println!("after {took:.2?}: {err}");
    assert!(matches!(err, ProducerError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1,127.0.0.1:2"));
    assert!(took < bound, "took {took:?}, bound {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_is_not_sent_retriable_and_nothing_reaches_the_topic() {
    let env = TestEnv::connect().await;
    let topic = env.unique("registry-down");
    env.create_topic(&topic, 3).await;
    let p = OrderProducer::new(
        producer_support::config(&env),
        offline_codec(),
        ProducerTopic::new(&topic, 3),
    )
    .await
    .expect("start");
    let out = p.send(&OrderEvent::example()).await;
    match &out {
        DeliveryOutcome::NotSent { error, retriable } => {
            assert!(*retriable);
            println!("registry down: {error}");
        }
        other => panic!("{other:?}"),
    }
    let batch: Vec<_> = (0..10).map(|i| producer_support::event(i, 0)).collect();
    let outs = p.send_batch(&batch).await;
    assert!(outs.iter().all(|o| matches!(
        o,
        DeliveryOutcome::NotSent {
            retriable: true,
            ..
        }
    )));
    p.flush(Duration::from_secs(5)).await;
    let ends = env.end_offsets(&topic);
    assert!(
        ends.values().all(|o| *o == 0),
        "nothing half-sent: {ends:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_is_a_permanent_failure() {
    let env = TestEnv::connect().await;
    let topic = env.unique("oversized");
    env.create_topic(&topic, 1).await;
    // Client-side: bigger than message.max.bytes → refused at enqueue.
    let p = OrderProducer::new(
        producer_support::config(&env),
        producer_support::codec(&env),
        ProducerTopic::new(&topic, 1),
    )
    .await
    .expect("start");
    let out = p.send_raw(Some(b"k"), &vec![1u8; 2_000_000], &[]).await;
    match &out {
        DeliveryOutcome::Failed { error, retriable } => {
            assert!(!retriable);
            assert_eq!(error.code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
            println!("client-side: {error}");
        }
        other => panic!("{other:?}"),
    }
    // Broker-side: the client allows 3 MB but the topic's max.message.bytes (1 MiB default)
    // does not → the broker answers MESSAGE_TOO_LARGE.
    let mut cfg = producer_support::config(&env);
    cfg.message_max_bytes = 3_000_000;
    cfg.compression = orderstream_producer::Compression::None;
    let p2 = OrderProducer::new(
        cfg,
        producer_support::codec(&env),
        ProducerTopic::new(&topic, 1),
    )
    .await
    .expect("start");
    let payload: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let out = p2.send_raw(Some(b"k"), &payload, &[]).await;
    match &out {
        DeliveryOutcome::Failed { error, retriable } => {
            assert!(!retriable, "{error}");
            assert_eq!(error.code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
            println!("broker-side: {error}");
        }
        other => panic!("{other:?}"),
    }
    // The producer is still healthy afterwards.
    assert!(p2.send(&OrderEvent::example()).await.is_delivered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_count_mismatch_and_missing_topic_are_refused() {
    let env = TestEnv::connect().await;
    let topic = env.unique("mismatch");
    env.create_topic(&topic, 3).await;
    let err = OrderProducer::new(
        producer_support::config(&env),
        producer_support::codec(&env),
        ProducerTopic::new(&topic, 6),
    )
    .await
    .expect_err("must refuse");
    println!("{err}");
    match err {
        ProducerError::PartitionMismatch {
            expected, actual, ..
        } => assert_eq!((expected, actual), (6, 3)),
        other => panic!("{other:?}"),
    }
    let missing = env.unique("never-created");
    let err = OrderProducer::new(
        producer_support::config(&env),
        producer_support::codec(&env),
        ProducerTopic::new(&missing, 6),
    )
    .await
    .expect_err("must refuse");
    println!("{err}");
    assert!(matches!(err, ProducerError::TopicMissing { .. }), "{err:?}");
    // Asking did not auto-create it: a second start is refused the same way.
    let again = OrderProducer::new(
        producer_support::config(&env),
        producer_support::codec(&env),
        ProducerTopic::new(&missing, 6),
    )
    .await
    .expect_err("still missing");
    assert!(
        matches!(again, ProducerError::TopicMissing { .. }),
        "{again:?}"
    );
}
