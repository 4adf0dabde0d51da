//! Scenario 17, the network between the clients and the brokers degrades and breaks: a keyed
//! producer and a group member reach the cluster only through Toxiproxy, a real TCP proxy
//! (scripts/toxiproxy.sh; each broker advertises the proxy's port on its PROXIED listener, so
//! every client connection crosses it; replication and the quorum do not). While both run, in
//! steps of `STEP`: latency with jitter on every broker; connections reset by the peer;
//! bandwidth throttled; the leader of most orders partitions cut off as a blackhole (bytes
//! vanish, connections stay open, the broker itself stays healthy); that broker's replies alone
//! blackholed (it writes what it is sent, the acks never arrive, the producer retries); that
//! broker's connections refused and closed slowly. Then the network heals.
//! Promise: 0 acked lost, 0 misplaced, 0 duplicates in the topic, 0 reorderings, 0 unexplained
//! gaps; acks go on (slower) under added latency and resume on every partition
//! after the heal; the member consumes every acked event and commits to the end offsets, and
//! redelivers only when its assignment was lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::checker::{Observed, check};
use super::support::{
    BackgroundProducer, Pace, Recorder, consumer_config, leaders, pipeline_topics, spawn_member,
    wait_committed_to_end, wait_consumed_all, wait_until,
};
use super::toxiproxy::Proxies;
use super::{finish, order_producer, producer_support, read_topic, setup};

/// How long each fault lasts.
const STEP: Duration = Duration::from_secs(10);
/// The blackhole lasts longer than the member's session (10 s) and the producer's request
/// timeout (10 s), below its delivery timeout (30 s).
const CUT: Duration = Duration::from_secs(15);
/// Replies lost for longer than the producer's request timeout (10 s): requests are retried.
const ONE_WAY: Duration = Duration::from_secs(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster and Toxiproxy; run scripts/reliability.sh"]
async fn s17_network_faults() {
    let started = Instant::now();
    let (env, t) = setup("rel-s17").await;
    let topic = t.names.orders.clone();
    let proxies = Proxies::create("rel-s17");
    let via_proxy = proxies.bootstrap();

    let mut pcfg = producer_support::config(&env);
    pcfg.bootstrap_servers = via_proxy.clone();
    let p = order_producer(&env, &t, pcfg).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 100,
            pause: Duration::from_millis(100),
            min_events: 5_000,
        },
    );
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 0));
    let group = env.group_id("rel-s17");
    let (cancel, member) = spawn_member(
        consumer_config(&via_proxy, &group, pipeline_topics(&t)),
        Arc::clone(&rec),
    );
    wait_until(
        "the producer's first ack on every partition, through the proxy",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    wait_until(
        "the member's first records, through the proxy",
        Duration::from_secs(60),
        || rec.distinct() > 0,
    )
    .await;

    // Each phase: (name, start, end), for the acks counted in it.
    let mut phases: Vec<(&str, Instant, Instant)> = Vec::new();
    let mut phase = |name: &'static str, from: Instant| phases.push((name, from, Instant::now()));

    let t0 = Instant::now();
    proxies.add_all(
        "latency",
        "latency",
        1.0,
        &json!({ "latency": 150, "jitter": 100 }),
    );
    tokio::time::sleep(STEP).await;
    proxies.heal();
    phase("latency 150±100 ms each way", t0);

    let t0 = Instant::now();
    proxies.add_all("reset", "reset_peer", 0.5, &json!({ "timeout": 1_000 }));
    tokio::time::sleep(STEP).await;
    proxies.heal();
    phase("half the connections reset after 1 s", t0);

    let t0 = Instant::now();
    proxies.add_all("bandwidth", "bandwidth", 1.0, &json!({ "rate": 64 }));
    tokio::time::sleep(STEP).await;
    proxies.heal();
    phase("bandwidth 64 KB/s", t0);

    // The broker leading most orders partitions: its partitions cannot be written while it is
    // cut off from the clients, yet the cluster still sees it alive (no leader moves).
    let led = leaders(&env, &topic).await;
    let victim = (1..=3)
        .max_by_key(|n| led.values().filter(|l| *l == n).count())
        .unwrap();
    let t0 = Instant::now();
    proxies.add(victim, "blackhole", "timeout", 1.0, json!({ "timeout": 0 }));
    tokio::time::sleep(CUT).await;
    proxies.heal();
    phase("leader blackholed", t0);

    // One way only: the leader's replies vanish while its requests still arrive, so it writes
    // batches whose acks never come back; the producer times the requests out and sends them
    // again. Only idempotence keeps those retries from becoming duplicates.
    let t0 = Instant::now();
    proxies.add_to_replies(victim, "replies-lost", "timeout", json!({ "timeout": 0 }));
    tokio::time::sleep(ONE_WAY).await;
    proxies.heal();
    phase("leader's replies blackholed", t0);

    let t0 = Instant::now();
    proxies.add(
        victim,
        "slow-close",
        "slow_close",
        1.0,
        json!({ "delay": 3_000 }),
    );
    proxies.set_enabled(victim, false);
    tokio::time::sleep(STEP / 2).await;
    proxies.set_enabled(victim, true);
    tokio::time::sleep(STEP / 2).await;
    proxies.heal();
    phase("leader refused, closes delayed 3 s", t0);

    let healed = Instant::now();
    wait_until(
        "an ack on every partition after the network healed",
        Duration::from_secs(120),
        || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > healed)),
    )
    .await;
    let recovered = healed.elapsed();
    let log = bg.finish().await;
    let caught_up = wait_consumed_all(&rec, &log.acked, Duration::from_secs(120)).await;
    wait_committed_to_end(
        &env,
        &group,
        &topic,
        Duration::from_secs(60),
        "the member did not commit to the end after the heal",
    )
    .await;
    cancel.cancel();
    let summary = member.await.expect("member task");
    drop(proxies);

    let acks_in = |from: Instant, to: Instant| {
        log.acked_at
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count()
    };
    let per_phase: Vec<serde_json::Value> = phases
        .iter()
        .map(|(name, from, to)| {
            json!({
                "phase": name,
                "s": (*to - *from).as_secs_f64(),
                "acks": acks_in(*from, *to),
            })
        })
        .collect();
    // Under latency alone every request still completes, only later. Resets and throttling can
    // stall the producer's batch loop behind one request until its 10 s timeout, so their acks
    // are reported, not required.
    let acks_under_latency = acks_in(phases[0].1, phases[0].2);
    let consumed = rec.consumed();
    let redelivered = consumed.len() - rec.distinct();
    let in_topic = read_topic(&env, &topic).await;
    // The member's own view: what it was given, in the order its handler finished.
    let seen = check(
        "17 network faults, the member's view",
        &Observed {
            acked: log.acked.clone(),
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: None,
        },
    );
    let f = check(
        "17 network faults (Toxiproxy)",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed: in_topic,
            effects: None,
            recover: Some(recovered),
        },
    )
    .with("blackholed_node", victim)
    .with("phases", per_phase)
    .with("member_caught_up_ms", caught_up.as_millis() as u64)
    .with("member_redelivered", redelivered)
    .with("member_lost", seen.lost)
    .with("member_reorderings", seen.reorderings)
    .with("rebalances", summary.rebalances)
    .with("partitions_lost", summary.partitions_lost)
    .with("commit_failures", summary.commit_failures)
    .with(
        "recover",
        "heal to an ack on every partition (member_caught_up_ms: then to the member holding every ack)",
    )
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
    assert_eq!(
        (seen.lost, seen.reorderings),
        (0, 0),
        "the member was given every acked event, each key in order: {seen:?}"
    );
    assert!(
        acks_under_latency > 0,
        "acks must go on under added latency: {acks_under_latency}"
    );
    if summary.partitions_lost == 0 {
        assert_eq!(
            redelivered, 0,
            "redelivered without a lost assignment: {summary:?}"
        );
    }
    assert!(
        summary.stopped_cleanly(),
        "the member stopped cleanly: {summary:?}"
    );
}
