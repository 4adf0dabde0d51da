//! Fast error-injection tests of the order producer against librdkafka's in-process mock
//! cluster (no real Kafka). The real-cluster proofs live in the workspace's `tests/producer_*.rs`.

use std::time::Duration;

use orderstream_orders::OrderProducer;
use orderstream_producer::{DeliveryOutcome, ProducerConfig, ProducerError, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig};
use rdkafka::mocking::MockCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_is_not_sent_and_retriable() {
    let m = MockCluster::new(1).expect("mock cluster");
    m.create_topic("t", 1, 1).expect("topic");
    let codec = OrderCodec::new(RegistryConfig {
        url: "http://127.0.0.1:1/apis/ccompat/v7".into(),
        request_timeout: Duration::from_secs(1),
        ..RegistryConfig::default()
    })
    .expect("codec");
    let config = ProducerConfig {
        bootstrap_servers: m.bootstrap_servers(),
        startup_timeout: Duration::from_secs(5),
        ..ProducerConfig::default()
    };
    let p = OrderProducer::new(config, codec, ProducerTopic::new("t", 1))
        .await
        .expect("start");
    let out = p.send(&OrderEvent::example()).await;
    match &out {
        DeliveryOutcome::NotSent { error, retriable } => {
            assert!(*retriable, "{error}");
            assert!(matches!(error, ProducerError::Encode { .. }));
        }
        other => panic!("{other:?}"),
    }
    let batch = p
        .send_batch(&[OrderEvent::example(), OrderEvent::example()])
        .await;
    assert!(batch.iter().all(|o| matches!(
        o,
        DeliveryOutcome::NotSent {
            retriable: true,
            ..
        }
    )));
    assert_eq!(p.in_flight(), 0);
}
