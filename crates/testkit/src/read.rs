use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Reads every partition from the beginning until each reaches its end offset, with
/// `isolation.level` `isolation` (`read_committed`, or `read_uncommitted` to see what aborted
/// transactions left in the log too).
pub(crate) fn read_until(
    mut cfg: ClientConfig,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
    isolation: &str,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = cfg
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap_or_else(|e| panic!("create reader: {e}"));
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("assign {topic}/{p}: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    // Partitions whose start was truncated (or are empty) begin at their low watermark.
    for (p, n) in &mut next {
        if let Ok((low, _)) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)) {
            *n = low;
        }
    }
    let done = |next: &BTreeMap<i32, i64>| {
        ends.iter()
            .all(|(p, end)| next.get(p).is_some_and(|n| n >= end))
    };
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while !done(&next) {
        assert!(
            Instant::now() < deadline,
            "read_all({topic}) timed out at {next:?}, expected ends {ends:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                out.push(m.detach());
            }
            // After a fault librdkafka reports transport errors (a broker down, a connection
            // reset) through the poll as well; it reconnects by itself, and the deadline bounds
            // the wait. Only a fatal error ends the read.
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => panic!("read {topic}: {e}"),
            Some(Err(e)) => eprintln!("read {topic}: {e}; reading on"),
            // A transactional topic ends in commit markers that are never delivered: the
            // position moves past them.
            None => {
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let (Offset::Offset(o), Some(n)) =
                            (e.offset(), next.get_mut(&e.partition()))
                        {
                            *n = (*n).max(o);
                        }
                    }
                }
            }
        }
    }
    out
}
