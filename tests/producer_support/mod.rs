//! Helpers shared by the `tests/producer_*.rs` suites.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use orderstream_orders::OrderProducer;
use orderstream_producer::{ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig};
use orderstream_testkit::TestEnv;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};

/// Producer settings for tests: defaults (idempotent, acks=all, lz4) against the test cluster.
pub fn config(env: &TestEnv) -> ProducerConfig {
    ProducerConfig {
        bootstrap_servers: env.bootstrap.clone(),
        client_id: "orderstream-producer-test".into(),
        ..ProducerConfig::default()
    }
}

pub fn codec(env: &TestEnv) -> OrderCodec {
    OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .expect("codec")
}

/// Creates a fresh topic and an order producer for it.
pub async fn producer(
    env: &TestEnv,
    name: &str,
    partitions: i32,
    cfg: ProducerConfig,
) -> (String, OrderProducer) {
    let topic = env.unique(name);
    env.create_topic(&topic, partitions).await;
    let p = OrderProducer::new(cfg, codec(env), ProducerTopic::new(&topic, partitions))
        .await
        .unwrap_or_else(|e| panic!("producer start: {e}"));
    (topic, p)
}

/// Event number `seq` of order `order` (`order-{order:06}`, customer `cust-{order % 997:04}`):
/// a realistic lifecycle with a unique event id.
pub fn event(order: usize, seq: i64) -> OrderEvent {
    OrderEvent {
        customer_id: format!("cust-{:04}", order % 997),
        ..orderstream_orders::fixtures::lifecycle("order", order, seq)
    }
}

pub fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Decodes every record: `(partition, offset, event)`.
pub async fn decode_all(codec: &OrderCodec, msgs: &[OwnedMessage]) -> Vec<(i32, i64, OrderEvent)> {
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let payload = m.payload().expect("payload");
        let d = codec.decode(payload).await.expect("decode");
        out.push((m.partition(), m.offset(), d.event));
    }
    out
}

/// Figures of an acked-vs-read comparison.
#[derive(Debug, Default)]
pub struct Audit {
    pub acked: usize,
    pub read: usize,
    pub distinct_read: usize,
    pub duplicates: usize,
    pub acked_lost: usize,
    pub reorderings: usize,
}

/// Compares the event ids acked by the producer with what is in the topic.
pub fn audit(acked_ids: &[String], read: &[(i32, i64, OrderEvent)]) -> Audit {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, e) in read {
        *seen.entry(e.event_id.as_str()).or_default() += 1;
    }
    let duplicates = seen.values().filter(|c| **c > 1).map(|c| c - 1).sum();
    let acked_lost = acked_ids
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .count();
    // Per key: sequences must never go backwards in offset order (read is in offset order per partition).
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    let mut reorderings = 0;
    let mut sorted: Vec<&(i32, i64, OrderEvent)> = read.iter().collect();
    sorted.sort_by_key(|(p, o, _)| (*p, *o));
    for (_, _, e) in sorted {
        if let Some(prev) = last.insert(e.order_id.as_str(), e.sequence)
            && e.sequence < prev
        {
            reorderings += 1;
        }
    }
    Audit {
        acked: acked_ids.len(),
        read: read.len(),
        distinct_read: seen.len(),
        duplicates,
        acked_lost,
        reorderings,
    }
}

pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
