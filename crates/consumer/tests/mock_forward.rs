//! Fast tests of a whole member against librdkafka's in-process mock cluster (no real Kafka).
//!
//! `dead_letter_producer_recovers_from_fatal_error`: the member's retry/dead-letter producer is
//! idempotent; a head-of-line `OUT_OF_ORDER_SEQUENCE_NUMBER` makes librdkafka raise a fatal
//! error on it, after which that handle refuses every send. The member must replace the handle
//! and forward the remaining records instead of stalling their partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orderstream_consumer::{
    BackoffConfig, ConsumerConfig, ProcessError, Processor, Record, Topics, headers as h,
};
use orderstream_testkit::poll_until;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Source records seeded.
const RECORDS: i64 = 6;
const SOURCE_PARTITIONS: i32 = 2;

/// Dead-letters every record: the first one at once, the others only once `gate` opens, so the
/// test can inject broker errors between the first dead-letter produce and the rest.
#[derive(Debug)]
struct DeadLetterAll {
    calls: AtomicU64,
    gate: watch::Receiver<bool>,
}

impl Processor for DeadLetterAll {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        Err(ProcessError::permanent(
            "test_dead_letter",
            format!("offset {}", record.offset()),
        ))
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Reads the dead-letter topic from the beginning on a helper thread and records the
/// (source partition, source offset) of every copy.
struct DlqReader {
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DlqReader {
    fn start(bootstrap: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("dlq-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("dlq reader");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(res) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let msg = res.expect("dlq read");
                    let header = |name: &str| -> String {
                        msg.headers()
                            .and_then(|hs| hs.iter().find(|hd| hd.key == name))
                            .and_then(|hd| hd.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_else(|| panic!("dlq record without {name}"))
                    };
                    let p: i32 = header(h::DLQ_SOURCE_PARTITION).parse().expect("partition");
                    let o: i64 = header(h::DLQ_SOURCE_OFFSET).parse().expect("offset");
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((p, o));
                }
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for DlqReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_producer_recovers_from_fatal_error() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    let base = unique("mockfwd");
    let topics = Topics::new(
        format!("{base}.orders"),
        format!("{base}.retry"),
        format!("{base}.dlq"),
    );
    mock.create_topic(&topics.source, SOURCE_PARTITIONS, 1)
        .expect("source topic");
    mock.create_topic(&topics.retry, 1, 1).expect("retry topic");
    mock.create_topic(&topics.dead_letter, 1, 1)
        .expect("dlq topic");

    // Seed the source topic (before any error is injected: the seeding producer's Produce
    // requests would consume them otherwise).
    let seeder: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("seeder");
    let mut seeded = BTreeSet::new();
    for i in 0..RECORDS {
        let key = format!("order-{i}");
        let payload = format!("payload-{i}");
        let delivery = seeder
            .send(
                FutureRecord::to(&topics.source)
                    .key(&key)
                    .payload(&payload)
                    .partition((i % i64::from(SOURCE_PARTITIONS)) as i32),
                Duration::from_secs(5),
            )
            .await
            .expect("seed");
        seeded.insert((delivery.partition, delivery.offset));
    }
    drop(seeder);
    let mut end_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &seeded {
        let e = end_offsets.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }

    let group = unique("mockfwd-group");
    let config = ConsumerConfig {
        session_timeout: Duration::from_secs(10),
        revoke_drain_timeout: Duration::from_secs(3),
        shutdown_timeout: Duration::from_secs(5),
        close_timeout: Duration::from_secs(5),
        commit_interval: Duration::from_millis(100),
        produce_timeout: Duration::from_secs(10),
        statistics_interval: Duration::ZERO,
        // also the produce-retry backoff: old code retried the dead handle every <= 200 ms
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(1),
            ..BackoffConfig::default()
        },
        ..ConsumerConfig::new(&bootstrap, &group, topics.clone())
    };
    let (open_gate, gate) = watch::channel(false);
    let processor = Arc::new(DeadLetterAll {
        calls: AtomicU64::new(0),
        gate,
    });
    let dlq = DlqReader::start(&bootstrap, &topics.dead_letter);
    let cancel = CancellationToken::new();
    let member = tokio::spawn(orderstream_consumer::run(
        config,
        Arc::clone(&processor),
        cancel.clone(),
    ));

    // The first record is dead-lettered through the original handle (this also covers the
    // group join: the mock's initial rebalance delay is 3 s).
    assert!(
        poll_until(Duration::from_secs(30), || !dlq.seen().is_empty()).await,
        "the first record never reached the dead-letter topic"
    );
    // The next Produce requests fail head-of-line with OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka
    // raises a fatal idempotence error and that handle refuses every later send. Each error is
    // consumed by one request (only the member produces now), so the stack is used up by the
    // handles it kills.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER; 3],
    );
    open_gate.send(true).expect("gate");

    let all_forwarded = poll_until(Duration::from_secs(20), || {
        dlq.seen().into_iter().collect::<BTreeSet<_>>() == seeded
    })
    .await;
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    let copies = dlq.seen();
    if !all_forwarded {
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), member).await;
        panic!(
            "not every record reached the dead-letter topic after the producer's fatal error: \
             seeded {seeded:?}, dead-lettered {copies:?}"
        );
    }
    // at least once: a copy in doubt when the handle died may have been sent again
    assert!(copies.len() >= seeded.len(), "{copies:?}");

    // The source offsets get committed (commit_interval is 100 ms; the shutdown commits too).
    cancel.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(20), member)
        .await
        .expect("member stops in time")
        .expect("member task")
        .expect("member run");
    assert_eq!(summary.dead_lettered, RECORDS as u64, "{summary:?}");
    assert!(summary.producer_rebuilds >= 1, "{summary:?}");
    assert!(summary.uncommitted.is_empty(), "{summary:?}");
    for (p, end) in &end_offsets {
        assert_eq!(
            summary.committed.get(&(topics.source.clone(), *p)),
            Some(end),
            "{summary:?}"
        );
    }

    // ... and the group's committed offsets, read back from the (mock) coordinator.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("probe");
    let mut tpl = TopicPartitionList::new();
    for p in end_offsets.keys() {
        tpl.add_partition(&topics.source, *p);
    }
    let committed =
        tokio::task::spawn_blocking(move || probe.committed_offsets(tpl, Duration::from_secs(5)))
            .await
            .expect("join")
            .expect("committed offsets");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(end_offsets[&e.partition()]),
            "partition {}",
            e.partition()
        );
    }
    assert_eq!(committed.count(), end_offsets.len());
}
