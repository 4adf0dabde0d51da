//! `orderstream consume --store` against a real PostgreSQL and the real cluster: member
//! processes SIGKILLed 20 times and restarted while order events are produced. The effects are
//! counted by querying the database and compared with the events read back from Kafka by an
//! independent reader: every event applied exactly once, every order in its final state, every
//! customer's totals right. And three member processes joining and then leaving one by one
//! while they work through a backlog: the order state follows each partition through the
//! database, so no valid event is dead-lettered when partitions move.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use orderstream_orders::OrderProducer;
use orderstream_orders::OrderState;
use orderstream_producer::{ProducerConfig, ProducerTopic};
use orderstream_schema::{EventType, OrderCodec, RegistryConfig};
use orderstream_store::{OrderStore, StoreConfig};
use orderstream_testkit::{Spawned, TestEnv, fresh_database};
use rdkafka::Message;
use support::{interrupt, orderstream, text};

const ORDERS: usize = 300;
const KILLS: usize = 20;

use orderstream_orders::fixtures::lifecycle as event;

fn member(env: &TestEnv, layout: &str, group: &str, store: &str) -> Spawned {
    member_for(env, layout, group, store, 600)
}

fn member_for(env: &TestEnv, layout: &str, group: &str, store: &str, secs: u64) -> Spawned {
    Spawned::start(
        "orderstream consume",
        Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args([
                "--topology",
                layout,
                "consume",
                "--group",
                group,
                "--for",
                &secs.to_string(),
            ])
            .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
            .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
            .env("ORDERSTREAM_STORE", store)
            .env_remove("ORDERSTREAM_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("ORDERSTREAM_TEST_MEMBER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_members_apply_every_event_exactly_once_in_postgres() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("store-kill");
    let layout = layout.to_str().expect("utf-8").to_owned();
    assert!(
        orderstream(&env, &["--topology", &layout, "topics", "apply"])
            .status
            .success()
    );
    let store_url = fresh_database(&env.unique("store_kill"));
    let prefix = env.unique("o");
    let group = env.group_id("store-kill");

    let codec = OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .expect("codec");
    let partitions = env.partition_count(&names.orders);
    let producer = OrderProducer::new(
        ProducerConfig {
            bootstrap_servers: env.bootstrap.clone(),
            ..ProducerConfig::default()
        },
        codec.clone(),
        ProducerTopic::new(names.orders.clone(), partitions),
    )
    .await
    .expect("producer");

    let mut members = vec![
        member(&env, &layout, &group, &store_url),
        member(&env, &layout, &group, &store_url),
    ];
    let mut kills = 0;
    let mut acked = 0usize;
    for seq in 0..4 {
        for half in 0..2 {
            let mut pending = Vec::new();
            for order in (half * ORDERS / 2)..((half + 1) * ORDERS / 2) {
                pending.push(producer.enqueue(&event(&prefix, order, seq)).await);
            }
            for p in pending {
                assert!(p.outcome().await.is_delivered(), "every send acknowledged");
                acked += 1;
            }
            // Kill members while they work through what was just produced, restart them.
            for _ in 0..KILLS.div_ceil(8) {
                if kills == KILLS {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
                let victim = kills % members.len();
                let mut dead = members.swap_remove(victim);
                dead.kill();
                kills += 1;
                members.push(member(&env, &layout, &group, &store_url));
            }
        }
    }
    producer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(kills, KILLS);
    assert_eq!(acked, 4 * ORDERS);

    // The group must get to the end of every partition: only once the last killed member's
    // session (45 s) has run out can the group settle, on a host busy with the other tests.
    let ends = env.end_offsets(&names.orders);
    let deadline = Instant::now() + Duration::from_secs(240);
    while env.committed_offsets(&group, &names.orders).await != ends && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for m in members {
        let out = interrupt(m);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        println!("{stdout}");
    }
    assert_eq!(
        env.committed_offsets(&group, &names.orders).await,
        ends,
        "lag 0"
    );

    // What Kafka holds, read back independently.
    let mut in_kafka = BTreeSet::new();
    let mut want_totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for m in env.read_all(&names.orders, Duration::from_secs(60)).await {
        let e = codec
            .decode(m.payload().expect("value"))
            .await
            .expect("decode")
            .event;
        let t = want_totals.entry(e.customer_id.clone()).or_default();
        match e.event_type {
            EventType::Created => t.0 += 1,
            EventType::Paid => t.1 += e.amount_minor,
            _ => {}
        }
        assert!(
            in_kafka.insert(e.event_id),
            "the producer wrote no duplicate"
        );
    }
    assert_eq!(in_kafka.len(), acked);

    // What the database holds.
    let store = OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .expect("store");
    let inbox = store.inbox(&prefix).await.expect("inbox");
    let applied: BTreeSet<String> = inbox.keys().cloned().collect();
    let missing = in_kafka.difference(&applied).count();
    let extra = applied.difference(&in_kafka).count();
    let doubled = inbox.values().filter(|n| **n != 1).count();
    println!(
        "kills {kills}; events in Kafka {}; in the inbox {}; missing {missing}; extra {extra}; doubled {doubled}",
        in_kafka.len(),
        applied.len()
    );
    assert_eq!(
        (missing, extra, doubled),
        (0, 0, 0),
        "exactly once, by the database"
    );
    let orders = store.orders(&prefix).await.expect("orders");
    assert_eq!(orders.len(), ORDERS);
    assert!(
        orders
            .values()
            .all(|o| o.state == OrderState::Delivered && o.last_sequence == 3),
        "every order in its final state"
    );
    assert_eq!(
        store.customer_totals(&prefix).await.expect("totals"),
        want_totals,
        "per-customer totals: each event's effect counted once"
    );
    // A redelivered event the store did not recognise would be an illegal transition now.
    let dead = env
        .read_all(&names.dead_letter, Duration::from_secs(30))
        .await;
    assert!(dead.is_empty(), "{} records dead-lettered", dead.len());
    store.close().await;
}

/// Sum of the group's committed offsets on `topic` (partitions without a commit count 0).
async fn committed_sum(env: &TestEnv, group: &str, topic: &str) -> i64 {
    env.committed_offsets(group, topic)
        .await
        .values()
        .map(|o| (*o).max(0))
        .sum()
}

/// Waits until the group has committed at least `n` records of `topic`, until `deadline`.
async fn committed_at_least(env: &TestEnv, group: &str, topic: &str, n: i64, deadline: Instant) {
    loop {
        let c = committed_sum(env, group, topic).await;
        if c >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed {c} of {n} records before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The number after `label` in a member's summary (`processed `, `applied `, ...).
fn figure(stdout: &str, label: &str) -> u64 {
    stdout
        .split(label)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' figure in {stdout}"))
}

/// Events of the scale-out backlog: `ORDERSTREAM_SCALE_EVENTS` (a multiple of 4), default 60 000.
fn scale_events() -> usize {
    std::env::var("ORDERSTREAM_SCALE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(60_000, |n: usize| n / 4 * 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_during_a_backlog_dead_letter_no_valid_event() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("store-scale");
    let layout = layout.to_str().expect("utf-8").to_owned();
    assert!(
        orderstream(&env, &["--topology", &layout, "topics", "apply"])
            .status
            .success()
    );
    let store_url = fresh_database(&env.unique("store_scale"));
    let prefix = env.unique("o");
    let group = env.group_id("store-scale");
    let events = scale_events();
    let orders = events / 4;
    // One deadline for the whole drain: generous per event (debug build, one member for most).
    let deadline = Instant::now() + Duration::from_secs(180 + (events / 200) as u64);

    let codec = OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .expect("codec");
    let producer = OrderProducer::new(
        ProducerConfig {
            bootstrap_servers: env.bootstrap.clone(),
            ..ProducerConfig::default()
        },
        codec.clone(),
        ProducerTopic::new(names.orders.clone(), env.partition_count(&names.orders)),
    )
    .await
    .expect("producer");
    // Every order's CREATED, then every PAID, and so on (a key's events in order), a round or
    // half a round at a time: each membership change happens while a backlog waits, and each
    // member that joined is given records after it owns partitions, however fast the group is.
    let produce = |seq: i64, orders_in: std::ops::Range<usize>| {
        let (producer, prefix) = (&producer, &prefix);
        async move {
            let mut pending = Vec::with_capacity(orders_in.len());
            for order in orders_in {
                pending.push(producer.enqueue(&event(prefix, order, seq)).await);
            }
            for p in pending {
                assert!(p.outcome().await.is_delivered(), "every send acknowledged");
            }
        }
    };
    let total = events as i64;
    let round = orders as i64;
    let (first_half, second_half) = (0..orders / 2, orders / 2..orders);
    // (Members run until interrupted; `--for` only bounds a test that dies.)
    let secs = 3_600;
    let partitions = env.partition_count(&names.orders) as usize;
    let at_least = |n: i64| committed_at_least(&env, &group, &names.orders, n, deadline);
    produce(0, 0..orders).await;
    let mut a = member_for(&env, &layout, &group, &store_url, secs);
    let t0 = Instant::now();
    at_least(round / 4).await;
    // b joins while most of the first round waits.
    let b = member_for(&env, &layout, &group, &store_url, secs);
    env.wait_for_assignments(&group, 2, partitions, Duration::from_secs(60))
        .await;
    produce(1, 0..orders).await;
    at_least(2 * round).await;
    // c joins while half of the third round waits; the other half comes once it owns
    // partitions (cooperative rebalancing assigns in a second round).
    produce(2, first_half.clone()).await;
    let c = member_for(&env, &layout, &group, &store_url, secs);
    env.wait_for_assignments(&group, 3, partitions, Duration::from_secs(60))
        .await;
    produce(2, second_half.clone()).await;
    at_least(3 * round).await;
    // c, then b, leave while the last round waits.
    produce(3, first_half).await;
    let out_c = interrupt(c);
    produce(3, second_half).await;
    producer.shutdown(Duration::from_secs(10)).await;
    let out_b = interrupt(b);
    committed_at_least(&env, &group, &names.orders, total, deadline).await;
    assert_eq!(
        env.committed_offsets(&group, &names.orders).await,
        env.end_offsets(&names.orders),
        "lag 0"
    );
    if a.exited().is_some() {
        panic!("the first member stopped before the end");
    }
    let out_a = interrupt(a);
    // Per member: (processed, applied, recognised by the store as already applied).
    let mut by_member = Vec::new();
    // A member that lost its assignment (its generation fenced) could not commit its work.
    let mut lost = false;
    for (name, out) in [("a", &out_a), ("b", &out_b), ("c", &out_c)] {
        let (stdout, stderr) = text(out);
        assert!(out.status.success(), "member {name}: {stdout}\n{stderr}");
        println!("member {name}:\n{stdout}");
        lost |= stderr.contains("partitions lost");
        by_member.push((
            figure(&stdout, "processed "),
            figure(&stdout, "applied "),
            figure(&stdout, "duplicates recognised by the store "),
        ));
    }
    let processed: u64 = by_member.iter().map(|m| m.0).sum();
    let applied: u64 = by_member.iter().map(|m| m.1).sum();
    let recognised: u64 = by_member.iter().map(|m| m.2).sum();
    println!(
        "events {events}; drained in {:.1?}; per member (processed, applied, recognised) {by_member:?}; \
         redelivered and recognised {recognised}",
        t0.elapsed()
    );
    assert!(
        by_member.iter().all(|m| m.0 > 0),
        "every member took part: {by_member:?}"
    );
    assert_eq!(
        applied, events as u64,
        "the members applied each event once"
    );
    assert_eq!(
        processed,
        applied + recognised,
        "every processed record was applied or recognised"
    );
    // Joins and leaves drain and commit what was applied, and records run oldest first, so
    // the next owner starts where the last one stopped: nothing is redelivered unless an
    // assignment was lost.
    if lost {
        println!("an assignment was lost: {recognised} redeliveries allowed");
    } else {
        assert_eq!(recognised, 0, "no redelivery after graceful rebalances");
    }

    // What the database holds: every event applied once, every order in its final state.
    let store = OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .expect("store");
    let inbox = store.inbox(&prefix).await.expect("inbox");
    let doubled = inbox.values().filter(|n| **n != 1).count();
    let order_rows = store.orders(&prefix).await.expect("orders");
    let not_final = order_rows
        .values()
        .filter(|o| o.state != OrderState::Delivered || o.last_sequence != 3)
        .count();
    let dead = env
        .read_all(&names.dead_letter, Duration::from_secs(30))
        .await;
    println!(
        "inbox {} of {events}; doubled {doubled}; orders {} of {orders}, not in their final state {not_final}; dead-lettered {}",
        inbox.len(),
        order_rows.len(),
        dead.len()
    );
    assert_eq!(dead.len(), 0, "no valid event dead-lettered");
    assert_eq!(
        (inbox.len(), doubled),
        (events, 0),
        "each event applied once"
    );
    assert_eq!(
        (order_rows.len(), not_final),
        (orders, 0),
        "every order's state is its last event's"
    );
    store.close().await;
}
