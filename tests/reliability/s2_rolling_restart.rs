//! Scenario 2, rolling restart of all three brokers while producing and consuming.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::{Observed, check};
use super::support::{
    BackgroundProducer, NodesGuard, Pace, Recorder, consumer_config, pipeline_topics, spawn_member,
    wait_consumed_all,
};
use super::{finish, order_producer, producer_support, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s2_rolling_restart() {
    let started = Instant::now();
    let (env, t) = setup("rel-s2").await;
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 0));
    let group = env.group_id("rel-s2");
    let (cancel, member) = spawn_member(
        consumer_config(&env.bootstrap, &group, pipeline_topics(&t)),
        Arc::clone(&rec),
    );
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 1_000,
            chunk: 250,
            pause: Duration::from_millis(100),
            min_events: 0,
        },
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes = NodesGuard::default();
    let roll_start = Instant::now();
    let mut per_node = Vec::new();
    for n in 1..=3 {
        let t0 = Instant::now();
        nodes.stop(n).await;
        nodes.start(n).await;
        per_node.push(t0.elapsed().as_millis() as u64);
    }
    let roll_end = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = bg.finish().await;
    let catch_up = wait_consumed_all(&rec, &log.acked, Duration::from_secs(120)).await;
    cancel.cancel();
    let summary = member.await.unwrap();
    let p99 = log.latency_quantile(0.99, roll_start, roll_end);
    let p50 = log.latency_quantile(0.50, roll_start, roll_end);
    let f = check(
        "2 rolling restart",
        &Observed {
            acked: log.acked.clone(),
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed: rec.consumed(),
            // the recorder's dedup is the test's, not the product's: not a product figure
            effects: None,
            recover: Some(catch_up),
        },
    )
    .with("p50_ack_ms_during_roll", p50.map(|d| d.as_millis() as u64))
    .with("p99_ack_ms_during_roll", p99.map(|d| d.as_millis() as u64))
    .with("restart_ms_per_node", per_node)
    .with("failed", serde_json::to_value(&log.errors).unwrap())
    .with("consumer_commit_failures", summary.commit_failures)
    .with("recover", "consumer catch-up after the roll");
    let f = finish(f, started);
    f.assert_promise();
}
