//! The outbox against a real PostgreSQL and the real cluster: a service records order events in
//! its own transactions (some rolled back) while `orderstream relay` processes are SIGKILLed 10
//! times and restarted. Read back from Kafka by an independent reader: every committed row is
//! there, no rolled-back one, and each order's events in order (a re-published copy only
//! repeats the event before the next one).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use orderstream_schema::{EventType, OrderCodec, OrderEvent, RegistryConfig};
use orderstream_store::{OrderStore, StoreConfig, record};
use orderstream_testkit::{Spawned, TestEnv, fresh_database};
use rdkafka::Message;
use support::{interrupt, orderstream, text};

const ORDERS: usize = 150;
const KILLS: usize = 10;

/// An order's lifecycle event `seq`; `seq` 4 cancels a delivered order (an illegal transition).
fn event(prefix: &str, order: usize, seq: i64) -> OrderEvent {
    let e = orderstream_orders::fixtures::lifecycle(prefix, order, seq);
    if seq == 4 {
        OrderEvent {
            event_type: EventType::Cancelled,
            ..e
        }
    } else {
        e
    }
}

fn relay(env: &TestEnv, layout: &str, store: &str) -> Spawned {
    Spawned::start(
        "orderstream relay",
        Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args([
                "--topology",
                layout,
                "relay",
                "--batch",
                "50",
                "--for",
                "600",
            ])
            .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
            .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
            .env("ORDERSTREAM_STORE", store)
            .env_remove("ORDERSTREAM_CONFIG")
            .env("RUST_LOG", "warn"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_relays_publish_every_committed_outbox_row_in_order() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("relay-kill");
    let layout = layout.to_str().expect("utf-8").to_owned();
    assert!(
        orderstream(&env, &["--topology", &layout, "topics", "apply"])
            .status
            .success()
    );
    let store_url = fresh_database(&env.unique("relay_kill"));
    let store = OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .expect("store");
    let prefix = env.unique("o");

    // The service: each event in its own transaction; every 9th transaction rolls back.
    let writer = {
        let (store, prefix) = (store.clone(), prefix.clone());
        tokio::spawn(async move {
            let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
            // An order's events follow each other closely, so the outbox holds several of one
            // order at once: the relay must still publish them in order across its crashes.
            for order in 0..ORDERS {
                for seq in 0..4 {
                    let e = event(&prefix, order, seq);
                    let mut tx = store.begin().await.expect("begin");
                    record(&mut tx, &e).await.expect("record");
                    tx.commit().await.expect("commit");
                    committed.push(e.event_id);
                }
                if (order + 1) % 9 == 0 {
                    let doomed = event(&prefix, order, 4);
                    let mut tx = store.begin().await.expect("begin");
                    record(&mut tx, &doomed).await.expect("record");
                    tx.rollback().await.expect("rollback");
                    rolled_back.push(doomed.event_id);
                }
                if (order + 1) % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(450)).await;
                }
            }
            (committed, rolled_back)
        })
    };

    let mut relays = vec![relay(&env, &layout, &store_url)];
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut dead = relays.pop().expect("a relay");
        dead.kill();
        relays.push(relay(&env, &layout, &store_url));
    }
    let (committed, rolled_back) = writer.await.expect("writer");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = store.outbox_counts(&prefix).await.expect("counts");
        assert_eq!(
            c.recorded,
            committed.len() as u64,
            "rolled-back rows are not in the outbox"
        );
        if c.unsent == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{} rows still unsent", c.unsent);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for r in relays {
        let out = interrupt(r);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        println!("{stdout}");
    }

    // Kafka, read back independently.
    let codec = OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .expect("codec");
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in env.read_all(&names.orders, Duration::from_secs(60)).await {
        let e = codec
            .decode(m.payload().expect("value"))
            .await
            .expect("decode")
            .event;
        *copies.entry(e.event_id).or_default() += 1;
        per_order.entry(e.order_id).or_default().push(e.sequence);
    }
    let in_kafka: BTreeSet<&String> = copies.keys().collect();
    let want: BTreeSet<&String> = committed.iter().collect();
    let lost = want.difference(&in_kafka).count();
    let foreign = in_kafka.difference(&want).count();
    let rolled_back_seen = rolled_back
        .iter()
        .filter(|id| copies.contains_key(*id))
        .count();
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    let out_of_order = per_order
        .values()
        .filter(|seqs| seqs.windows(2).any(|w| w[1] < w[0]))
        .count();
    println!(
        "kills {KILLS}; committed rows {}; rolled back {}; in Kafka {} distinct; lost {lost}; not committed {foreign}; rolled back seen {rolled_back_seen}; re-published copies {duplicates}; orders out of order {out_of_order}",
        committed.len(),
        rolled_back.len(),
        in_kafka.len()
    );
    assert_eq!(committed.len(), 4 * ORDERS);
    assert!(!rolled_back.is_empty());
    assert_eq!(
        (lost, foreign, rolled_back_seen),
        (0, 0, 0),
        "every committed row, nothing else"
    );
    assert_eq!(out_of_order, 0, "each order's events in order");
    assert_eq!(per_order.len(), ORDERS);
    assert!(
        per_order
            .values()
            .all(|s| s.first() == Some(&0) && s.last() == Some(&3)),
        "every order from CREATED to DELIVERED"
    );
    store.close().await;
}
