//! Consumer-group integration tests against the real cluster (raw byte payloads, a test
//! processor; no registry dependency beyond `TestEnv::connect`).
//!
//! Payload mini-language understood by [`TestProc`]:
//! * `ok:<id>` — succeeds;
//! * `poison:<id>` — permanent failure (class `test_poison`);
//! * `flaky:<n>:<id>` — transient failure while `record.attempt() <= n`, then success;
//! * `always:<id>` — always transient.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderstream_consumer::{
    BackoffConfig, ConsumerConfig, Dedup, ProcessError, Processor, Record, ReplaySelection,
    RunSummary, Topics, headers as h,
};
use orderstream_testkit::{Spawned, TestEnv};
use rand::Rng;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    id: String,
    attempt: u32,
}

#[derive(Debug, Default)]
struct TestProc {
    max_latency_ms: u64,
    /// every successful invocation, in completion order
    done: Mutex<Vec<Seen>>,
    /// effects applied once per id
    dedup: Option<Arc<Dedup>>,
    effects: AtomicU64,
    calls: AtomicU64,
}

impl TestProc {
    fn new(max_latency_ms: u64) -> Self {
        Self {
            max_latency_ms,
            ..Self::default()
        }
    }
    fn ids(&self) -> BTreeSet<String> {
        self.done
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }
    fn done(&self) -> Vec<Seen> {
        self.done.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.done.lock().unwrap().len()
    }
}

impl Processor for TestProc {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let payload = String::from_utf8(record.payload().unwrap_or_default().to_vec()).unwrap();
        if self.max_latency_ms > 0 {
            let ms = rand::rng().random_range(0..=self.max_latency_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let parts: Vec<&str> = payload.split(':').collect();
        let id = parts.last().copied().unwrap_or_default().to_owned();
        match parts[0] {
            "poison" => {
                return Err(
                    ProcessError::permanent("test_poison", format!("poison {id}"))
                        .with_schema_id(7),
                );
            }
            "always" => return Err(ProcessError::transient(format!("always {id}"))),
            "flaky" => {
                let n: u32 = parts[1].parse().unwrap();
                if record.attempt() <= n {
                    return Err(ProcessError::transient(format!(
                        "flaky attempt {}",
                        record.attempt()
                    )));
                }
            }
            _ => {}
        }
        if let Some(d) = &self.dedup {
            if d.first_time(&id) {
                self.effects.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.effects.fetch_add(1, Ordering::Relaxed);
        }
        self.done.lock().unwrap().push(Seen {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            key: String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned(),
            id,
            attempt: record.attempt(),
        });
        Ok(())
    }
}

struct Setup {
    env: TestEnv,
    topics: Topics,
    group: String,
}

async fn setup(test: &str, partitions: i32) -> Setup {
    let env = TestEnv::connect().await;
    let base = env.unique(test);
    let topics = Topics::new(base.clone(), format!("{base}.retry"), format!("{base}.dlq"));
    env.create_topic(&topics.source, partitions).await;
    env.create_topic(&topics.retry, partitions).await;
    env.create_topic(&topics.dead_letter, 1).await;
    let group = env.group_id(test);
    Setup { env, topics, group }
}

fn config(s: &Setup) -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_secs(10),
        revoke_drain_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        commit_interval: Duration::from_millis(200),
        commit_every: 50,
        max_concurrency: 8,
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(&s.env.bootstrap, &s.group, s.topics.clone())
    }
}

/// [`config`] with `in_place` attempts 10 ms apart, then up to `rounds` parkings in the retry
/// topic `delay` apart.
fn retrying(s: &Setup, in_place: u32, delay: Duration, rounds: u32) -> ConsumerConfig {
    ConsumerConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(10),
            max_attempts: in_place,
            ..BackoffConfig::default()
        },
        retry_topic_delay: delay,
        max_retry_topic_attempts: rounds,
        ..config(s)
    }
}

/// Produces `n` good records `ok:<i>` keyed `k<i % keys>` (no partition, no headers).
async fn seed(p: &FutureProducer, topic: &str, n: usize, keys: usize) {
    for i in 0..n {
        send(
            p,
            topic,
            None,
            &format!("k{}", i % keys),
            &format!("ok:{i:05}"),
            &[],
        )
        .await;
    }
}

async fn send(
    p: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: &str,
    hs: &[(&str, &str)],
) -> (i32, i64) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in hs {
        headers = headers.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut r = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    if let Some(p) = partition {
        r = r.partition(p);
    }
    let d = p
        .send(r, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (d.partition, d.offset)
}

use orderstream_testkit::wait_until;

/// Polls, while the members are still running, until the committed offsets of `group` on
/// `topic` equal its end offsets (measured once: call it after production finished). Seeing
/// every id is not enough to stop: a member may still have redelivered, already-seen records
/// queued, and shutdown commits only the contiguous frontier.
///
/// # Panics
/// When they are not equal within `timeout`, with the last committed offsets seen.
async fn wait_committed_to_end(env: &TestEnv, group: &str, topic: &str, timeout: Duration) {
    let ends = env.end_offsets(topic);
    let start = Instant::now();
    loop {
        let committed = env.committed_offsets(group, topic).await;
        if committed == ends {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "group {group} did not commit to the end of {topic} within {timeout:?}: \
             committed {committed:?}, end {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn spawn_member<P: Processor>(
    cfg: ConsumerConfig,
    proc_: Arc<P>,
) -> (CancellationToken, tokio::task::JoinHandle<RunSummary>) {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let jh = tokio::spawn(async move { orderstream_consumer::run(cfg, proc_, c).await.unwrap() });
    (cancel, jh)
}

/// Random handler latencies, key-ordered parallelism, a stop at a random point: the committed
/// offset never passes an unprocessed record; after a restart nothing is lost and per-key order
/// held in both runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_out_of_order_commit_never_passes_frontier_and_nothing_lost() {
    let s = setup("ooo", 3).await;
    let p = s.env.producer();
    let n = 600usize;
    seed(&p, &s.topics.source, n, 25).await;
    let proc1 = Arc::new(TestProc::new(15));
    let (cancel, jh) = spawn_member(config(&s), Arc::clone(&proc1));
    let stop_at = rand::rng().random_range(50..400);
    wait_until("first member progress", Duration::from_secs(60), || {
        proc1.count() >= stop_at
    })
    .await;
    cancel.cancel();
    let sum1 = jh.await.unwrap();
    println!("run 1 stopped after {stop_at}: {sum1:?}");
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await;
    // committed never passes an unprocessed record
    let done1: BTreeMap<i32, BTreeSet<i64>> =
        proc1.done().iter().fold(BTreeMap::new(), |mut m, x| {
            m.entry(x.partition).or_default().insert(x.offset);
            m
        });
    for (part, c) in &committed {
        for o in 0..*c {
            assert!(
                done1.get(part).is_some_and(|d| d.contains(&o)),
                "partition {part}: committed {c} but offset {o} was never processed"
            );
        }
    }
    // restart: everything gets processed
    let proc2 = Arc::new(TestProc::new(5));
    let (cancel, jh) = spawn_member(config(&s), Arc::clone(&proc2));
    let all: BTreeSet<String> = (0..n).map(|i| format!("{i:05}")).collect();
    wait_until("all ids processed", Duration::from_secs(90), || {
        let mut u = proc1.ids();
        u.extend(proc2.ids());
        u == all
    })
    .await;
    wait_committed_to_end(&s.env, &s.group, &s.topics.source, Duration::from_secs(60)).await;
    cancel.cancel();
    let sum2 = jh.await.unwrap();
    println!("run 2: {sum2:?}");
    let ends = s.env.end_offsets(&s.topics.source);
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await;
    assert_eq!(
        committed, ends,
        "after the restart every offset is committed"
    );
    // per-key order inside each run: ids of one key strictly increasing
    for proc_ in [&proc1, &proc2] {
        let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
        for x in proc_.done() {
            per_key.entry(x.key).or_default().push(x.id);
        }
        for (k, ids) in per_key {
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "key {k} out of order: {ids:?}"
            );
        }
    }
    let redelivered = proc1.count() + proc2.count() - n;
    println!("redelivered after restart: {redelivered}");
}

/// Two members with cooperative-sticky: a second one joins while records flow; every revoke
/// commit succeeds, every record is processed, effects exactly once after dedup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_two_members_rebalance_without_loss() {
    two_members_rebalance_without_loss("rebal", orderstream_consumer::GroupProtocol::default())
        .await;
}

/// The same with the KIP-848 protocol (`group.protocol=consumer`): the broker computes the
/// assignment and revokes incrementally; the revoke commit and exactly-once effects must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_two_members_rebalance_without_loss_kip848() {
    two_members_rebalance_without_loss("rebal848", orderstream_consumer::GroupProtocol::Consumer)
        .await;
}

async fn two_members_rebalance_without_loss(
    name: &str,
    group_protocol: orderstream_consumer::GroupProtocol,
) {
    let s = setup(name, 4).await;
    // Interval commits only every 5 s: B joins within that, so A's revoke has offsets of its
    // own to commit (an empty revoke commit is not counted), and the assertion below can fail.
    let config = |s: &Setup| ConsumerConfig {
        group_protocol: group_protocol.clone(),
        commit_every: usize::MAX,
        commit_interval: Duration::from_secs(5),
        ..config(s)
    };
    let p = s.env.producer();
    let dedup = Arc::new(Dedup::new(10_000));
    let mk = || {
        Arc::new(TestProc {
            max_latency_ms: 5,
            dedup: Some(Arc::clone(&dedup)),
            ..TestProc::default()
        })
    };
    seed(&p, &s.topics.source, 300, 40).await;
    let a = mk();
    let (ca, ja) = spawn_member(config(&s), Arc::clone(&a));
    wait_until("member A progress", Duration::from_secs(60), || {
        a.count() >= 50
    })
    .await;
    let b = mk();
    let (cb, jb) = spawn_member(config(&s), Arc::clone(&b));
    // Records keep flowing while B joins: at least 300 more, then small batches until B has
    // processed some (its partitions may arrive only after A has caught up with the first 300).
    let mut sent = 300usize;
    let start = Instant::now();
    loop {
        let batch = if sent < 600 { 600 - sent } else { 25 };
        for i in sent..sent + batch {
            send(
                &p,
                &s.topics.source,
                None,
                &format!("k{}", i % 40),
                &format!("ok:{i:05}"),
                &[],
            )
            .await;
        }
        sent += batch;
        // give B a moment before the next batch
        let pause = Instant::now();
        while b.count() == 0 && pause.elapsed() < Duration::from_millis(250) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if b.count() > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "B processed nothing within 60 s ({sent} records sent)"
        );
    }
    let all: BTreeSet<String> = (0..sent).map(|i| format!("{i:05}")).collect();
    wait_until(
        "all ids processed by the group",
        Duration::from_secs(120),
        || {
            let mut u = a.ids();
            u.extend(b.ids());
            u == all
        },
    )
    .await;
    wait_committed_to_end(&s.env, &s.group, &s.topics.source, Duration::from_secs(60)).await;
    cb.cancel();
    let sb = jb.await.unwrap();
    ca.cancel();
    let sa = ja.await.unwrap();
    println!("A: {sa:?}\nB: {sb:?}");
    assert_eq!(sa.revoke_commits_failed + sb.revoke_commits_failed, 0);
    assert!(sa.revoke_commits_ok >= 1, "A must have committed on revoke");
    assert_eq!(
        a.effects.load(Ordering::Relaxed) + b.effects.load(Ordering::Relaxed),
        sent as u64,
        "effects exactly once after dedup"
    );
    let ends = s.env.end_offsets(&s.topics.source);
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await;
    assert_eq!(committed, ends);
}

/// A poison record placed LAST in its partition goes to the dead-letter topic with every header,
/// the committed offset moves past it; replay sends it back to the same partition with the same
/// key and original headers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_poison_last_in_partition_dead_lettered_then_replayed() {
    let s = setup("poison", 2).await;
    let p = s.env.producer();
    send(&p, &s.topics.source, Some(1), "a", "ok:1", &[]).await;
    send(&p, &s.topics.source, Some(1), "b", "ok:2", &[]).await;
    let (_, poison_off) = send(
        &p,
        &s.topics.source,
        Some(1),
        "c",
        "poison:3",
        &[("trace-id", "t-123")],
    )
    .await;
    send(&p, &s.topics.source, Some(0), "d", "ok:4", &[]).await;
    let proc_ = Arc::new(TestProc::new(0));
    let (cancel, jh) = spawn_member(config(&s), Arc::clone(&proc_));
    let group = s.group.clone();
    let start = Instant::now();
    loop {
        let c = s.env.committed_offsets(&group, &s.topics.source).await;
        if c.get(&1) == Some(&(poison_off + 1)) && c.get(&0) == Some(&1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "commit did not move past the poison record: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    assert_eq!(sum.dead_lettered, 1);
    assert_eq!(sum.processed, 3);
    let dl = s
        .env
        .read_all(&s.topics.dead_letter, Duration::from_secs(20))
        .await;
    assert_eq!(dl.len(), 1);
    let m = &dl[0];
    assert_eq!(m.key(), Some(&b"c"[..]));
    assert_eq!(m.payload(), Some(&b"poison:3"[..]));
    let hs: BTreeMap<String, String> = m
        .headers()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x.key.to_owned(),
                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    println!("{hs:#?}");
    assert_eq!(hs["trace-id"], "t-123");
    assert_eq!(hs[h::DLQ_SOURCE_TOPIC], s.topics.source);
    assert_eq!(hs[h::DLQ_SOURCE_PARTITION], "1");
    assert_eq!(hs[h::DLQ_SOURCE_OFFSET], poison_off.to_string());
    assert!(hs[h::DLQ_SOURCE_TIMESTAMP].parse::<i64>().unwrap() > 0);
    assert_eq!(hs[h::DLQ_ERROR_CLASS], "test_poison");
    assert_eq!(hs[h::DLQ_ERROR_MESSAGE], "poison 3");
    assert_eq!(hs[h::DLQ_ATTEMPTS], "1");
    assert_eq!(hs[h::DLQ_SCHEMA_ID], "7");
    assert_eq!(hs[h::DLQ_GROUP], s.group);

    // replay
    let before = s.env.end_offsets(&s.topics.source);
    let rs = orderstream_consumer::replay(
        &s.env.client_config(),
        &s.topics.dead_letter,
        &ReplaySelection::default(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    println!("{rs:?}");
    assert_eq!(rs.read, 1);
    assert_eq!(rs.replayed.get(&(s.topics.source.clone(), 1)), Some(&1));
    let after = s.env.end_offsets(&s.topics.source);
    assert_eq!(
        after[&1],
        before[&1] + 1,
        "replayed to the source partition"
    );
    assert_eq!(after[&0], before[&0]);
    let src = s
        .env
        .read_all(&s.topics.source, Duration::from_secs(20))
        .await;
    let replayed = src
        .iter()
        .find(|m| m.partition() == 1 && m.offset() == before[&1])
        .unwrap();
    assert_eq!(replayed.key(), Some(&b"c"[..]));
    assert_eq!(replayed.payload(), Some(&b"poison:3"[..]));
    let keys: Vec<String> = replayed
        .headers()
        .unwrap()
        .iter()
        .map(|x| x.key.to_owned())
        .collect();
    assert_eq!(keys, vec!["trace-id".to_owned()]);
}

/// A handler failing transiently fewer times than the in-place budget succeeds in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_transient_failures_retry_in_place() {
    let s = setup("inplace", 1).await;
    let p = s.env.producer();
    send(&p, &s.topics.source, None, "k", "flaky:2:1", &[]).await;
    send(&p, &s.topics.source, None, "k", "ok:2", &[]).await;
    let proc_ = Arc::new(TestProc::new(0));
    let cfg = ConsumerConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max_attempts: 3,
            ..BackoffConfig::default()
        },
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("both processed", Duration::from_secs(60), || {
        proc_.count() == 2
    })
    .await;
    cancel.cancel();
    let sum = jh.await.unwrap();
    assert_eq!(sum.retried_in_place, 2);
    assert_eq!(sum.parked, 0);
    assert_eq!(sum.dead_lettered, 0);
    let done = proc_.done();
    assert_eq!(done[0].id, "1");
    assert_eq!(done[0].attempt, 3);
    assert_eq!(done[1].id, "2", "same key waits for the retried record");
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await[&0],
        2
    );
}

/// Longer failures go through the retry topic and succeed from there; later records of the same
/// key follow the parked one (per-key order holds), other keys flow on; a record that never
/// succeeds ends in the dead-letter topic after the retry-topic budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_retry_topic_keeps_per_key_order() {
    let s = setup("retrytopic", 1).await;
    let p = s.env.producer();
    // attempts 1,2 in place fail -> parked; attempt 3 (from the retry topic) fails, 4 succeeds in place there
    send(&p, &s.topics.source, None, "K", "flaky:3:K1", &[]).await;
    send(&p, &s.topics.source, None, "L", "ok:L1", &[]).await;
    send(&p, &s.topics.source, None, "K", "ok:K2", &[]).await;
    send(&p, &s.topics.source, None, "L", "ok:L2", &[]).await;
    send(&p, &s.topics.source, None, "K", "ok:K3", &[]).await;
    send(&p, &s.topics.source, None, "Z", "always:Z1", &[]).await;
    let proc_ = Arc::new(TestProc::new(0));
    let cfg = retrying(&s, 2, Duration::from_millis(300), 2);
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("K1..K3, L1, L2 processed", Duration::from_secs(60), || {
        proc_.count() == 5
    })
    .await;
    // Z1: 2 in place, parked (round 1), 2 more, parked (round 2), 2 more, dead letter
    let start = Instant::now();
    loop {
        let ends = s.env.end_offsets(&s.topics.dead_letter);
        if ends[&0] >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Z1 never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    let done = proc_.done();
    println!("{done:#?}");
    let order_k: Vec<&str> = done
        .iter()
        .filter(|x| x.key == "K")
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(
        order_k,
        vec!["K1", "K2", "K3"],
        "per-key order through the retry topic"
    );
    let l: Vec<&Seen> = done.iter().filter(|x| x.key == "L").collect();
    assert!(
        l.iter().all(|x| x.topic == s.topics.source),
        "other keys are not held back"
    );
    let k1 = done.iter().find(|x| x.id == "K1").unwrap();
    assert_eq!(k1.topic, s.topics.retry);
    assert_eq!(k1.attempt, 4);
    assert!(
        done.iter()
            .filter(|x| x.id == "K2" || x.id == "K3")
            .all(|x| x.topic == s.topics.retry),
        "K2, K3 followed K1"
    );
    assert_eq!(sum.parked, 3, "K1 once, Z1 twice");
    assert_eq!(sum.followed, 2);
    assert_eq!(sum.dead_lettered, 1);
    let dl = s
        .env
        .read_all(&s.topics.dead_letter, Duration::from_secs(20))
        .await;
    assert_eq!(dl.len(), 1);
    let hs: BTreeMap<String, String> = dl[0]
        .headers()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x.key.to_owned(),
                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        hs[h::DLQ_SOURCE_TOPIC],
        s.topics.source,
        "dead letter names the original source"
    );
    assert_eq!(hs[h::DLQ_SOURCE_OFFSET], "5");
    assert_eq!(hs[h::DLQ_ATTEMPTS], "6");
    assert_eq!(hs[h::DLQ_ERROR_CLASS], "transient");
    assert!(
        !hs.keys().any(|k| k.starts_with(h::RETRY_PREFIX)),
        "no retry headers in the dead letter"
    );
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await;
    assert_eq!(committed[&0], 6);
}

/// Accepts every record and remembers `(topic, payload)` of each call.
#[derive(Debug, Default)]
struct Accepting {
    seen: Mutex<Vec<(String, String)>>,
}

impl Accepting {
    /// `(topic, payload)` of every call, sorted.
    fn sorted(&self) -> Vec<(String, String)> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort();
        seen
    }
}

impl Processor for Accepting {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        let payload = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        self.seen
            .lock()
            .unwrap()
            .push((record.topic().to_owned(), payload));
        Ok(())
    }
}

/// Two groups on one orders topic share its retry topic. A record one group parks is retried
/// by that group only: the other group handled its own copy from the orders topic and passes
/// over the parked copies, committing past them, without calling its handler on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_sharing_a_retry_topic_handle_only_what_they_parked() {
    let s = setup("sharedretry", 1).await;
    let p = s.env.producer();
    send(&p, &s.topics.source, None, "K", "always:X1", &[]).await;
    send(&p, &s.topics.source, None, "L", "ok:L1", &[]).await;
    // Group A: X1 fails once in place, is parked, fails once more there, is dead-lettered.
    let failing = Arc::new(TestProc::new(0));
    let cfg_a = retrying(&s, 1, Duration::from_millis(100), 1);
    let (cancel_a, jh_a) = spawn_member(cfg_a, Arc::clone(&failing));
    wait_until("group A dead-letters X1", Duration::from_secs(60), || {
        s.env.end_offsets(&s.topics.dead_letter)[&0] >= 1
    })
    .await;
    // The dead letter is acknowledged before the member books it: wait for its commits.
    wait_committed_to_end(&s.env, &s.group, &s.topics.source, Duration::from_secs(60)).await;
    wait_committed_to_end(
        &s.env,
        &format!("{}.retry", s.group),
        &s.topics.retry,
        Duration::from_secs(60),
    )
    .await;
    cancel_a.cancel();
    let sum_a = jh_a.await.unwrap();
    assert_eq!(
        (sum_a.parked, sum_a.dead_lettered),
        (1, 1),
        "group A retried its own parked record: {sum_a:?}"
    );
    let parked = s.env.end_offsets(&s.topics.retry)[&0];
    assert_eq!(parked, 1, "one parked copy, by group A");

    // Group B, started after: its retry consumer reads the shared retry topic from the start.
    let group_b = s.env.group_id("sharedretry-b");
    let accepting = Arc::new(Accepting::default());
    let cfg_b = ConsumerConfig {
        group_id: group_b.clone(),
        ..config(&s)
    };
    let (cancel_b, jh_b) = spawn_member(cfg_b, Arc::clone(&accepting));
    wait_committed_to_end(&s.env, &group_b, &s.topics.source, Duration::from_secs(60)).await;
    wait_committed_to_end(
        &s.env,
        &format!("{group_b}.retry"),
        &s.topics.retry,
        Duration::from_secs(60),
    )
    .await;
    cancel_b.cancel();
    let sum_b = jh_b.await.unwrap();
    assert_eq!(
        accepting.sorted(),
        [
            (s.topics.source.clone(), "always:X1".to_owned()),
            (s.topics.source.clone(), "ok:L1".to_owned()),
        ],
        "group B handles its own copies only, never group A's parked one"
    );
    assert_eq!((sum_b.parked, sum_b.dead_lettered), (0, 0), "{sum_b:?}");
    assert_eq!(
        s.env.end_offsets(&s.topics.dead_letter)[&0],
        1,
        "group B dead-lettered nothing"
    );
}

/// A dead letter replayed into the retry topic reaches only the group that gave up on it: that
/// group, its handler fixed, handles the parked copy with a fresh budget; another group on the
/// same orders topic, which handled its own copy, passes over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_into_the_retry_topic_reaches_only_its_group() {
    let s = setup("replayretry", 1).await;
    let p = s.env.producer();
    send(&p, &s.topics.source, None, "K", "poison:X1", &[]).await;
    send(&p, &s.topics.source, None, "L", "ok:L1", &[]).await;
    // Group A dead-letters X1 (a permanent failure).
    let (cancel_a, jh_a) = spawn_member(config(&s), Arc::new(TestProc::new(0)));
    wait_committed_to_end(&s.env, &s.group, &s.topics.source, Duration::from_secs(60)).await;
    cancel_a.cancel();
    assert_eq!(jh_a.await.unwrap().dead_lettered, 1);
    // Group B accepts everything: it handles both records from the orders topic.
    let group_b = s.env.group_id("replayretry-b");
    let accepting = Arc::new(Accepting::default());
    let cfg_b = ConsumerConfig {
        group_id: group_b.clone(),
        ..config(&s)
    };
    let (cancel_b, jh_b) = spawn_member(cfg_b, Arc::clone(&accepting));
    wait_committed_to_end(&s.env, &group_b, &s.topics.source, Duration::from_secs(60)).await;

    let sel = ReplaySelection {
        group: Some(s.group.clone()),
        into_retry: Some(s.topics.retry.clone()),
        ..ReplaySelection::default()
    };
    let rs = orderstream_consumer::replay(
        &s.env.client_config(),
        &s.topics.dead_letter,
        &sel,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!((rs.read, rs.skipped), (1, 0), "{rs:?}");
    assert_eq!(rs.replayed.values().sum::<u64>(), 1);
    assert!(
        rs.replayed.keys().all(|(t, _)| *t == s.topics.retry),
        "{rs:?}"
    );
    let other = ReplaySelection {
        group: Some("no-such-group".to_owned()),
        ..sel.clone()
    };
    let none = orderstream_consumer::replay(
        &s.env.client_config(),
        &s.topics.dead_letter,
        &other,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(none.read, 0, "only the named group's dead letters");

    // Group A again, its handler fixed: it handles the parked copy from the retry topic.
    let fixed = Arc::new(Accepting::default());
    let (cancel_a, jh_a) = spawn_member(config(&s), Arc::clone(&fixed));
    wait_until(
        "group A handles the replayed copy",
        Duration::from_secs(60),
        || !fixed.seen.lock().unwrap().is_empty(),
    )
    .await;
    wait_committed_to_end(
        &s.env,
        &format!("{group_b}.retry"),
        &s.topics.retry,
        Duration::from_secs(60),
    )
    .await;
    wait_committed_to_end(
        &s.env,
        &format!("{}.retry", s.group),
        &s.topics.retry,
        Duration::from_secs(60),
    )
    .await;
    cancel_a.cancel();
    cancel_b.cancel();
    let sum_a = jh_a.await.unwrap();
    jh_b.await.unwrap();
    assert_eq!(
        *fixed.seen.lock().unwrap(),
        [(s.topics.retry.clone(), "poison:X1".to_owned())],
        "group A handled the replayed copy once, from the retry topic"
    );
    assert_eq!((sum_a.parked, sum_a.dead_lettered), (0, 0), "{sum_a:?}");
    assert_eq!(
        accepting.sorted(),
        [
            (s.topics.source.clone(), "ok:L1".to_owned()),
            (s.topics.source.clone(), "poison:X1".to_owned()),
        ],
        "group B never sees group A's replayed copy"
    );
    assert_eq!(s.env.end_offsets(&s.topics.dead_letter)[&0], 1);
}

/// The sample order processor against the real registry: a valid order lifecycle is applied,
/// a duplicate is skipped, and every poison kind (bad magic, unknown schema id, truncated
/// header, undecodable body, illegal transition — the last one LAST in its partition) lands in
/// the dead-letter topic with its class while the commit moves to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_sample_processor_poison_kinds_and_dedup() {
    use orderstream_orders::{OrderProcessor, OrderState, SampleConfig};
    use orderstream_schema::{EventType, OrderCodec, OrderEvent, RegistryConfig};
    let s = setup("sample", 1).await;
    let codec = OrderCodec::new(RegistryConfig {
        url: s.env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let ev = |order: &str, seq: i64, t: EventType| OrderEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: order.to_owned(),
        sequence: seq,
        event_type: t,
        ..OrderEvent::example()
    };
    let p = s.env.producer();
    let topic = s.topics.source.clone();
    let send_raw = |key: &'static str, bytes: Vec<u8>| {
        let p = p.clone();
        let topic = topic.clone();
        async move {
            p.send(
                FutureRecord::to(&topic).key(key).payload(&bytes),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        }
    };
    let lifecycle = [
        ev("o1", 0, EventType::Created),
        ev("o1", 1, EventType::Paid),
        ev("o1", 2, EventType::Shipped),
        ev("o1", 3, EventType::Delivered),
    ];
    for e in &lifecycle {
        send_raw("o1", codec.encode(&topic, e).await.unwrap().bytes).await;
    }
    // duplicate delivery of the Paid event
    send_raw(
        "o1",
        codec.encode(&topic, &lifecycle[1]).await.unwrap().bytes,
    )
    .await;
    let good = codec
        .encode(&topic, &ev("o3", 0, EventType::Created))
        .await
        .unwrap()
        .bytes;
    send_raw("p1", vec![1, 2, 3, 4, 5, 6]).await; // bad magic
    send_raw("p2", vec![0, 0x7f, 0xff, 0xff, 0xf0, 2, 4]).await; // unknown schema id
    send_raw("p3", vec![0, 0, 0]).await; // truncated header
    send_raw("p4", good[..good.len() / 2].to_vec()).await; // truncated Avro body
    send_raw(
        "o2",
        codec
            .encode(&topic, &ev("o2", 0, EventType::Created))
            .await
            .unwrap()
            .bytes,
    )
    .await;
    send_raw(
        "o2",
        codec
            .encode(&topic, &ev("o2", 1, EventType::Shipped))
            .await
            .unwrap()
            .bytes,
    )
    .await; // illegal, last

    let processor = Arc::new(OrderProcessor::new(
        codec.clone(),
        SampleConfig {
            unknown_schema_max_attempts: 3,
            ..SampleConfig::default()
        },
    ));
    let cfg = ConsumerConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max_attempts: 3,
            ..BackoffConfig::default()
        },
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&processor));
    let end = s.env.end_offsets(&topic)[&0];
    let start = Instant::now();
    loop {
        let c = s.env.committed_offsets(&s.group, &topic).await;
        if c[&0] == end {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "commit stuck at {c:?}, end {end}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    let snap = processor.snapshot();
    println!("{snap:?}");
    assert_eq!(snap.orders.get("o1"), Some(&OrderState::Delivered));
    assert_eq!(snap.orders.get("o2"), Some(&OrderState::Created));
    assert_eq!(snap.applied_events, 5);
    assert_eq!(snap.duplicates, 1);
    assert_eq!(snap.rejected, 1);
    let dl = s
        .env
        .read_all(&s.topics.dead_letter, Duration::from_secs(20))
        .await;
    let mut classes: Vec<String> = dl
        .iter()
        .map(|m| {
            let hs = m.headers().unwrap();
            let v = hs
                .iter()
                .find(|x| x.key == h::DLQ_ERROR_CLASS)
                .unwrap()
                .value
                .unwrap();
            String::from_utf8_lossy(v).into_owned()
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        vec![
            "bad_magic",
            "illegal_transition",
            "truncated",
            "undecodable",
            "unknown_schema_id"
        ]
    );
    let unknown = dl.iter().find(|m| m.key() == Some(&b"p2"[..])).unwrap();
    let sid = unknown
        .headers()
        .unwrap()
        .iter()
        .find(|x| x.key == h::DLQ_SCHEMA_ID)
        .unwrap()
        .value
        .unwrap();
    assert_eq!(sid, format!("{}", 0x7fff_fff0u32).as_bytes());
    assert_eq!(sum.dead_lettered, 5);
}

/// The KIP-848 group protocol (`group.protocol=consumer`) works with the same run loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_kip848_group_protocol() {
    let s = setup("kip848", 3).await;
    let p = s.env.producer();
    for i in 0..90 {
        send(
            &p,
            &s.topics.source,
            None,
            &format!("k{}", i % 9),
            &format!("ok:{i:03}"),
            &[],
        )
        .await;
    }
    let proc_ = Arc::new(TestProc::new(2));
    let cfg = ConsumerConfig {
        group_protocol: orderstream_consumer::GroupProtocol::Consumer,
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("all processed", Duration::from_secs(60), || {
        proc_.ids().len() == 90
    })
    .await;
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await,
        s.env.end_offsets(&s.topics.source)
    );
}

/// A tiny in-flight window forces pause/resume cycles: every record is still processed exactly
/// once in the run (resume continues from the application's position) and per-key order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_backpressure_pauses_without_loss() {
    let s = setup("backpressure", 1).await;
    let p = s.env.producer();
    seed(&p, &s.topics.source, 300, 20).await;
    // handlers slow enough that the full window often cannot make room within the poll
    // thread's wait before pausing (the single partition has no other to feed, so it waits
    // 200 ms)
    let proc_ = Arc::new(TestProc::new(600));
    let cfg = ConsumerConfig {
        max_in_flight_per_partition: 8,
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("all processed", Duration::from_secs(90), || {
        proc_.ids().len() == 300
    })
    .await;
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    assert!(sum.pauses > 0, "the window must have filled");
    assert_eq!(
        proc_.count(),
        300,
        "no record processed twice within one run"
    );
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for x in proc_.done() {
        per_key.entry(x.key).or_default().push(x.id);
    }
    for (k, ids) in per_key {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "key {k} out of order: {ids:?}"
        );
    }
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await[&0],
        300
    );
}

/// A handler slower than the poll thread's short wait but steady: with no other partition
/// waiting for records (the member's second partition gets none), the full window is waited
/// for instead of paused (a pause would drop the partition's prefetched records and fetch them
/// again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_handler_fills_its_window_without_pausing() {
    let s = setup("slow_no_pause", 2).await;
    let p = s.env.producer();
    let n = 200usize;
    for i in 0..n {
        send(
            &p,
            &s.topics.source,
            Some(0),
            &format!("k{}", i % 20),
            &format!("ok:{i:05}"),
            &[],
        )
        .await;
    }
    // up to 60 ms a record: the oldest one frees room later than 20 ms, well within 200 ms
    let proc_ = Arc::new(TestProc::new(60));
    let cfg = ConsumerConfig {
        max_in_flight_per_partition: 8,
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("all processed", Duration::from_secs(90), || {
        proc_.ids().len() == n
    })
    .await;
    cancel.cancel();
    let sum = jh.await.unwrap();
    println!("{sum:?}");
    // pausing after the short wait pauses about twenty times here; two allow for a stall of
    // the test machine longer than 140 ms
    assert!(
        sum.pauses <= 2,
        "a steady handler's partition is not paused: {} pauses",
        sum.pauses
    );
    assert_eq!(proc_.count(), n, "each record once");
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await[&0],
        n as i64
    );
}

/// Holds every handler whose key is gated until the gate opens; counts starts and finishes.
#[derive(Default)]
struct GateProc {
    /// keys held; `None` holds every key
    held: Option<BTreeSet<String>>,
    open: tokio::sync::Notify,
    opened: std::sync::atomic::AtomicBool,
    started: AtomicU64,
    finished: AtomicU64,
}

impl GateProc {
    fn holding(keys: &[&str]) -> Self {
        Self {
            held: Some(keys.iter().map(|k| (*k).to_owned()).collect()),
            ..Self::default()
        }
    }
    fn open(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.open.notify_waiters();
    }
    /// Opens the gate, waits until all `n` records finished, stops the member.
    async fn release(
        &self,
        n: usize,
        cancel: CancellationToken,
        member: tokio::task::JoinHandle<RunSummary>,
    ) -> RunSummary {
        self.open();
        wait_until("every record", Duration::from_secs(60), || {
            self.finished.load(Ordering::SeqCst) as usize == n
        })
        .await;
        cancel.cancel();
        member.await.unwrap()
    }
}

impl Processor for GateProc {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let key = String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned();
        if self.held.as_ref().is_none_or(|h| h.contains(&key)) {
            let opened = self.open.notified();
            if !self.opened.load(Ordering::SeqCst) {
                opened.await;
            }
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Every handler blocked and a large offset window: what reaches the partition's owner is
/// bounded by the byte window the memory budget sets, and the partition is paused at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_handlers_hold_no_more_than_the_byte_window() {
    let s = setup("byte_window", 1).await;
    let p = s.env.producer();
    let (n, size) = (300usize, 20_000usize);
    let body = "x".repeat(size);
    for i in 0..n {
        send(&p, &s.topics.source, None, &format!("k{i}"), &body, &[]).await;
    }
    let proc_ = Arc::new(GateProc::default());
    let cfg = ConsumerConfig {
        memory_budget: orderstream_consumer::MIN_MEMORY_BUDGET,
        max_in_flight_per_partition: 10_000,
        max_concurrency: 1_000,
        ..config(&s)
    };
    // the source consumer's window (the member's second consumer, of the retry topic, has the
    // other half of the budget), plus the one record that fills it
    let share = if cfg.consume_retry_topic && cfg.retry_topic_enabled {
        cfg.memory_budget / 2
    } else {
        cfg.memory_budget
    };
    let window = orderstream_consumer::MemoryBudget::split(share).window_per_partition(1);
    let bound = window / size + 1;
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until("the first handlers", Duration::from_secs(60), || {
        proc_.started.load(Ordering::SeqCst) > 0
    })
    .await;
    // long enough for a member without a byte window to take the whole partition
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = proc_.started.load(Ordering::SeqCst) as usize;
    assert!(
        started <= bound,
        "{started} records reached the handlers while all were blocked; the window holds {bound}"
    );
    let sum = proc_.release(n, cancel, jh).await;
    assert!(
        sum.pauses > 0,
        "the full window must pause the partition: {sum:?}"
    );
    assert_eq!(
        proc_.started.load(Ordering::SeqCst) as usize,
        n,
        "each record once"
    );
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await[&0],
        n as i64
    );
}

/// One record that never finishes: the records behind it finish, but the frontier cannot pass
/// it, so the partition is paused at the offset window instead of running on without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_record_pauses_its_partition_at_the_offset_window() {
    let s = setup("stuck_record", 1).await;
    let p = s.env.producer();
    let n = 400usize;
    send(&p, &s.topics.source, None, "stuck", "ok:stuck", &[]).await;
    seed(&p, &s.topics.source, n - 1, 50).await;
    let proc_ = Arc::new(GateProc::holding(&["stuck"]));
    let span = 40usize;
    let cfg = ConsumerConfig {
        max_in_flight_per_partition: span,
        ..config(&s)
    };
    let (cancel, jh) = spawn_member(cfg, Arc::clone(&proc_));
    wait_until(
        "the records behind the stuck one",
        Duration::from_secs(60),
        || proc_.finished.load(Ordering::SeqCst) > 0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = proc_.started.load(Ordering::SeqCst) as usize;
    assert!(
        started <= span,
        "{started} records handed over behind a stuck one; the offset window is {span}"
    );
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await[&0];
    assert!(
        committed <= 0,
        "committed {committed}: nothing may be committed past the stuck record at offset 0"
    );
    let sum = proc_.release(n, cancel, jh).await;
    assert!(
        sum.pauses > 0,
        "the stuck record must pause its partition: {sum:?}"
    );
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await[&0],
        n as i64
    );
}

/// Processor of the child member: appends `partition offset id` to a file after each success
/// (unbuffered writes, so a SIGKILL loses nothing that was reported).
struct FileProc {
    file: Mutex<std::fs::File>,
}

impl Processor for FileProc {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        use std::io::Write;
        let ms = rand::rng().random_range(0..=10);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let payload = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        let line = format!("{} {} {}\n", record.partition(), record.offset(), payload);
        self.file
            .lock()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        Ok(())
    }
}

fn child_config(bootstrap: &str, group: &str, topics: Topics) -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_secs(6),
        revoke_drain_timeout: Duration::from_secs(3),
        shutdown_timeout: Duration::from_secs(5),
        commit_interval: Duration::from_millis(100),
        commit_every: 20,
        max_concurrency: 8,
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(bootstrap, group, topics)
    }
}

/// Not a test on its own: the group member that `consumer_sigkill_*` runs in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of consumer_sigkill_member_loses_nothing"]
async fn consumer_child_member() {
    let Ok(spec) = std::env::var("ORDERSTREAM_CHILD_SPEC") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(f[5])
        .unwrap();
    let cfg = child_config(f[0], f[1], Topics::new(f[2], f[3], f[4]));
    let proc_ = Arc::new(FileProc {
        file: Mutex::new(file),
    });
    // runs until SIGKILLed
    orderstream_consumer::run(cfg, proc_, CancellationToken::new())
        .await
        .unwrap();
}

fn read_log(path: &std::path::Path) -> Vec<(i32, i64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.to_owned(),
            ))
        })
        .collect()
}

/// A member SIGKILLed at a random point while processing with out-of-order completion: the
/// committed offsets never pass an unprocessed record, and after the group recovers nothing is
/// lost (duplicates are counted: they are what dedup absorbs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_sigkill_member_loses_nothing() {
    let s = setup("sigkill", 3).await;
    let p = s.env.producer();
    let n = 1000usize;
    seed(&p, &s.topics.source, n, 50).await;
    let log = std::env::temp_dir().join(format!("{}.log", s.env.unique("sigkill")));
    let spec = format!(
        "{}|{}|{}|{}|{}|{}",
        s.env.bootstrap,
        s.group,
        s.topics.source,
        s.topics.retry,
        s.topics.dead_letter,
        log.display()
    );
    let mut child = Spawned::start(
        "consumer_child_member",
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "consumer_child_member",
                "--ignored",
                "--nocapture",
            ])
            .env("ORDERSTREAM_CHILD_SPEC", &spec),
    );
    let kill_at = rand::rng().random_range(100..700);
    wait_until("child progress", Duration::from_secs(90), || {
        if let Some(status) = child.exited() {
            panic!("the child member exited before it was killed: {status}");
        }
        read_log(&log).len() >= kill_at
    })
    .await;
    child.kill(); // SIGKILL
    let before = read_log(&log);
    let done: BTreeMap<i32, BTreeSet<i64>> =
        before.iter().fold(BTreeMap::new(), |mut m, (p, o, _)| {
            m.entry(*p).or_default().insert(*o);
            m
        });
    let committed = s.env.committed_offsets(&s.group, &s.topics.source).await;
    println!(
        "killed after {} records; committed {committed:?}",
        before.len()
    );
    for (part, c) in &committed {
        for o in 0..*c {
            assert!(
                done.get(part).is_some_and(|d| d.contains(&o)),
                "partition {part}: committed {c} but offset {o} was never processed"
            );
        }
    }
    // recovery in-process
    let proc_ = Arc::new(TestProc::new(0));
    let cancel = CancellationToken::new();
    let cfg = child_config(&s.env.bootstrap, &s.group, s.topics.clone());
    let jh = tokio::spawn(orderstream_consumer::run(
        cfg,
        Arc::clone(&proc_),
        cancel.clone(),
    ));
    let all: BTreeSet<String> = (0..n).map(|i| format!("ok:{i:05}")).collect();
    wait_until(
        "recovery processes the rest",
        Duration::from_secs(120),
        || {
            let mut u: BTreeSet<String> = before.iter().map(|x| x.2.clone()).collect();
            u.extend(proc_.ids().into_iter().map(|i| format!("ok:{i}")));
            u == all
        },
    )
    .await;
    wait_committed_to_end(&s.env, &s.group, &s.topics.source, Duration::from_secs(60)).await;
    cancel.cancel();
    let sum = jh.await.unwrap().unwrap();
    println!("recovery: {sum:?}");
    let dups = before.len() + proc_.count() - n;
    println!("raw duplicates after the kill (absorbed by dedup): {dups}");
    assert_eq!(
        s.env.committed_offsets(&s.group, &s.topics.source).await,
        s.env.end_offsets(&s.topics.source)
    );
    let _ = std::fs::remove_file(&log);
}
