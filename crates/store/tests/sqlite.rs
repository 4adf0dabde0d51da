//! The store on an embedded SQLite file: effects, the inbox across reconnects, illegal and
//! unknown kinds, totals. (PostgreSQL: tests/store_postgres.rs, against a real server.)

#![allow(clippy::unwrap_used)]

use orderstream_orders::OrderState;
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
async fn an_event_ahead_of_a_missing_predecessor_waits_instead_of_being_illegal() {
    let store = OrderStore::connect(&StoreConfig::new(db("early")))
        .await
        .unwrap();
    let created = event("o5", 0, EventType::Created);
    let paid = event("o5", 1, EventType::Paid);
    let shipped = event("o5", 2, EventType::Shipped);
    let paid_first = event("o6", 1, EventType::Paid);
    let created_again = event("o5", 1, EventType::Created);
    store.apply_batch(&[input(&created, 0)]).await.unwrap();
    // SHIPPED before PAID: illegal in Created, but sequence 1 has not been applied yet.
    assert_eq!(
        store
            .apply_batch(&[input(&shipped, 2), input(&paid_first, 3)])
            .await
            .unwrap(),
        vec![Effect::Early { expected: 1 }, Effect::Early { expected: 0 }]
    );
    // An illegal event at the expected sequence stays illegal: no predecessor is missing.
    assert_eq!(
        store
            .apply_batch(&[input(&created_again, 4)])
            .await
            .unwrap(),
        vec![Effect::Illegal {
            from: Some(OrderState::Created)
        }]
    );
    assert_eq!(
        store.apply_batch(&[input(&paid, 1)]).await.unwrap(),
        vec![Effect::Applied]
    );
    assert_eq!(
        store.apply_batch(&[input(&shipped, 2)]).await.unwrap(),
        vec![Effect::Applied],
        "once the predecessor is applied, the early event applies"
    );
    let orders = store.orders("o").await.unwrap();
    assert_eq!(orders["o5"].state, OrderState::Shipped);
    assert!(!orders.contains_key("o6"), "an early event writes nothing");
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

#[tokio::test]
async fn outbox_keeps_committed_rows_only_and_hands_out_one_per_order_in_order() {
    let store = OrderStore::connect(&StoreConfig::new(db("outbox")))
        .await
        .unwrap();
    let a: Vec<OrderEvent> = (0..3)
        .map(|s| event("aa-1", s, EventType::Created))
        .collect();
    let b = event("bb-1", 0, EventType::Created);
    for e in a.iter().chain([&b]) {
        let mut tx = store.begin().await.unwrap();
        orderstream_store::record(&mut tx, e).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    orderstream_store::record(&mut tx, &event("cc-1", 0, EventType::Created))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // A second record of the same event id is refused, naming the event.
    let mut tx = store.begin().await.unwrap();
    let err = orderstream_store::record(&mut tx, &b).await.unwrap_err();
    assert!(err.to_string().contains(&b.event_id), "{err}");
    drop(tx);

    let counts = store.outbox_counts("").await.unwrap();
    assert_eq!(
        (counts.recorded, counts.unsent),
        (4, 4),
        "the rolled-back row is not there"
    );
    for want_seq in 0..3 {
        let rows = store.pending(10).await.unwrap();
        let orders: Vec<(&str, i64)> = rows
            .iter()
            .map(|r| (r.event.order_id.as_str(), r.event.sequence))
            .collect();
        // One row per order, the oldest unsent one.
        assert!(orders.contains(&("aa-1", want_seq)), "{orders:?}");
        assert_eq!(orders.iter().filter(|(o, _)| *o == "aa-1").count(), 1);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        assert_eq!(store.mark_sent(&ids).await.unwrap(), ids.len() as u64);
    }
    assert!(store.pending(10).await.unwrap().is_empty());
    assert_eq!(store.outbox_counts("aa-").await.unwrap().unsent, 0);
}
