//! Scenario 12, the whole cluster crashes: SIGKILL all three nodes at once during a keyed
//! produce (the KRaft quorum goes with them), then start them again. Writes in flight fail or
//! end in doubt, none is acknowledged while the cluster is down, and nothing acknowledged
//! before the crash is lost. Promise: 0 acked lost, 0 misplaced, 0 duplicates, 0 reorderings;
//! acks resume after the restart.

use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{BackgroundProducer, NodesGuard, Pace, wait_until};
use super::{finish, order_producer, producer_support, read_topic, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s12_all_brokers_sigkill() {
    let started = Instant::now();
    let (env, t) = setup("rel-s12").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 500,
            pause: Duration::from_millis(200),
            min_events: 20_000,
        },
    );
    let nodes = NodesGuard::default();
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes.kill_all(&[1, 2, 3]).await;
    let crashed = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarting = Instant::now();
    nodes.start_all().await;
    let restarted = crashed.elapsed();
    wait_until(
        "an ack on every partition after the restart",
        Duration::from_secs(120),
        || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > restarting)),
    )
    .await;
    let recovered = crashed.elapsed();
    let log = bg.finish().await;
    // Acks already on their way back may land just after the kill; from a second after it
    // until the restart began, the cluster could acknowledge nothing.
    let down = (crashed + Duration::from_secs(1))..restarting;
    let acked_while_down = log.acked_at.iter().filter(|at| down.contains(at)).count();
    let consumed = read_topic(&env, &topic).await;
    let f = check(
        "12 all brokers SIGKILL",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: Some(recovered),
        },
    )
    .with("acked_while_down", acked_while_down)
    .with("restart_ms", restarted.as_millis() as u64)
    .with(
        "recover",
        "crash to an ack on every partition after the restart",
    )
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    assert_eq!(
        acked_while_down, 0,
        "nothing acknowledged while every broker is down"
    );
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
}
