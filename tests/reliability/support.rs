//! Shared machinery of the reliability scenarios: a recording processor, a paced background
//! producer, broker/registry fault helpers with restore guards, consumer configs.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderstream_consumer::{ConsumerConfig, ProcessError, Processor, Record, Topics};
use orderstream_orders::OrderProducer;
use orderstream_producer::DeliveryOutcome;
use orderstream_schema::OrderCodec;
use orderstream_testkit::{TestEnv, TestTopics};
use rand::SeedableRng;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::MetadataPartition;
use tokio_util::sync::CancellationToken;

use super::checker::Ev;
use crate::producer_support;

/// The seed of every random choice of this run: `RELIABILITY_SEED` (scripts/reliability.sh sets
/// it and records it in RELIABILITY.md; child processes inherit it), else one drawn now. Printed
/// once, so a failing run can be replayed with the same choices.
pub fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = match std::env::var("RELIABILITY_SEED") {
            Ok(v) => v
                .parse()
                .unwrap_or_else(|e| panic!("RELIABILITY_SEED={v:?} is not a u64: {e}")),
            Err(_) => rand::random(),
        };
        eprintln!("reliability seed: {seed} (replay with RELIABILITY_SEED={seed})");
        seed
    })
}

/// A generator for one scenario's choices, derived from [`seed`] and the scenario's name so
/// that scenarios do not shift each other's draws.
pub fn rng(scenario: &str) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed() ^ fnv(scenario.as_bytes()))
}

/// FNV-1a: a stable hash (std's hasher is randomly keyed per process).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fails the test unless the 3-node cluster is running.
pub fn require_cluster(env: &TestEnv) {
    assert!(
        env.brokers >= 3,
        "the reliability suite needs the 3-node cluster (RF 3, min ISR 2), found {} broker(s) at {}: run scripts/reliability.sh (or scripts/services.sh up --nodes 3)",
        env.brokers,
        env.bootstrap
    );
}

/// The consumer-crate topic set of a test's private pipeline topics.
pub fn pipeline_topics(t: &TestTopics) -> Topics {
    Topics::new(&t.names.orders, &t.names.retry, &t.names.dead_letter)
}

/// Member settings sized for the 2-core machine: short timeouts, frequent commits.
pub fn consumer_config(bootstrap: &str, group: &str, topics: Topics) -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_secs(10),
        revoke_drain_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(10),
        commit_interval: Duration::from_millis(200),
        commit_every: 200,
        max_concurrency: 16,
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(bootstrap, group, topics)
    }
}

/// A processor that decodes order events and records every delivery (the test's view of what
/// the consumer was given, not of effects: scenarios that judge effects use the product's
/// store).
#[derive(Debug)]
pub struct Recorder {
    codec: OrderCodec,
    max_latency_ms: u64,
    pub consumed: Mutex<Vec<Ev>>,
    pub decode_errors: AtomicUsize,
}

impl Recorder {
    pub fn new(codec: OrderCodec, max_latency_ms: u64) -> Self {
        Self {
            codec,
            max_latency_ms,
            consumed: Mutex::new(Vec::new()),
            decode_errors: AtomicUsize::new(0),
        }
    }

    /// Distinct event ids delivered so far.
    pub fn distinct(&self) -> usize {
        let consumed = self.consumed.lock().unwrap_or_else(|e| e.into_inner());
        consumed
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    pub fn consumed(&self) -> Vec<Ev> {
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Processor for Recorder {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        let bytes = record.payload().unwrap_or_default();
        let decoded = match self.codec.decode(bytes).await {
            Ok(d) => d,
            Err(e) => {
                self.decode_errors.fetch_add(1, Ordering::Relaxed);
                return Err(if e.is_retriable() {
                    ProcessError::transient(e.to_string())
                } else {
                    ProcessError::permanent(e.class(), e.to_string())
                });
            }
        };
        if self.max_latency_ms > 0 {
            // Derived from the seed and the event, not drawn: the same record gets the same
            // latency in a replay, whichever thread handles it.
            let ms = (seed() ^ fnv(decoded.event.event_id.as_bytes())) % (self.max_latency_ms + 1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let e = decoded.event;
        let ev = Ev {
            event_id: e.event_id,
            key: e.order_id,
            sequence: e.sequence,
            partition: record.partition(),
            offset: record.offset(),
        };
        self.consumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ev);
        Ok(())
    }
}

/// What a background producer saw.
#[derive(Debug, Default)]
pub struct ProduceLog {
    pub acked: Vec<Ev>,
    /// Every send that was not acknowledged, with its key and sequence (partition and offset
    /// -1): the checker tells a gap the producer reported from one it hid.
    pub unacked: Vec<Ev>,
    /// Lower bound of each acked record's ack instant (batch start + ack latency), same order.
    pub acked_at: Vec<Instant>,
    pub latencies: Vec<Duration>,
    pub possibly_persisted: usize,
    pub not_sent: usize,
    /// Failures and in-doubt outcomes by librdkafka error code (or error kind).
    pub errors: BTreeMap<String, usize>,
    pub first_error: Option<String>,
}

impl ProduceLog {
    /// Records the outcomes of one batch.
    pub fn record(
        &mut self,
        events: &[orderstream_schema::OrderEvent],
        outcomes: Vec<DeliveryOutcome>,
        batch_start: Instant,
    ) {
        for (e, o) in events.iter().zip(outcomes) {
            match o {
                DeliveryOutcome::Delivered {
                    partition,
                    offset,
                    latency,
                } => {
                    self.acked.push(Ev {
                        event_id: e.event_id.clone(),
                        key: e.order_id.clone(),
                        sequence: e.sequence,
                        partition,
                        offset,
                    });
                    self.acked_at.push(batch_start + latency);
                    self.latencies.push(latency);
                }
                other => {
                    self.unacked.push(Ev {
                        event_id: e.event_id.clone(),
                        key: e.order_id.clone(),
                        sequence: e.sequence,
                        partition: -1,
                        offset: -1,
                    });
                    if matches!(other, DeliveryOutcome::PossiblyPersisted { .. }) {
                        self.possibly_persisted += 1;
                    }
                    if matches!(other, DeliveryOutcome::NotSent { .. }) {
                        self.not_sent += 1;
                    }
                    let err = other.error();
                    let code = err
                        .and_then(orderstream_producer::ProducerError::code)
                        .map_or_else(|| "other".to_owned(), |c| format!("{c:?}"));
                    *self.errors.entry(code).or_default() += 1;
                    if self.first_error.is_none() {
                        self.first_error = err.map(ToString::to_string);
                    }
                }
            }
        }
    }

    /// The `q` quantile (0..=1) of ack latencies of records acked in `[from, to]`.
    pub fn latency_quantile(&self, q: f64, from: Instant, to: Instant) -> Option<Duration> {
        let mut v: Vec<Duration> = self
            .acked_at
            .iter()
            .zip(&self.latencies)
            .filter(|(at, _)| **at >= from && **at <= to)
            .map(|(_, l)| *l)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((v.len() as f64 - 1.0) * q).round() as usize;
        Some(v[idx.min(v.len() - 1)])
    }
}

/// Pacing of a [`BackgroundProducer`].
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Orders (keys); event `i` is sequence `i / keys` of order `i % keys`.
    pub keys: usize,
    /// Events per `send_batch`.
    pub chunk: usize,
    /// Sleep between batches while `paced` is set.
    pub pause: Duration,
    /// Keep producing (unpaced) after the stop request until this many events were acked
    /// (bounded by [`FINISH_TIMEOUT`]).
    pub min_events: usize,
}

/// How long [`BackgroundProducer::finish`] keeps producing to reach `min_events` acks; when it
/// gives up, the log simply holds fewer acks and the scenario's own checks report it.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(300);

/// A producer task sending per-key sequenced events until stopped.
#[derive(Debug)]
pub struct BackgroundProducer {
    stop: CancellationToken,
    paced: Arc<AtomicBool>,
    /// Latest ack instant per partition.
    pub last_ack: Arc<Mutex<BTreeMap<i32, Instant>>>,
    task: tokio::task::JoinHandle<ProduceLog>,
}

impl BackgroundProducer {
    pub fn start(p: OrderProducer, pace: Pace) -> Self {
        let stop = CancellationToken::new();
        let paced = Arc::new(AtomicBool::new(true));
        let last_ack = Arc::new(Mutex::new(BTreeMap::new()));
        let task = {
            let (stop, paced, last_ack) = (stop.clone(), Arc::clone(&paced), Arc::clone(&last_ack));
            tokio::spawn(async move {
                let mut log = ProduceLog::default();
                let mut i = 0usize;
                let mut stop_requested: Option<Instant> = None;
                loop {
                    // Stop on the *acked* count: a send that times out during a fault must not
                    // eat into the margin of a scenario that needs `min_events` acks.
                    if stop.is_cancelled() {
                        let since = *stop_requested.get_or_insert_with(Instant::now);
                        if log.acked.len() >= pace.min_events {
                            break;
                        }
                        if since.elapsed() > FINISH_TIMEOUT {
                            eprintln!(
                                "background producer: {} of {} events acked after {FINISH_TIMEOUT:?} of unpaced sending; giving up",
                                log.acked.len(),
                                pace.min_events
                            );
                            break;
                        }
                    }
                    let events: Vec<_> = (i..i + pace.chunk)
                        .map(|n| producer_support::event(n % pace.keys, (n / pace.keys) as i64))
                        .collect();
                    i += pace.chunk;
                    let t0 = Instant::now();
                    let outcomes = p.send_batch(&events).await;
                    let before = log.acked.len();
                    log.record(&events, outcomes, t0);
                    if let Ok(mut m) = last_ack.lock() {
                        for (e, at) in log.acked[before..].iter().zip(&log.acked_at[before..]) {
                            let slot = m.entry(e.partition).or_insert(*at);
                            *slot = (*slot).max(*at);
                        }
                    }
                    if paced.load(Ordering::Relaxed) && !stop.is_cancelled() {
                        tokio::time::sleep(pace.pause).await;
                    }
                }
                log
            })
        };
        Self {
            stop,
            paced,
            last_ack,
            task,
        }
    }

    /// The latest ack on `partition`, if any.
    pub fn last_ack_on(&self, partition: i32) -> Option<Instant> {
        self.last_ack
            .lock()
            .ok()
            .and_then(|m| m.get(&partition).copied())
    }

    /// Stops (after `min_events` acks, unpaced) and returns the log.
    pub async fn finish(self) -> ProduceLog {
        self.paced.store(false, Ordering::Relaxed);
        self.stop.cancel();
        self.task
            .await
            .unwrap_or_else(|e| panic!("producer task: {e}"))
    }
}

/// Runs a testkit script helper on the blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| panic!("blocking task: {e}"))
}

/// `scripts/kafka.sh <args>` off the async workers.
pub async fn kafka(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        orderstream_testkit::kafka_script(&refs);
    })
    .await;
}

/// Restarts every Kafka node that a scenario took down, even when the scenario panics.
#[derive(Debug, Default)]
pub struct NodesGuard {
    down: Mutex<Vec<i32>>,
    paused: Mutex<Vec<i32>>,
}

impl NodesGuard {
    /// SIGSTOPs `node` (resumed on drop if the scenario does not).
    pub async fn pause(&self, node: i32) {
        if let Ok(mut p) = self.paused.lock() {
            p.push(node);
        }
        kafka(&["pause", &node.to_string()]).await;
    }

    /// SIGCONTs `node`.
    pub async fn resume(&self, node: i32) {
        kafka(&["resume", &node.to_string()]).await;
        if let Ok(mut p) = self.paused.lock() {
            p.retain(|n| *n != node);
        }
    }

    pub async fn kill(&self, node: i32) {
        self.mark(node);
        kafka(&["kill", &node.to_string()]).await;
    }

    pub async fn stop(&self, node: i32) {
        self.mark(node);
        kafka(&["stop", &node.to_string()]).await;
    }

    /// Starts `node` and waits until it is back in the ISR of its partitions.
    pub async fn start(&self, node: i32) {
        kafka(&["start", &node.to_string()]).await;
        if let Ok(mut d) = self.down.lock() {
            d.retain(|n| *n != node);
        }
    }

    /// Restarts a killed `node` and waits only until it is registered, not until it is back
    /// in the ISRs (a hard bounce).
    pub async fn start_registered(&self, node: i32) {
        kafka(&["start", &node.to_string(), "--registered"]).await;
        if let Ok(mut d) = self.down.lock() {
            d.retain(|n| *n != node);
        }
    }

    /// SIGKILLs every node at once.
    pub async fn kill_all(&self, nodes: &[i32]) {
        for n in nodes {
            self.mark(*n);
        }
        let kills = nodes.iter().map(|n| {
            let id = n.to_string();
            blocking(move || orderstream_testkit::kafka_script(&["kill", &id]))
        });
        futures::future::join_all(kills).await;
    }

    /// Starts every stopped node of the cluster and waits until all are registered.
    pub async fn start_all(&self) {
        kafka(&["start"]).await;
        if let Ok(mut d) = self.down.lock() {
            d.clear();
        }
    }

    fn mark(&self, node: i32) {
        if let Ok(mut d) = self.down.lock() {
            d.push(node);
        }
    }
}

impl Drop for NodesGuard {
    fn drop(&mut self) {
        let paused = self.paused.lock().map(|p| p.clone()).unwrap_or_default();
        for n in paused {
            let n = n.to_string();
            let r = std::panic::catch_unwind(|| orderstream_testkit::kafka_script(&["resume", &n]));
            eprintln!("guard: resumed Kafka node {n}: ok={}", r.is_ok());
        }
        let down = self.down.lock().map(|d| d.clone()).unwrap_or_default();
        for n in down {
            let n = n.to_string();
            let r = std::panic::catch_unwind(|| orderstream_testkit::kafka_script(&["start", &n]));
            eprintln!("guard: restarted Kafka node {n}: ok={}", r.is_ok());
        }
    }
}

/// Restarts the registry on drop unless it was restarted already.
#[derive(Debug)]
pub struct RegistryGuard {
    pub stopped: bool,
}

impl RegistryGuard {
    pub async fn stop() -> Self {
        blocking(|| orderstream_testkit::registry_script(&["stop"])).await;
        Self { stopped: true }
    }

    pub async fn start(&mut self) {
        blocking(|| orderstream_testkit::registry_script(&["start"])).await;
        self.stopped = false;
    }
}

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        if self.stopped {
            let r = std::panic::catch_unwind(|| orderstream_testkit::registry_script(&["start"]));
            eprintln!("guard: restarted the registry: ok={}", r.is_ok());
        }
    }
}

/// `of` each partition of `topic`, from a fresh metadata request.
fn fetch_per_partition<T>(
    cfg: &ClientConfig,
    topic: &str,
    of: fn(&MetadataPartition) -> T,
) -> Result<BTreeMap<i32, T>, String> {
    let c: BaseConsumer = cfg.create().map_err(|e| format!("metadata client: {e}"))?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| (p.id(), of(p))))
        .collect())
}

/// Leader broker id of each partition of `topic` (`-1`: none), from a fresh metadata request.
fn fetch_leaders(cfg: &ClientConfig, topic: &str) -> Result<BTreeMap<i32, i32>, String> {
    fetch_per_partition(cfg, topic, MetadataPartition::leader)
}

/// Asks `ask` off the async workers with a client config of `env` until it answers; errors
/// (right after a fault a metadata request may time out or reach the broker just killed) are
/// retried for a minute.
async fn metadata_answer<T: Send + 'static>(
    env: &TestEnv,
    what: &str,
    ask: fn(&ClientConfig, &str) -> Result<T, String>,
    topic: &str,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (cfg, t) = (env.client_config(), topic.to_owned());
        match blocking(move || ask(&cfg, &t)).await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what} of {topic}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{what} of {topic}: {e}"),
        }
    }
}

/// In-sync replica count of each partition of `topic`.
pub async fn isr_sizes(env: &TestEnv, topic: &str) -> BTreeMap<i32, usize> {
    metadata_answer(env, "ISR sizes", fetch_isr_sizes, topic).await
}

/// In-sync replica count of each partition of `topic`, from a fresh metadata request.
fn fetch_isr_sizes(cfg: &ClientConfig, topic: &str) -> Result<BTreeMap<i32, usize>, String> {
    fetch_per_partition(cfg, topic, |p| p.isr().len())
}

/// Leader broker id of each partition of `topic`.
pub async fn leaders(env: &TestEnv, topic: &str) -> BTreeMap<i32, i32> {
    metadata_answer(env, "leaders", fetch_leaders, topic).await
}

/// Polls the metadata until `partition` of `topic` is led by a live broker other than
/// `victim`; returns the new leader and the instant that was first seen. Metadata errors while
/// the cluster fails over are retried until `timeout`.
pub async fn wait_leader_moved(
    env: &TestEnv,
    topic: &str,
    partition: i32,
    victim: i32,
    timeout: Duration,
) -> (i32, Instant) {
    let start = Instant::now();
    loop {
        let (cfg, t) = (env.client_config(), topic.to_owned());
        let last = match blocking(move || fetch_leaders(&cfg, &t)).await {
            Ok(m) => match m.get(&partition) {
                Some(&l) if l > 0 && l != victim => return (l, Instant::now()),
                other => format!("leader {other:?}"),
            },
            Err(e) => e,
        };
        assert!(
            start.elapsed() < timeout,
            "partition {partition} of {topic} still not led by a broker other than {victim} after {timeout:?} ({last})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub use orderstream_testkit::wait_until;

/// Spawns one group member.
pub fn spawn_member<P: Processor>(
    cfg: ConsumerConfig,
    proc_: Arc<P>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<orderstream_consumer::RunSummary>,
) {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let jh = tokio::spawn(async move {
        orderstream_consumer::run(cfg, proc_, c)
            .await
            .unwrap_or_else(|e| panic!("member: {e}"))
    });
    (cancel, jh)
}

/// Waits until the recorder applied every acked event id.
pub async fn wait_consumed_all(rec: &Recorder, acked: &[Ev], timeout: Duration) -> Duration {
    let t0 = Instant::now();
    let want: std::collections::HashSet<&str> = acked.iter().map(|e| e.event_id.as_str()).collect();
    loop {
        let have = {
            let c = rec.consumed.lock().unwrap_or_else(|e| e.into_inner());
            let ids: std::collections::HashSet<&str> =
                c.iter().map(|e| e.event_id.as_str()).collect();
            want.iter().all(|w| ids.contains(w))
        };
        if have {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "consumer did not apply every acked event within {timeout:?} ({} of {} distinct)",
            rec.distinct(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `group`'s committed offsets on `topic` equal the end offsets, and returns how
/// long that took; fails with `what`, the offsets and the ends after `within`.
pub async fn wait_committed_to_end(
    env: &TestEnv,
    group: &str,
    topic: &str,
    within: Duration,
    what: &str,
) -> Duration {
    let ends = env.end_offsets(topic);
    let t0 = Instant::now();
    loop {
        let committed = env.committed_offsets(group, topic).await;
        if committed == ends {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{what}: committed {committed:?}, ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every partition of `topic` has 3 in-sync replicas again.
pub async fn wait_isr_full(env: &TestEnv, topic: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let isr = isr_sizes(env, topic).await;
        if !isr.is_empty() && isr.values().all(|n| *n == 3) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every ISR full again within {within:?}: {isr:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The active KRaft controller (the metadata quorum's leader), asked with Kafka's own
/// `MetadataQuorumCommand`; `None` while no leader is known.
pub async fn quorum_leader(env: &TestEnv) -> Option<i32> {
    let bootstrap = env.bootstrap.clone();
    let out = blocking(move || {
        std::panic::catch_unwind(|| {
            orderstream_testkit::kafka_script(&[
                "tool",
                "metadata-quorum",
                "--bootstrap-server",
                &bootstrap,
                "describe",
                "--status",
            ])
        })
    })
    .await
    .ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|id: &i32| *id >= 0)
}

/// The broker coordinating `group` (from `ConsumerGroupCommand --describe --state`); `None`
/// while the group has no coordinator or the tool cannot tell.
pub async fn group_coordinator(env: &TestEnv, group: &str) -> Option<i32> {
    let (bootstrap, name) = (env.bootstrap.clone(), group.to_owned());
    let out = blocking(move || {
        std::panic::catch_unwind(|| {
            orderstream_testkit::kafka_script(&[
                "tool",
                "consumer-groups",
                "--bootstrap-server",
                &bootstrap,
                "--describe",
                "--group",
                &name,
                "--state",
            ])
        })
    })
    .await
    .ok()?;
    // GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS: the id is in parentheses.
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(group))
        .and_then(|l| {
            l.split_once('(')?
                .1
                .split_once(')')
                .map(|(id, _)| id.to_owned())
        })
        .and_then(|id| id.trim().parse().ok())
}

/// Outcome of one probe send per partition.
#[derive(Debug, Default)]
pub struct Probe {
    pub acked: usize,
    pub not_enough_replicas: usize,
    /// Other answers, asked again (leadership moving): by error.
    pub other: BTreeMap<String, usize>,
}

/// One record to each of `partitions` of `topic` from a producer without idempotence or retries,
/// so the broker's own answer comes back unchanged: a partition that answers with another
/// error (a leader moving) is asked again, up to 10 times.
pub async fn probe_min_isr(env: &TestEnv, topic: &str, partitions: &[i32]) -> Probe {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = env
        .client_config()
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("message.send.max.retries", "0")
        .set("message.timeout.ms", "10000")
        .set("request.timeout.ms", "5000")
        .create()
        .unwrap_or_else(|e| panic!("probe producer: {e}"));
    let mut probe = Probe::default();
    for &partition in partitions {
        for _ in 0..10 {
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key("probe")
                .payload("probe");
            match producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => probe.acked += 1,
                Err((e, _)) => {
                    let code = e.rdkafka_error_code();
                    if matches!(
                        code,
                        Some(
                            rdkafka::types::RDKafkaErrorCode::NotEnoughReplicas
                                | rdkafka::types::RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                        )
                    ) {
                        probe.not_enough_replicas += 1;
                    } else {
                        *probe.other.entry(format!("{code:?}")).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            break;
        }
    }
    probe
}
