//! Scenario 14, the group coordinator dies during commits: a member drains a 30 000-event
//! backlog, committing every 200 ms, and the broker coordinating its group is SIGKILLed a fifth
//! of the way in. Commits sent to the dead coordinator fail or go unanswered; the member must
//! find the new one and commit again. Promise: 0 lost, 0 reorderings; every partition's
//! committed offset reaches its end offset while the old coordinator is still down; the member
//! stops cleanly; records come back (`dup raw`) only when the member's assignment was lost,
//! which librdkafka decides once the session runs out without a coordinator: then what was
//! processed since the last commit that landed is processed again (at least once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{
    NodesGuard, ProduceLog, Recorder, consumer_config, group_coordinator, pipeline_topics,
    spawn_member, wait_committed_to_end, wait_consumed_all, wait_isr_full,
};
use super::{finish, order_producer, producer_support, setup};

const EVENTS: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s14_group_coordinator_sigkill() {
    let started = Instant::now();
    let (env, t) = setup("rel-s14").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let events: Vec<_> = (0..EVENTS)
        .map(|n| producer_support::event(n % 1_000, (n / 1_000) as i64))
        .collect();
    let mut log = ProduceLog::default();
    for chunk in events.chunks(5_000) {
        let t0 = Instant::now();
        let outcomes = p.send_batch(chunk).await;
        log.record(chunk, outcomes, t0);
    }
    assert_eq!(log.acked.len(), EVENTS, "backlog acked: {:?}", log.errors);
    // Up to 100 ms per record: the drain takes ~15 s, so the kill lands mid-drain.
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 100));
    let group = env.group_id("rel-s14");
    let (cancel, member) = spawn_member(
        consumer_config(&env.bootstrap, &group, pipeline_topics(&t)),
        Arc::clone(&rec),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.distinct() < EVENTS / 5 {
        assert!(Instant::now() < deadline, "the member does not consume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let coordinator = group_coordinator(&env, &group)
        .await
        .expect("the group has a coordinator");
    let nodes = NodesGuard::default();
    nodes.kill(coordinator).await;
    let killed = Instant::now();
    let consumed_at_kill = rec.distinct();
    wait_consumed_all(&rec, &log.acked, Duration::from_secs(120)).await;
    // Every partition committed to its end while the old coordinator is still down.
    wait_committed_to_end(
        &env,
        &group,
        &topic,
        Duration::from_secs(60),
        "commits stuck after the coordinator died",
    )
    .await;
    let all_committed = killed.elapsed();
    let new_coordinator = group_coordinator(&env, &group).await;
    cancel.cancel();
    let summary = member.await.expect("member task");
    nodes.start(coordinator).await;
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    let f = check(
        "14 group coordinator SIGKILL",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed: rec.consumed(),
            effects: None,
            recover: Some(all_committed),
        },
    )
    .with("killed_coordinator", coordinator)
    .with("new_coordinator", new_coordinator)
    .with("consumed_at_kill", consumed_at_kill)
    .with("commits", summary.commits)
    .with("commit_failures", summary.commit_failures)
    .with("rebalances", summary.rebalances)
    .with("partitions_lost", summary.partitions_lost)
    .with(
        "recover",
        "kill of the coordinator to every partition committed to its end",
    );
    let f = finish(f, started);
    f.assert_promise();
    assert!(
        new_coordinator.is_some_and(|c| c != coordinator),
        "a live broker coordinates the group: {new_coordinator:?}, killed {coordinator}"
    );
    // Commits cannot land while no broker coordinates the group; once its session runs out
    // without a coordinator, librdkafka treats the assignment as lost and the work done since
    // the last landed commit comes back. Without a lost assignment nothing may come back.
    if summary.partitions_lost == 0 {
        assert_eq!(f.dup_raw, 0, "redelivered without a lost assignment: {f:?}");
    }
    assert!(
        summary.stopped_cleanly(),
        "the member stopped cleanly: {summary:?}"
    );
}
