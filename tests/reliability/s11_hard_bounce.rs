//! Scenario 11, hard bounces: SIGKILL the leader of partition 0 and start it again at once, ten
//! times, never waiting for it to rejoin the ISRs (it comes back as a follower still catching
//! up, and may lead again before it has). Keyed produce runs throughout. Promise: 0 acked lost,
//! 0 misplaced, 0 duplicates, 0 reorderings; then every ISR full again.

use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{BackgroundProducer, NodesGuard, Pace, leaders, wait_isr_full, wait_until};
use super::{finish, order_producer, producer_support, read_topic, setup};

const BOUNCES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s11_hard_bounce_x10() {
    let started = Instant::now();
    let (env, t) = setup("rel-s11").await;
    let topic = t.names.orders.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 500,
            pause: Duration::from_millis(200),
            min_events: 30_000,
        },
    );
    let nodes = NodesGuard::default();
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    let mut victims = Vec::new();
    let mut bounce_ms = Vec::new();
    for _ in 0..BOUNCES {
        // whoever leads partition 0 now; if nobody does, the last victim again
        let leader = leaders(&env, &topic).await.get(&0).copied().unwrap_or(-1);
        let victim = if leader > 0 {
            leader
        } else {
            victims.last().copied().unwrap_or(1)
        };
        let t0 = Instant::now();
        nodes.kill(victim).await;
        nodes.start_registered(victim).await;
        bounce_ms.push(t0.elapsed().as_millis() as u64);
        victims.push(victim);
    }
    let last_bounce = Instant::now();
    wait_until(
        "an ack on every partition after the last bounce",
        Duration::from_secs(90),
        || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > last_bounce)),
    )
    .await;
    let t_isr = Instant::now();
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    let isr_full = t_isr.elapsed();
    let log = bg.finish().await;
    let consumed = read_topic(&env, &topic).await;
    let f = check(
        "11 hard bounce x10",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: Some(isr_full),
        },
    )
    .with("bounces", victims.len())
    .with("victims", victims.clone())
    .with("kill_to_registered_ms", bounce_ms)
    .with("recover", "last bounce to every ISR full")
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    assert_eq!(victims.len(), BOUNCES);
    assert!(f.acked >= 30_000, "at least 30k acked events: {f:?}");
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
}
