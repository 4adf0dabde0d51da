//! Scenario 13, the active controller dies: SIGKILL the node leading the KRaft metadata quorum
//! during a keyed produce. The two remaining controllers elect a new leader, which must then
//! serve metadata changes (a topic is created while the old one is down), and the produce goes
//! on. Promise: 0 acked lost, 0 misplaced, 0 duplicates, 0 reorderings; a new controller within
//! 30 s; the killed node rejoins every ISR after its restart.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::checker::{Observed, check};
use super::support::{
    BackgroundProducer, NodesGuard, Pace, quorum_leader, wait_isr_full, wait_until,
};
use super::{finish, order_producer, producer_support, read_topic, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s13_active_controller_sigkill() {
    let started = Instant::now();
    let (env, t) = setup("rel-s13").await;
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
    let old = quorum_leader(&env)
        .await
        .expect("the metadata quorum has a leader");
    nodes.kill(old).await;
    let killed = Instant::now();
    // A new leader among the two survivors.
    let new = loop {
        if let Some(id) = quorum_leader(&env).await.filter(|id| *id != old) {
            break id;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new controller 30 s after node {old} was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failover = killed.elapsed();
    // Metadata changes need the controller: a topic created now is created by the new one.
    // Replication factor 2, which the two live brokers can hold whether or not the dead one is
    // fenced yet.
    let created_topic = format!("{topic}-during-controller-loss");
    env.track(&created_topic);
    let t0 = Instant::now();
    // Through a client of its own each time: the shared admin client may still hold the dead
    // node as the controller and wait out its whole request timeout there. An attempt that
    // timed out may have created the topic: then the next one finds it.
    for attempt in 0.. {
        let answer = env
            .fresh_admin()
            .create_topics(
                &[NewTopic::new(&created_topic, 3, TopicReplication::Fixed(2))],
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(30)))
                    .request_timeout(Some(Duration::from_secs(15))),
            )
            .await;
        let outcome = match &answer {
            Ok(results) => match results.as_slice() {
                [Ok(_)] => break,
                [Err((_, RDKafkaErrorCode::TopicAlreadyExists))] if attempt > 0 => break,
                _ => format!("{results:?}"),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "create topic with the old controller down: {outcome}"
        );
        eprintln!("create topic with the old controller down: {outcome}; asking again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let create_ms = t0.elapsed().as_millis() as u64;
    wait_until(
        "an ack on every partition after the controller died",
        Duration::from_secs(120),
        || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > killed)),
    )
    .await;
    let acks_resumed = killed.elapsed();
    nodes.start(old).await;
    wait_isr_full(&env, &topic, Duration::from_secs(120)).await;
    let rejoined = killed.elapsed();
    let log = bg.finish().await;
    let consumed = read_topic(&env, &topic).await;
    let f = check(
        "13 active controller SIGKILL",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: Some(acks_resumed),
        },
    )
    .with("killed_controller", old)
    .with("new_controller", new)
    .with("controller_failover_ms", failover.as_millis() as u64)
    .with("topic_created_during_loss_ms", create_ms)
    .with("isr_full_after_restart_ms", rejoined.as_millis() as u64)
    .with(
        "recover",
        "kill of the active controller to an ack on every partition",
    )
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    f.assert_promise();
    assert_eq!(
        f.dup_raw, 0,
        "idempotent producer: no duplicates in the topic"
    );
}
