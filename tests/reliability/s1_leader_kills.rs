//! Scenario 1, leader hard kill ×5 during a keyed produce of ≥ 100k events.

use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{self, BackgroundProducer, NodesGuard, Pace, leaders, wait_until};
use super::{finish, order_producer, producer_support, read_topic, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s1_leader_hard_kill_x5() {
    let started = Instant::now();
    let (env, t) = setup("rel-s1").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            // ~1.4k events/s while the kills run (five kill/recover/restart cycles take about
            // two minutes), then unpaced up to 100k: sized for 2 cores.
            keys: 2_000,
            chunk: 500,
            pause: Duration::from_millis(350),
            min_events: 100_000,
        },
    );
    let nodes = NodesGuard::default();
    let mut recover = Vec::new();
    let mut killed = Vec::new();
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    for i in 0..5 {
        let partition = i % 6;
        let leader = leaders(&env, &topic).await[&partition];
        assert!(leader > 0, "partition {partition} has no leader");
        nodes.kill(leader).await;
        // The victim is dead once `kill` returns: recovery is timed from here, and only an ack
        // observed after its partition moved to another leader counts (a late delivery report
        // of a request the victim acked before it died does not).
        let t0 = Instant::now();
        killed.push(leader);
        let (new_leader, moved) =
            support::wait_leader_moved(&env, &topic, partition, leader, Duration::from_secs(60))
                .await;
        wait_until(
            "an ack on the killed leader's partition from its new leader",
            Duration::from_secs(90),
            || bg.last_ack_on(partition).is_some_and(|at| at > moved),
        )
        .await;
        recover.push(t0.elapsed());
        nodes.start(leader).await;
        println!(
            "kill {}: node {leader} (leader of partition {partition}), node {new_leader} leads after {:?}, partition acked again after {:?}",
            i + 1,
            moved - t0,
            recover[i as usize]
        );
    }
    let log = bg.finish().await;
    let consumed = read_topic(&env, &topic).await;
    let max_recover = recover.iter().max().copied();
    let f = check(
        "1 leader hard kill x5",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: max_recover,
        },
    )
    .with("kills", 5)
    .with("killed_nodes", format!("{killed:?}"))
    .with("failed", serde_json::to_value(&log.errors).unwrap())
    .with(
        "recover_ms_each",
        recover
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect::<Vec<_>>(),
    );
    let f = finish(f, started);
    assert!(
        f.acked >= 100_000,
        "at least 100k acked events expected: {f:?}"
    );
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
}
