//! The transactional stage (`orderstream stage`) against the real cluster: order events become
//! status records exactly once. Checked by an independent `read_committed` reader: one status
//! record per event, none twice, each order's in sequence, undecodable input dead-lettered
//! once, and the group's committed offsets at the end of the input.
//!
//! `--ignored` (3-node fault suite): the same through broker kills and stage SIGKILLs, and a
//! member paused past its session (a zombie) that must not commit anything when resumed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orderstream_orders::OrderProducer;
use orderstream_producer::{ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig};
use orderstream_testkit::{Spawned, TestEnv, kafka_script};
use orderstream_topology::TopicNames;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use support::{interrupt, orderstream, text};

use orderstream_orders::fixtures::LIFECYCLE as KINDS;

fn event(prefix: &str, order: usize, seq: usize) -> OrderEvent {
    orderstream_orders::fixtures::lifecycle(prefix, order, seq as i64)
}

struct Rig {
    env: TestEnv,
    layout: String,
    names: TopicNames,
    group: String,
    prefix: String,
    producer: OrderProducer,
    logs: PathBuf,
    /// Every member started, so a failing test leaves none running.
    started: std::sync::Mutex<Vec<u32>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let pids = self.started.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            // only our own member, still running (not a reused pid)
            let ours = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(&self.group));
            if ours {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

impl Rig {
    async fn new(test: &str) -> Rig {
        let env = TestEnv::connect().await;
        let (layout, names) = env.topology_file(test);
        let layout = layout.to_str().expect("utf-8").to_owned();
        let applied = orderstream(&env, &["--topology", &layout, "topics", "apply"]);
        assert!(applied.status.success(), "{:?}", text(&applied));
        let codec = OrderCodec::new(RegistryConfig {
            url: env.registry_url.clone(),
            ..RegistryConfig::default()
        })
        .expect("codec");
        let producer = OrderProducer::new(
            ProducerConfig {
                bootstrap_servers: env.bootstrap.clone(),
                ..ProducerConfig::default()
            },
            codec,
            ProducerTopic::new(names.orders.clone(), env.partition_count(&names.orders)),
        )
        .await
        .expect("producer");
        let logs = std::env::temp_dir()
            .join("orderstream-tests")
            .join(env.unique(test));
        std::fs::create_dir_all(&logs).expect("log dir");
        Rig {
            group: env.group_id(test),
            prefix: env.unique("o"),
            names,
            layout,
            env,
            producer,
            logs,
            started: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A stage member; its log goes to a file (a pipe could fill and stall it).
    fn stage(&self, id: &str, extra: &[&str]) -> Spawned {
        // appended: a restarted member's log follows its predecessor's
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{id}.log")))
            .expect("log file");
        let child = Spawned::start_with_stderr(
            format!("orderstream stage {id}"),
            Command::new(env!("CARGO_BIN_EXE_orderstream"))
                .args(["--topology", &self.layout, "stage", "--group", &self.group])
                .args(["--transactional-id", &format!("{}-{id}", self.group)])
                .args(["--for", "900"])
                .args(extra)
                .env("ORDERSTREAM_BOOTSTRAP", &self.env.bootstrap)
                .env("ORDERSTREAM_REGISTRY_URL", &self.env.registry_url)
                .env_remove("ORDERSTREAM_CONFIG")
                .env("RUST_LOG", "warn,orderstream_consumer=info"),
            Stdio::from(log),
        );
        if let Ok(mut pids) = self.started.lock() {
            pids.push(child.id());
        }
        child
    }

    /// Every event of orders `orders`, sequence by sequence (a key's events in order), paced
    /// at `per_tick` events per 100 ms (0: unpaced); every send acknowledged.
    fn produce(&self, orders: usize, per_tick: usize) -> tokio::task::JoinHandle<BTreeSet<String>> {
        self.produce_until(orders, per_tick, None, Arc::default())
    }

    /// Like `produce`, but with `stop` given the stream goes on in waves of further orders
    /// until `stop` is set (and at least `orders` orders were sent): a fault schedule whose
    /// steps take longer on a loaded machine still strikes while events arrive. `sent` counts
    /// the events handed to the producer so far.
    fn produce_until(
        &self,
        orders: usize,
        per_tick: usize,
        stop: Option<Arc<AtomicBool>>,
        sent: Arc<AtomicUsize>,
    ) -> tokio::task::JoinHandle<BTreeSet<String>> {
        const WAVE: usize = 2_500;
        let (producer, prefix) = (self.producer.clone(), self.prefix.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut ids = BTreeSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut first = 0;
            loop {
                let more = match &stop {
                    None if first == 0 => orders,
                    None => 0,
                    Some(_) if first < orders => WAVE.min(orders - first),
                    Some(s) if !s.load(Ordering::SeqCst) => WAVE,
                    Some(_) => 0,
                };
                if more == 0 {
                    break;
                }
                let wave: Vec<(usize, usize)> = (0..KINDS.len())
                    .flat_map(|seq| (first..first + more).map(move |o| (o, seq)))
                    .collect();
                first += more;
                let step = if per_tick == 0 { wave.len() } else { per_tick };
                for chunk in wave.chunks(step) {
                    if per_tick > 0 {
                        tick.tick().await;
                    }
                    for &(order, seq) in chunk {
                        let e = event(&prefix, order, seq);
                        ids.insert(e.event_id.clone());
                        pending.push(producer.enqueue(&e).await);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for p in pending {
                let outcome = p.outcome().await;
                assert!(
                    outcome.is_delivered(),
                    "every send acknowledged: {outcome:?}"
                );
            }
            ids
        })
    }

    /// Waits until the group committed the end of every orders partition.
    async fn caught_up(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ends = self.env.end_offsets(&self.names.orders);
            let committed = self
                .env
                .committed_offsets(&self.group, &self.names.orders)
                .await;
            if ends.iter().all(|(p, e)| committed.get(p) == Some(e)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stage did not commit the input's end within {within:?}: committed {committed:?}, ends {ends:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The status topic read with read_committed: (order id, sequence, event id) in offset
    /// order per partition.
    async fn statuses(&self) -> Vec<(String, i64, String)> {
        let msgs = self
            .env
            .read_all(
                self.names.get(orderstream_topology::TopicRole::Status),
                Duration::from_secs(120),
            )
            .await;
        msgs.iter()
            .map(|m| {
                let v: Value = serde_json::from_slice(m.payload().expect("status value"))
                    .expect("status JSON");
                let key = std::str::from_utf8(m.key().expect("status key")).expect("utf-8 key");
                assert_eq!(v["order_id"].as_str(), Some(key), "keyed by order id");
                (
                    key.to_owned(),
                    v["sequence"].as_i64().expect("sequence"),
                    v["event_id"].as_str().expect("event_id").to_owned(),
                )
            })
            .collect()
    }

    /// Exactly once: the status records are set-equal to the input events, none twice, and
    /// each order's records in sequence order.
    async fn assert_exactly_once(&self, input: &BTreeSet<String>) {
        let out = self.statuses().await;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let dups: Vec<&String> = out
            .iter()
            .map(|(_, _, id)| id)
            .filter(|id| !seen.insert((*id).clone()))
            .collect();
        let missing: Vec<&String> = input.difference(&seen).collect();
        let phantom: Vec<&String> = seen.difference(input).collect();
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        let mut reordered = 0;
        for (order, seq, _) in &out {
            if last.insert(order, *seq).is_some_and(|prev| prev >= *seq) {
                reordered += 1;
            }
        }
        println!(
            "status records {} for {} events: duplicates {}, missing {}, phantoms {}, reordered {}",
            out.len(),
            input.len(),
            dups.len(),
            missing.len(),
            phantom.len(),
            reordered
        );
        assert!(
            dups.is_empty(),
            "duplicates, e.g. {:?}",
            &dups[..dups.len().min(5)]
        );
        assert!(
            missing.is_empty(),
            "missing, e.g. {:?}",
            &missing[..missing.len().min(5)]
        );
        assert!(
            phantom.is_empty(),
            "phantoms, e.g. {:?}",
            &phantom[..phantom.len().min(5)]
        );
        assert_eq!(reordered, 0, "per-order sequence order");
        assert_eq!(out.len(), input.len());
    }
}

/// `(records, dead-lettered, aborted, dropped on revoke, producers replaced, records undecided)`
/// from a member's summary line.
fn figures(out: &Output) -> (u64, u64, u64, u64, u64, u64) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "stage failed: {stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("stage "))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let n = |label: &str| -> u64 {
        line.split(" | ")
            .chain(line.split(": "))
            .find_map(|part| part.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in {line}"))
    };
    (
        n("records"),
        n("dead-lettered"),
        n("transactions aborted"),
        n("records dropped on revoke"),
        n("producers replaced"),
        n("records undecided"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_turn_every_event_into_one_committed_status_record() {
    let rig = Rig::new("stage").await;
    let members = [rig.stage("a", &[]), rig.stage("b", &[])];
    let input = rig.produce(500, 0).await.expect("producer task");
    // Undecodable records: dead-lettered once each, inside the transactions.
    let garbage: BTreeSet<String> = (0..5)
        .map(|i| format!("{}-garbage-{i}", rig.prefix))
        .collect();
    let raw = rig.env.producer();
    for key in &garbage {
        raw.send(
            FutureRecord::to(&rig.names.orders)
                .key(key)
                .payload(b"not avro"),
            Duration::from_secs(30),
        )
        .await
        .expect("garbage acknowledged");
    }
    rig.caught_up(Duration::from_secs(120)).await;
    let outs: Vec<Output> = members.into_iter().map(interrupt).collect();
    let per_member: Vec<_> = outs.iter().map(figures).collect();
    println!("members (records, dead, aborted, dropped, replaced, undecided): {per_member:?}");
    let committed: u64 = per_member.iter().map(|f| f.0).sum();
    let dead: u64 = per_member.iter().map(|f| f.1).sum();
    // The members' own counts: every source record committed by exactly one transaction.
    assert_eq!(
        committed,
        (input.len() + garbage.len()) as u64,
        "records committed"
    );
    assert_eq!(dead, garbage.len() as u64, "dead-lettered");
    rig.assert_exactly_once(&input).await;
    let dlq = rig
        .env
        .read_all(&rig.names.dead_letter, Duration::from_secs(60))
        .await;
    let dead_keys: Vec<String> = dlq
        .iter()
        .map(|m| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        dead_keys.len(),
        garbage.len(),
        "each dead letter once: {dead_keys:?}"
    );
    assert_eq!(dead_keys.into_iter().collect::<BTreeSet<_>>(), garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_members_sharing_a_transactional_id_are_stopped_not_duplicated() {
    let rig = Rig::new("stage-fenced").await;
    let mut twins = [rig.stage("twin", &[]), rig.stage("twin", &[])];
    // Both in the group, then events for ~40 s: a fenced twin notices only at its next
    // transaction, so both must keep having work while they fence each other.
    rig.env
        .wait_for_group(&rig.group, 2, Duration::from_secs(60))
        .await;
    let producing = rig.produce(1_000, 10);
    // Each start and each replacement fences the other; a member fenced 3 times in 60 s stops.
    let deadline = Instant::now() + Duration::from_secs(120);
    let stopped = loop {
        if let Some(i) = twins.iter_mut().position(|c| c.exited().is_some()) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "neither twin stopped within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let [a, b] = twins;
    let (stopped, survivor) = if stopped == 0 { (a, b) } else { (b, a) };
    let out = stopped.wait(Duration::from_secs(30));
    assert!(!out.status.success(), "a fenced member exits with an error");
    let log = std::fs::read_to_string(rig.logs.join("twin.log")).expect("log");
    assert!(
        log.contains("was taken over by another producer"),
        "the error names the shared id: {log}"
    );
    // The survivor (or, if both stopped, a member with its own id) finishes the stream.
    let mut survivor = survivor;
    let finisher = if survivor.exited().is_none() {
        survivor
    } else {
        rig.stage("single", &[])
    };
    let input = producing.await.expect("producer task");
    rig.caught_up(Duration::from_secs(120)).await;
    let _ = interrupt(finisher);
    rig.assert_exactly_once(&input).await;
}

/// SIGKILLs a member and starts it again under the same transactional id.
fn restart(rig: &Rig, member: &mut Spawned, id: &str, extra: &[&str]) {
    member.kill();
    *member = rig.stage(id, extra);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "3-node cluster; kills brokers"]
async fn statuses_exactly_once_through_broker_kills_and_stage_sigkills() {
    let rig = Rig::new("stage-kills").await;
    let ids = ["a", "b"];
    let mut members: Vec<Spawned> = ids.iter().map(|id| rig.stage(id, &[])).collect();
    // At least 100 000 events (25 000 orders), ~900 per second, and on until the five rounds
    // (each a stage kill, every other one a broker kill that waits for the previous broker's
    // restart) are over, however long a restart takes.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let producing = rig.produce_until(25_000, 90, Some(Arc::clone(&stop)), Arc::clone(&sent));
    let mut sent_before = 0;
    let mut broker_kills = 0;
    let mut restarting: Option<tokio::task::JoinHandle<String>> = None;
    for round in 0..5 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let killing_broker = round % 2 == 0;
        if killing_broker {
            if let Some(r) = restarting.take() {
                r.await.expect("broker restart");
            }
            let node = (broker_kills % 3 + 1).to_string();
            println!("round {round}: SIGKILL Kafka node {node}");
            let n = node.clone();
            tokio::task::spawn_blocking(move || kafka_script(&["kill", &n]))
                .await
                .expect("kill");
            broker_kills += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
            restarting = Some(tokio::task::spawn_blocking(move || {
                kafka_script(&["start", &node])
            }));
        }
        // Events keep arriving: more were sent since the previous round struck.
        let now = sent.load(Ordering::Relaxed);
        assert!(
            now > sent_before && !producing.is_finished(),
            "round {round} strikes while events arrive ({sent_before} then {now} sent)"
        );
        sent_before = now;
        let i = round % 2;
        println!("round {round}: SIGKILL stage member {}", ids[i]);
        restart(&rig, &mut members[i], ids[i], &[]);
    }
    if let Some(r) = restarting.take() {
        r.await.expect("broker restart");
    }
    stop.store(true, Ordering::SeqCst);
    let input = producing.await.expect("producer task");
    assert!(input.len() >= 100_000, "{} events", input.len());
    println!("events produced: {}", input.len());
    rig.caught_up(Duration::from_secs(240)).await;
    let mut after = 0;
    for m in members {
        let f = figures(&interrupt(m));
        println!(
            "member after the kills (records, dead, aborted, dropped, replaced, undecided): {f:?}"
        );
        after += f.0;
    }
    assert!(
        after > 0,
        "the restarted members processed the rest of the stream"
    );
    let aborted: usize = ids
        .iter()
        .map(|id| {
            std::fs::read_to_string(rig.logs.join(format!("{id}.log")))
                .unwrap_or_default()
                .matches("transaction aborted")
                .count()
        })
        .sum();
    println!(
        "broker kills {broker_kills}, stage SIGKILLs 5, transactions aborted (logged) {aborted}"
    );
    rig.assert_exactly_once(&input).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "pauses a member past its session; slow"]
async fn a_member_paused_past_its_session_commits_nothing_when_resumed() {
    let rig = Rig::new("stage-zombie").await;
    // Short session and transaction timeout: the pause outlives both.
    let tuning = [
        "--session-timeout-ms",
        "6000",
        "--transaction-timeout-ms",
        "12000",
    ];
    let zombie = rig.stage("zombie", &tuning);
    let other = rig.stage("other", &tuning);
    rig.env
        .wait_for_group(&rig.group, 2, Duration::from_secs(60))
        .await;
    let producing = rig.produce(6_000, 100);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = zombie.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    println!("paused {pid} for 18 s");
    tokio::time::sleep(Duration::from_secs(18)).await;
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let input = producing.await.expect("producer task");
    rig.caught_up(Duration::from_secs(120)).await;
    let zombie_out = interrupt(zombie);
    let other_out = interrupt(other);
    let (z, o) = (figures(&zombie_out), figures(&other_out));
    println!("zombie (records, dead, aborted, dropped, replaced, undecided) {z:?}; other {o:?}");
    // The pause really outlived the session: the group took the zombie's partitions.
    let log = std::fs::read_to_string(rig.logs.join("zombie.log")).expect("zombie log");
    assert!(
        log.contains("lost=true"),
        "the zombie's partitions were taken while it was paused: {log}"
    );
    // The members' own counts: every record in one committed transaction, except those of a
    // transaction whose commit the pause left undecided (the broker may have committed it; the
    // output topic, checked below, is what decides).
    let (counted, undecided) = (z.0 + o.0, z.5 + o.5);
    let n = input.len() as u64;
    assert!(
        counted <= n && n <= counted + undecided,
        "records counted as committed {counted}, undecided {undecided}, of {n}"
    );
    rig.assert_exactly_once(&input).await;
}
