//! Scenario 6, rebalance storm: members join and leave every few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::checker::{Observed, check};
use super::support::{
    self, BackgroundProducer, Pace, Recorder, consumer_config, pipeline_topics, spawn_member,
    wait_consumed_all,
};
use super::{finish, order_producer, producer_support, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s6_rebalance_storm() {
    let started = Instant::now();
    let mut rng = support::rng("s6");
    let (env, t) = setup("rel-s6").await;
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 2));
    let group = env.group_id("rel-s6");
    let topics = pipeline_topics(&t);
    let cfg = consumer_config(&env.bootstrap, &group, topics.clone());
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 600,
            chunk: 200,
            pause: Duration::from_millis(100),
            min_events: 0,
        },
    );
    let mut members = vec![spawn_member(cfg.clone(), Arc::clone(&rec))];
    let mut summaries = Vec::new();
    let mut committed_samples: Vec<BTreeMap<i32, i64>> = Vec::new();
    let mut changes = 0;
    for step in 0..10 {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            committed_samples.push(env.committed_offsets(&group, &topics.source).await);
        }
        let join = members.len() == 1 || (members.len() < 3 && step % 3 != 2);
        if join {
            members.push(spawn_member(cfg.clone(), Arc::clone(&rec)));
        } else {
            let i = rng.random_range(0..members.len());
            let (c, jh) = members.remove(i);
            c.cancel();
            summaries.push(jh.await.unwrap());
        }
        changes += 1;
    }
    let log = bg.finish().await;
    let catch_up = wait_consumed_all(&rec, &log.acked, Duration::from_secs(120)).await;
    for (c, jh) in members {
        c.cancel();
        summaries.push(jh.await.unwrap());
    }
    committed_samples.push(env.committed_offsets(&group, &topics.source).await);
    let mut regressed = 0;
    for w in committed_samples.windows(2) {
        for (p, c) in &w[1] {
            if w[0].get(p).is_some_and(|prev| c < prev) {
                regressed += 1;
            }
        }
    }
    let ends = env.end_offsets(&topics.source);
    let mut processed: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for e in rec.consumed() {
        processed.entry(e.partition).or_default().insert(e.offset);
    }
    let skipped: usize = ends
        .iter()
        .map(|(p, end)| {
            (0..*end)
                .filter(|o| !processed.get(p).is_some_and(|s| s.contains(o)))
                .count()
        })
        .sum();
    let revoke_failed: u64 = summaries.iter().map(|s| s.revoke_commits_failed).sum();
    let revoke_ok: u64 = summaries.iter().map(|s| s.revoke_commits_ok).sum();
    let rebalances: u64 = summaries.iter().map(|s| s.rebalances).sum();
    let f = check(
        "6 rebalance storm",
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
    .with("membership_changes", changes)
    .with("rebalances", rebalances)
    .with("skipped_offsets", skipped)
    .with("regressed_commits", regressed)
    .with("revoke_commits_ok", revoke_ok)
    .with("revoke_commits_failed", revoke_failed)
    .with("recover", "catch-up after the storm");
    let f = finish(f, started);
    assert_eq!(skipped, 0, "skipped offsets: {f:?}");
    assert_eq!(regressed, 0, "regressed committed offsets: {f:?}");
    assert_eq!(revoke_failed, 0, "failed revoke commits: {f:?}");
    f.assert_promise();
}
