//! Scenario 5, consumer SIGKILL ×20 at random points, out-of-order completion.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::{ConsumerConfig, Topics};
use orderstream_schema::{EventType, OrderCodec, RegistryConfig};
use orderstream_store::{OrderStore, StoreConfig, StoreProcessor};
use orderstream_testkit::fresh_database;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::checker::{Ev, Observed, check};
use super::support::{
    self, BackgroundProducer, Pace, consumer_config, pipeline_topics, wait_isr_full,
};
use super::{finish, order_producer, producer_support, setup, spawn_child};

fn s5_config(bootstrap: &str, group: &str, topics: Topics) -> ConsumerConfig {
    ConsumerConfig {
        session_timeout: Duration::from_secs(6),
        revoke_drain_timeout: Duration::from_secs(3),
        shutdown_timeout: Duration::from_secs(5),
        commit_interval: Duration::from_millis(100),
        commit_every: 50,
        max_concurrency: 8,
        // Static membership: a restarted member takes its partitions back at once instead of
        // waiting for the killed one's session to expire.
        extra_consumer: vec![("group.instance.id".into(), "rel-s5-member".into())],
        ..consumer_config(bootstrap, group, topics)
    }
}

/// Child of s5: one group member applying events to the product's durable store (PostgreSQL:
/// inbox + projection, one transaction per batch, offsets committed after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of s5_consumer_sigkill_x20"]
async fn child_consumer() {
    let Ok(spec) = std::env::var("ORDERSTREAM_REL_CONSUMER") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let codec = OrderCodec::new(RegistryConfig {
        url: f[1].to_owned(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let store = OrderStore::connect(&StoreConfig::new(f[6])).await.unwrap();
    let cfg = s5_config(f[0], f[5], Topics::new(f[2], f[3], f[4]));
    // runs until SIGKILLed
    orderstream_consumer::run_batched(
        cfg,
        Arc::new(StoreProcessor::new(codec, store)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
}

/// Offsets below the committed offset that were never processed, per partition.
fn commit_violations(committed: &BTreeMap<i32, i64>, log: &[(Ev, bool)]) -> Vec<String> {
    let mut done: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for (e, _) in log {
        done.entry(e.partition).or_default().insert(e.offset);
    }
    let mut out = Vec::new();
    for (p, c) in committed {
        let d = done.get(p);
        let frontier = (0..).find(|o| !d.is_some_and(|d| d.contains(o))).unwrap();
        if *c > frontier {
            out.push(format!(
                "partition {p}: committed {c} > processed frontier {frontier}"
            ));
        }
    }
    out
}

/// What the store applied from `topic`, as the checker's records: `(Ev, true)` per inbox row,
/// its sequence taken from the event sent with that id (`-1` if none was: a phantom).
async fn applied(store: &OrderStore, topic: &str, sent: &HashMap<&str, i64>) -> Vec<(Ev, bool)> {
    store
        .inbox_records(topic)
        .await
        .unwrap_or_else(|e| panic!("query the inbox: {e}"))
        .into_iter()
        .map(|(event_id, key, partition, offset)| {
            let sequence = sent.get(event_id.as_str()).copied().unwrap_or(-1);
            (
                Ev {
                    event_id,
                    key,
                    sequence,
                    partition,
                    offset,
                },
                true,
            )
        })
        .collect()
}

/// Inbox rows: events the store applied.
async fn inbox_count(store: &OrderStore) -> usize {
    store
        .counts()
        .await
        .map(|c| c.inbox as usize)
        .unwrap_or_else(|e| panic!("count the inbox: {e}"))
}

/// Per-customer (orders, paid) totals the acknowledged events must leave in the store, from the
/// generator's lifecycle (`producer_support::event`): CREATED counts an order, PAID its amount.
fn expected_totals(acked: &[Ev]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in acked {
        let order: usize = e
            .key
            .trim_start_matches("order-")
            .parse()
            .unwrap_or_else(|_| panic!("generator key {}", e.key));
        let sample = producer_support::event(order, e.sequence);
        let slot = out.entry(sample.customer_id).or_default();
        match sample.event_type {
            EventType::Created => slot.0 += 1,
            EventType::Paid => slot.1 += sample.amount_minor,
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster and PostgreSQL; run scripts/reliability.sh"]
async fn s5_consumer_sigkill_x20() {
    let started = Instant::now();
    let (env, t) = setup("rel-s5").await;
    // A broker still catching up after the previous scenario would fail sends and leave
    // sequence gaps the store must then dead-letter: start from a whole cluster.
    wait_isr_full(&env, &t.names.orders, Duration::from_secs(120)).await;
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    // 8 000 orders, each CREATED → PAID → SHIPPED → DELIVERED at most: every event is a legal
    // transition, so the store applies every one. 30 000 events: the 20 rounds below apply up
    // to ~1 100 each (a kill point up to 600 in, plus batches of up to 500 landing at once), so
    // the last child still finds work.
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 8_000,
            chunk: 2_000,
            pause: Duration::ZERO,
            min_events: 30_000,
        },
    );
    let log = bg.finish().await;
    assert!(
        log.unacked.is_empty(),
        "the backlog must be acknowledged in full before the kills: {} unacknowledged ({:?})",
        log.unacked.len(),
        log.errors
    );
    let group = env.group_id("rel-s5");
    let topics = pipeline_topics(&t);
    let store_url = fresh_database(&env.unique("rel_s5"));
    let store = OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    let spec = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        env.bootstrap,
        env.registry_url,
        topics.source,
        topics.retry,
        topics.dead_letter,
        group,
        store_url
    );
    let sent: HashMap<&str, i64> = log
        .acked
        .iter()
        .chain(log.unacked.iter())
        .map(|e| (e.event_id.as_str(), e.sequence))
        .collect();
    let mut violations = Vec::new();
    let mut restart_ms = Vec::new();
    let mut kills = 0;
    let mut rng = support::rng("s5");
    for _ in 0..20 {
        let base = inbox_count(&store).await;
        let t0 = Instant::now();
        let mut child = spawn_child(
            "s5_consumer_sigkill::child_consumer",
            "ORDERSTREAM_REL_CONSUMER",
            &spec,
        );
        while inbox_count(&store).await <= base {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "child consumer applied nothing within 60 s of its start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        restart_ms.push(t0.elapsed().as_millis() as u64);
        let at = base + rng.random_range(50..600);
        let t1 = Instant::now();
        while inbox_count(&store).await < at && t1.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill(); // SIGKILL
        kills += 1;
        let committed = env.committed_offsets(&group, &topics.source).await;
        violations.extend(commit_violations(
            &committed,
            &applied(&store, &topics.source, &sent).await,
        ));
    }
    // recovery in-process on the same store, then a clean stop
    let cancel = CancellationToken::new();
    let recovery_proc = Arc::new(StoreProcessor::new(
        producer_support::codec(&env),
        store.clone(),
    ));
    let member = tokio::spawn(orderstream_consumer::run_batched(
        s5_config(&env.bootstrap, &group, topics.clone()),
        Arc::clone(&recovery_proc),
        cancel.clone(),
    ));
    let t0 = Instant::now();
    let want: HashSet<&str> = log.acked.iter().map(|a| a.event_id.as_str()).collect();
    loop {
        let have: HashSet<String> = applied(&store, &topics.source, &sent)
            .await
            .into_iter()
            .map(|(e, _)| e.event_id)
            .collect();
        if want.iter().all(|id| have.contains(*id)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "recovery did not apply every acknowledged event within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovery = t0.elapsed();
    // Seeing every id is not the end: a stop commits only the contiguous processed frontier.
    // While the member still runs, wait for its commits to reach the end offsets.
    let ends = env.end_offsets(&topics.source);
    let t1 = Instant::now();
    let mut commit_catch_up = None;
    while t1.elapsed() < Duration::from_secs(60) {
        if env.committed_offsets(&group, &topics.source).await == ends {
            commit_catch_up = Some(t1.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cancel.cancel();
    member
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("recovery member: {e}"));
    let seen = recovery_proc.counts();
    let final_applied = applied(&store, &topics.source, &sent).await;
    let committed = env.committed_offsets(&group, &topics.source).await;
    violations.extend(commit_violations(&committed, &final_applied));
    // Effects as the product recorded them: the inbox (each id with its row count) ...
    let effects: Vec<String> = store
        .inbox("order-")
        .await
        .unwrap_or_else(|e| panic!("inbox: {e}"))
        .into_iter()
        .flat_map(|(id, n)| std::iter::repeat_n(id, n as usize))
        .collect();
    // ... and what they did: a second application of an event would show in the totals.
    let totals = store
        .customer_totals("cust-")
        .await
        .unwrap_or_else(|e| panic!("totals: {e}"));
    let expected = expected_totals(&log.acked);
    let wrong_totals = expected
        .iter()
        .filter(|(c, v)| totals.get(*c) != Some(*v))
        .count()
        + totals.keys().filter(|c| !expected.contains_key(*c)).count();
    let f = check(
        "5 consumer SIGKILL x20",
        &Observed {
            acked: log.acked.clone(),
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            // what the store applied, one row per event id: redeliveries never reach the
            // inbox (the store recognises them; `recovery_redeliveries_recognised` counts the
            // recovery member's)
            consumed: final_applied.iter().map(|(e, _)| e.clone()).collect(),
            effects: Some(effects),
            recover: restart_ms.iter().max().map(|ms| Duration::from_millis(*ms)),
        },
    )
    .with("kills", kills)
    .with("store", "PostgreSQL inbox + projection")
    .with("customers_with_wrong_totals", wrong_totals)
    .with("recovery_member_applied", seen.applied)
    .with("recovery_redeliveries_recognised", seen.duplicates)
    .with("recovery_ahead_of_predecessor_retried", seen.early)
    .with("commit_ahead_of_frontier", violations.len())
    .with("restart_to_first_record_ms", restart_ms.clone())
    .with("final_recovery_ms", recovery.as_millis() as u64)
    .with(
        "commit_catch_up_ms",
        commit_catch_up.map(|d| d.as_millis() as u64),
    )
    .with("lag_zero_at_end", committed == ends)
    .with("recover", "max restart-to-first-applied-event");
    let f = finish(f, started);
    store.close().await;
    assert!(
        violations.is_empty(),
        "commit ahead of processed: {violations:?}"
    );
    assert_eq!(kills, 20, "20 kills expected");
    f.assert_promise();
    assert_eq!(
        wrong_totals, 0,
        "every customer's totals as the acknowledged events make them"
    );
    assert_eq!(
        committed, ends,
        "lag back to 0 after recovery (commits reached the end offsets while running: {commit_catch_up:?})"
    );
}
