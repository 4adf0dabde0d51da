//! `orderstream consume --store` against a real PostgreSQL and the real cluster: member
//! processes SIGKILLed 20 times and restarted while order events are produced. The effects are
//! counted by querying the database and compared with the events read back from Kafka by an
//! independent reader: every event applied exactly once, every order in its final state, every
//! customer's totals right.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orderstream_consumer::sample::OrderState;
use orderstream_producer::{OrderProducer, ProducerConfig, ProducerTopic};
use orderstream_schema::{EventType, OrderCodec, OrderEvent, RegistryConfig};
use orderstream_store::{OrderStore, StoreConfig};
use orderstream_testkit::{TestEnv, fresh_database};
use rdkafka::Message;
use support::{interrupt, orderstream, text};

const ORDERS: usize = 300;
const KILLS: usize = 20;

fn event(prefix: &str, order: usize, seq: i64) -> OrderEvent {
    OrderEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: format!("{prefix}-{order:05}"),
        customer_id: format!("{prefix}-c{}", order % 7),
        sequence: seq,
        event_type: [
            EventType::Created,
            EventType::Paid,
            EventType::Shipped,
            EventType::Delivered,
        ][usize::try_from(seq).unwrap_or(0)],
        amount_minor: 1_000 + i64::try_from(order).unwrap_or(0),
        ..OrderEvent::example()
    }
}

fn member(env: &TestEnv, layout: &str, group: &str, store: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args([
            "--topology",
            layout,
            "consume",
            "--group",
            group,
            "--for",
            "600",
        ])
        .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
        .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
        .env("ORDERSTREAM_STORE", store)
        .env_remove("ORDERSTREAM_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orderstream consume")
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
                dead.kill().expect("SIGKILL");
                let _ = dead.wait();
                kills += 1;
                members.push(member(&env, &layout, &group, &store_url));
            }
        }
    }
    producer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(kills, KILLS);
    assert_eq!(acked, 4 * ORDERS);

    // The group must get to the end of every partition.
    let ends = env.end_offsets(&names.orders);
    let deadline = Instant::now() + Duration::from_secs(120);
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
