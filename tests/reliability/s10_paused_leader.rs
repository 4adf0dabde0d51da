//! Scenario 10, a paused ("zombie") leader: SIGSTOP the leader of a partition during a keyed
//! produce for longer than its broker session, so the controller fences it and moves
//! leadership away, then SIGCONT it. The zombie wakes up believing it still leads: whatever it
//! holds that the new leader does not must be truncated, never served. Promise: 0 acked lost,
//! 0 misplaced, 0 duplicates (idempotent producer), 0 reorderings, and the resumed node back
//! in every ISR.

use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{BackgroundProducer, NodesGuard, Pace, leaders, wait_isr_full, wait_until};
use super::{finish, order_producer, producer_support, read_topic, setup};

/// Longer than the brokers' session timeout (KRaft `broker.session.timeout.ms`, 9 s), so the
/// controller fences the paused broker rather than waiting for it.
const PAUSE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s10_paused_leader_zombie() {
    let started = Instant::now();
    let (env, t) = setup("rel-s10").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 500,
            pause: Duration::from_millis(250),
            min_events: 40_000,
        },
    );
    let nodes = NodesGuard::default();
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    let partition = 0;
    let zombie = leaders(&env, &topic).await[&partition];
    assert!(zombie > 0, "partition {partition} has no leader");
    nodes.pause(zombie).await;
    let t0 = Instant::now();
    let (new_leader, moved) = super::support::wait_leader_moved(
        &env,
        &topic,
        partition,
        zombie,
        PAUSE + Duration::from_secs(40),
    )
    .await;
    wait_until(
        "an ack on the paused leader's partition from its new leader",
        Duration::from_secs(90),
        || bg.last_ack_on(partition).is_some_and(|at| at > moved),
    )
    .await;
    let recovered = t0.elapsed();
    if let Some(rest) = PAUSE.checked_sub(t0.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    nodes.resume(zombie).await;
    let resumed = Instant::now();
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    let rejoined = resumed.elapsed();
    println!(
        "node {zombie} paused {:?}; node {new_leader} led partition {partition} after {:?}, acked again after {recovered:?}; after SIGCONT every ISR full again in {rejoined:?}",
        PAUSE,
        moved - t0
    );
    let log = bg.finish().await;
    let consumed = read_topic(&env, &topic).await;
    let f = check(
        "10 paused leader (zombie)",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: Some(recovered),
        },
    )
    .with("paused_node", zombie)
    .with("pause_ms", PAUSE.as_millis() as u64)
    .with("failover_ms", (moved - t0).as_millis() as u64)
    .with("isr_full_after_resume_ms", rejoined.as_millis() as u64)
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    assert!(
        f.acked >= 40_000,
        "at least 40k acked events expected: {f:?}"
    );
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
}
