//! The store on an embedded SQLite file: effects, the inbox across reconnects, illegal and
//! unknown kinds, totals. (PostgreSQL: tests/store_postgres.rs, against a real server.)

#![allow(clippy::unwrap_used)]

use orderstream_consumer::sample::OrderState;
use orderstream_schema::{EventType, OrderEvent};
use orderstream_store::{Effect, Input, OrderStore, StoreConfig};

fn event(order: &str, seq: i64, t: EventType) -> OrderEvent {
    OrderEvent {
        event_id: format!("{order}-{seq}"),
        order_id: order.to_owned(),
        customer_id: format!("cust-{}", &order[..2]),
        sequence: seq,
        event_type: t,
        amount_minor: 1000,
        ..OrderEvent::example()
    }
}

fn input(e: &OrderEvent, offset: i64) -> Input<'_> {
    Input {
        event: e,
        topic: "orders",
        partition: 0,
        offset,
    }
}

fn db(test: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "orderstream-store-{}-{test}.db",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite:{}", path.display())
}

#[tokio::test]
async fn applies_once_across_reconnects() {
    let url = db("once");
    let store = OrderStore::connect(&StoreConfig::new(&url)).await.unwrap();
    let created = event("o1", 0, EventType::Created);
    let paid = event("o1", 1, EventType::Paid);
    let other = event("o2", 0, EventType::Created);
    assert_eq!(
        store
            .apply_batch(&[input(&created, 0), input(&other, 1)])
            .await
            .unwrap(),
        vec![Effect::Applied, Effect::Applied]
    );
    assert_eq!(
        store.apply_batch(&[input(&paid, 2)]).await.unwrap(),
        vec![Effect::Applied]
    );
    store.close().await;

    // A new process (reconnect, migrations again) is redelivered the same records.
    let store = OrderStore::connect(&StoreConfig::new(&url)).await.unwrap();
    assert_eq!(
        store
            .apply_batch(&[input(&created, 0), input(&other, 1)])
            .await
            .unwrap(),
        vec![Effect::Duplicate, Effect::Duplicate]
    );
    assert_eq!(
        store.apply_batch(&[input(&paid, 2)]).await.unwrap(),
        vec![Effect::Duplicate]
    );
    let orders = store.orders("o").await.unwrap();
    assert_eq!(orders["o1"].state, OrderState::Paid);
    assert_eq!(orders["o2"].state, OrderState::Created);
    let inbox = store.inbox("o").await.unwrap();
    assert_eq!(inbox.len(), 3);
    assert!(inbox.values().all(|n| *n == 1));
    assert_eq!(
        store.customer_totals("cust-o").await.unwrap()["cust-o1"],
        (1, 1000)
    );
}

#[tokio::test]
async fn illegal_and_unknown_kinds() {
    let store = OrderStore::connect(&StoreConfig::new(db("kinds")))
        .await
        .unwrap();
    let shipped_first = event("o3", 0, EventType::Shipped);
    let created = event("o4", 0, EventType::Created);
    let unknown = event("o4", 1, EventType::Unknown);
    let paid = event("o4", 2, EventType::Paid);
    let effects = store
        .apply_batch(&[input(&shipped_first, 0), input(&created, 1)])
        .await
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::Illegal { from: None }, Effect::Applied]
    );
    assert_eq!(
        store.apply_batch(&[input(&unknown, 2)]).await.unwrap(),
        vec![Effect::UnknownKind]
    );
    assert_eq!(
        store.apply_batch(&[input(&paid, 3)]).await.unwrap(),
        vec![Effect::Applied]
    );
    let orders = store.orders("o").await.unwrap();
    assert!(
        !orders.contains_key("o3"),
        "an illegal event writes nothing"
    );
    assert_eq!(orders["o4"].state, OrderState::Paid);
    assert_eq!(orders["o4"].last_sequence, 2);
    assert_eq!(store.counts().await.unwrap().inbox, 3);
}

#[tokio::test]
async fn bad_urls_are_refused_clearly() {
    for (url, needle) in [
        ("sqlite::memory:", "not durable"),
        ("mysql://h/db", "expected postgres://"),
    ] {
        let err = OrderStore::connect(&StoreConfig::new(url))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{url}: {err}");
    }
    // An unreachable server: a clear error naming the store, password redacted.
    let mut cfg = StoreConfig::new("postgres://u:hunter2@127.0.0.1:1/db");
    cfg.acquire_timeout = std::time::Duration::from_secs(2);
    let err = OrderStore::connect(&cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to the store at postgres://u:***@127.0.0.1:1/db"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
