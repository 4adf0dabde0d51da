//! The walking skeleton, end to end against the real cluster and registry: an `OrderEvent` is
//! produced in Confluent wire format through the registry by the idempotent keyed producer, and
//! consumed by a consumer-group member that commits its offset only after handling the record.

mod producer_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderstream_consumer::{ConsumerConfig, ProcessError, Processor, Record};
use orderstream_orders::OrderProducer;
use orderstream_producer::{DeliveryOutcome, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent};
use orderstream_testkit::TestEnv;
use orderstream_topology::TopicRole;
use tokio_util::sync::CancellationToken;

/// Decodes each record and remembers it; the test stops the member once it has seen the event.
struct Handler {
    codec: OrderCodec,
    seen: Mutex<Vec<(i32, i64, OrderEvent)>>,
    got_one: CancellationToken,
}

impl Processor for Handler {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        let bytes = record.payload().unwrap_or_default();
        let decoded = self
            .codec
            .decode(bytes)
            .await
            .map_err(|e| ProcessError::permanent(e.class(), e.to_string()))?;
        if let Ok(mut s) = self.seen.lock() {
            s.push((record.partition(), record.offset(), decoded.event));
        }
        self.got_one.cancel();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_event_round_trip_commits_after_handling() {
    let env = TestEnv::connect().await;
    let topics = env.topics("skeleton").await;
    let orders = topics.topology.topic(TopicRole::Orders);
    let codec = producer_support::codec(&env);
    let producer = OrderProducer::new(
        producer_support::config(&env),
        codec.clone(),
        ProducerTopic::new(orders.name.clone(), orders.partitions),
    )
    .await
    .expect("producer starts");

    let mut event = OrderEvent::example();
    event.order_id = env.unique("order");
    event.event_id = uuid::Uuid::new_v4().to_string();
    // Sent under an enabled span (the harness logs at warn): the producer adds a W3C `traceparent` header the consumer can join.
    let send =
        tracing::Instrument::instrument(producer.send(&event), tracing::warn_span!("checkout"));
    let (partition, offset) = match send.await {
        DeliveryOutcome::Delivered {
            partition, offset, ..
        } => (partition, offset),
        other => panic!("not delivered: {other:?}"),
    };
    assert_eq!(
        partition,
        producer.partition_for_order(&event.order_id),
        "librdkafka placed the key where the Java-compatible murmur2 says"
    );

    // The raw bytes on the topic are Confluent wire format: magic 0, 4-byte schema id, Avro.
    let raw = env.read_all(&orders.name, Duration::from_secs(30)).await;
    assert_eq!(raw.len(), 1);
    let payload = rdkafka::Message::payload(&raw[0]).expect("value");
    assert_eq!(payload[0], 0, "magic byte");
    let traceparent =
        rdkafka::message::Headers::iter(rdkafka::Message::headers(&raw[0]).expect("headers"))
            .find(|h| h.key == "traceparent")
            .and_then(|h| h.value)
            .expect("traceparent header");
    assert!(
        orderstream_consumer::trace_context::parse(traceparent).is_some(),
        "{:?}",
        String::from_utf8_lossy(traceparent)
    );
    assert_eq!(
        rdkafka::Message::key(&raw[0]),
        Some(event.order_id.as_bytes())
    );

    let group = env.group_id("skeleton");
    let handler = Arc::new(Handler {
        codec,
        seen: Mutex::new(Vec::new()),
        got_one: CancellationToken::new(),
    });
    let cancel = CancellationToken::new();
    let cfg = ConsumerConfig::new(
        env.bootstrap.clone(),
        group.clone(),
        orderstream_orders::topics::member_topics(&topics.names),
    );
    let member = tokio::spawn(orderstream_consumer::run(
        cfg,
        Arc::clone(&handler),
        cancel.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(60), handler.got_one.cancelled())
        .await
        .expect("the member handled the event within 60 s");
    cancel.cancel();
    let summary = member.await.expect("join").expect("member ran");

    let seen = handler.seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![(partition, offset, event)], "round trip");
    assert_eq!(summary.processed, 1);
    // Committed offset = next offset to read, read back through the group coordinator.
    let committed = env.committed_offsets(&group, &orders.name).await;
    assert_eq!(
        committed.get(&partition),
        Some(&(offset + 1)),
        "{committed:?}"
    );
    producer.shutdown(Duration::from_secs(10)).await;
}
