//! Scenario 18, the network between the brokers degrades and splits. Every link from one
//! broker to another (replication fetches and the brokers' other calls to each other) crosses
//! Toxiproxy on a port of its own (`scripts/kafka.sh replication proxied` restarts the nodes
//! that way; the controller quorum and the clients stay direct). A keyed idempotent producer
//! (acks=all) writes throughout. Steps: latency with jitter on every link; half the links'
//! connections reset; then the broker leading most orders partitions is cut off from the other
//! two (every link from and to it blackholed) until the ISRs show it: it stays alive for the
//! controller and keeps leading, its own partitions' ISRs shrink to itself, below min ISR 2,
//! and the other leaders drop it from theirs. Then the links heal and the cluster is switched
//! back to direct replication.
//! Promise: 0 acked lost, 0 misplaced, 0 duplicates, 0 reorderings, 0 unexplained gaps; acks
//! go on under latency; the cut leader acknowledges nothing while cut off (a retry-less probe
//! hears NOT_ENOUGH_REPLICAS from each of its partitions) while the other leaders, still at
//! min ISR, acknowledge the probe; after the heal every ISR is full again and acks resume on
//! every partition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orderstream_producer::ProducerConfig;
use orderstream_testkit::TestEnv;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::checker::{Observed, check};
use super::support::{
    BackgroundProducer, Pace, isr_sizes, leaders, probe_min_isr, wait_isr_full, wait_until,
};
use super::toxiproxy::Links;
use super::{finish, order_producer, producer_support, read_topic, setup};

/// How long latency and resets last.
const STEP: Duration = Duration::from_secs(10);
/// Longest wait for the cut to show in the ISRs: a leader drops a follower that has not
/// fetched for `replica.lag.time.max.ms` (30 s), checked every half of that.
const SHRINK_WITHIN: Duration = Duration::from_secs(90);
/// Acks already on their way when the cut begins may still arrive this long after it.
const IN_FLIGHT: Duration = Duration::from_secs(1);

/// True when every partition led by `cut` has only `cut` in its ISR and every other
/// partition has dropped it (ISR 2).
fn cut_shows(led: &BTreeMap<i32, i32>, isr: &BTreeMap<i32, usize>, cut: i32) -> bool {
    !isr.is_empty()
        && isr.iter().all(|(p, n)| {
            let want = if led.get(p) == Some(&cut) { 1 } else { 2 };
            *n == want
        })
}

/// Keeps `topic`'s logs moving: one raw record per partition every 200 ms with acks=1, so no
/// write waits on a follower. A partition nobody writes to keeps a silent follower in its ISR
/// (its log ends where the leader's does), so without these writes the retry topic's ISRs
/// would never show the cut. Returns the number of records handed to librdkafka.
fn keep_writing(
    env: &TestEnv,
    topic: &str,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<usize> {
    let producer: FutureProducer = env
        .client_config()
        .set("enable.idempotence", "false")
        .set("acks", "1")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap_or_else(|e| panic!("retry-topic writer: {e}"));
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let mut sent = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while !cancel.is_cancelled() {
            tick.tick().await;
            for partition in 0..6 {
                let record = FutureRecord::to(&topic)
                    .partition(partition)
                    .key("keep-writing")
                    .payload("keep-writing");
                // Only the append matters, not its delivery report.
                if producer.send_result(record).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster and Toxiproxy; run scripts/reliability.sh"]
async fn s18_broker_links() {
    let started = Instant::now();
    let (env, t) = setup("rel-s18").await;
    let topic = t.names.orders.clone();
    let mut links = Links::create("rel-s18");
    let t_switch = Instant::now();
    links.switch_cluster().await;
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    wait_isr_full(&env, &t.names.retry, Duration::from_secs(120)).await;
    let switched_s = t_switch.elapsed().as_secs_f64();

    // Short timeouts: a batch stuck behind the cut leader's partitions holds the producer's
    // loop for one delivery timeout at most.
    let cfg = ProducerConfig {
        delivery_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(5),
        ..producer_support::config(&env)
    };
    let p = order_producer(&env, &t, cfg).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 100,
            pause: Duration::from_millis(100),
            min_events: 5_000,
        },
    );
    wait_until(
        "the producer's first ack on every partition, replicating through the links",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;

    let mut phases: Vec<(&str, Instant, Instant)> = Vec::new();
    let t0 = Instant::now();
    links.add_all(
        "latency",
        "latency",
        1.0,
        &json!({ "latency": 100, "jitter": 50 }),
    );
    tokio::time::sleep(STEP).await;
    links.heal();
    phases.push((
        "latency 100±50 ms each way on every link",
        t0,
        Instant::now(),
    ));

    let t0 = Instant::now();
    links.add_all("reset", "reset_peer", 0.5, &json!({ "timeout": 1_000 }));
    tokio::time::sleep(STEP).await;
    links.heal();
    phases.push((
        "half the links' connections reset after 1 s",
        t0,
        Instant::now(),
    ));

    // The broker leading most orders partitions, among those leading a retry partition too
    // (the probe writes there, so the orders topic holds only the scenario's events).
    let led = leaders(&env, &topic).await;
    let led_retry = leaders(&env, &t.names.retry).await;
    let cut = (1..=3)
        .filter(|n| led_retry.values().any(|l| l == n))
        .max_by_key(|n| led.values().filter(|l| *l == n).count())
        .expect("some broker leads a retry partition");
    let cut_orders: Vec<i32> = led
        .iter()
        .filter(|(_, l)| **l == cut)
        .map(|(p, _)| *p)
        .collect();
    let cut_retry: Vec<i32> = led_retry
        .iter()
        .filter(|(_, l)| **l == cut)
        .map(|(p, _)| *p)
        .collect();
    let others_retry: Vec<i32> = led_retry
        .iter()
        .filter(|(_, l)| **l != cut)
        .map(|(p, _)| *p)
        .collect();

    let writing = CancellationToken::new();
    let writer = keep_writing(&env, &t.names.retry, writing.clone());
    let cut_at = Instant::now();
    links.isolate(cut, "cut", "timeout", &json!({ "timeout": 0 }));
    let shrink_deadline = cut_at + SHRINK_WITHIN;
    loop {
        let (isr, isr_retry) = (
            isr_sizes(&env, &topic).await,
            isr_sizes(&env, &t.names.retry).await,
        );
        if cut_shows(&led, &isr, cut) && cut_shows(&led_retry, &isr_retry, cut) {
            break;
        }
        assert!(
            Instant::now() < shrink_deadline,
            "the cut never showed in the ISRs within {SHRINK_WITHIN:?}: orders {isr:?} (leaders \
             {led:?}), retry {isr_retry:?} (leaders {led_retry:?}), node {cut} cut off"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shrunk_after = cut_at.elapsed();
    let probe_cut = probe_min_isr(&env, &t.names.retry, &cut_retry).await;
    let probe_others = probe_min_isr(&env, &t.names.retry, &others_retry).await;
    // Long enough for the producer's loop to come around with new batches while the cut shows.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let led_during = leaders(&env, &topic).await;
    links.heal();
    let healed = Instant::now();
    writing.cancel();
    let kept_writing = writer.await.expect("retry-topic writer");
    phases.push(("leader cut off from the other brokers", cut_at, healed));

    wait_until(
        "an ack on every partition after the links healed",
        Duration::from_secs(120),
        || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > healed)),
    )
    .await;
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    let recovered = healed.elapsed();
    let log = bg.finish().await;
    let t_restore = Instant::now();
    links.restore_cluster().await;
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    wait_isr_full(&env, &t.names.retry, Duration::from_secs(120)).await;
    let restored_s = t_restore.elapsed().as_secs_f64();
    drop(links);

    let acks_in = |from: Instant, to: Instant| {
        log.acked_at
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count()
    };
    let per_phase: Vec<serde_json::Value> = phases
        .iter()
        .map(|(name, from, to)| {
            json!({ "phase": name, "s": (*to - *from).as_secs_f64(), "acks": acks_in(*from, *to) })
        })
        .collect();
    let acks_under_latency = acks_in(phases[0].1, phases[0].2);
    // Acknowledged by the cut leader while no follower could reach it.
    let acked_by_cut_leader = log
        .acked
        .iter()
        .zip(&log.acked_at)
        .filter(|(ev, at)| {
            cut_orders.contains(&ev.partition) && **at >= cut_at + IN_FLIGHT && **at < healed
        })
        .count();
    let leader_moved = cut_orders
        .iter()
        .filter(|p| led_during.get(p) != Some(&cut))
        .count();
    let in_topic = read_topic(&env, &topic).await;
    let f = check(
        "18 broker links: latency, resets, a leader cut off",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed: in_topic,
            effects: None,
            recover: Some(recovered),
        },
    )
    .with("cut_node", cut)
    .with("cut_orders_partitions", cut_orders.clone())
    .with("isr_shrunk_after_ms", shrunk_after.as_millis() as u64)
    .with("acked_by_cut_leader_while_cut", acked_by_cut_leader)
    .with("cut_leader_partitions_moved", leader_moved)
    .with(
        "probe_cut_not_enough_replicas",
        probe_cut.not_enough_replicas,
    )
    .with("probe_cut_of", cut_retry.len())
    .with("probe_cut_acked", probe_cut.acked)
    .with("probe_others_acked", probe_others.acked)
    .with("probe_others_of", others_retry.len())
    .with("retry_topic_records_written", kept_writing)
    .with("phases", per_phase)
    .with("switch_to_proxied_s", switched_s)
    .with("switch_back_s", restored_s)
    .with(
        "recover",
        "heal to every ISR full and an ack on every partition",
    )
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
    assert!(
        acks_under_latency > 0,
        "acks must go on under added latency between the brokers: {acks_under_latency}"
    );
    assert_eq!(
        (probe_cut.acked, probe_cut.not_enough_replicas),
        (0, cut_retry.len()),
        "the cut leader must refuse writes below min ISR: {probe_cut:?}"
    );
    assert_eq!(
        probe_others.acked,
        others_retry.len(),
        "leaders still at min ISR must acknowledge: {probe_others:?}"
    );
    assert_eq!(
        acked_by_cut_leader, 0,
        "the cut leader's partitions {cut_orders:?} acknowledged records while it was cut off"
    );
}
