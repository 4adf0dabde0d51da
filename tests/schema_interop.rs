//! Reading what other services write, against the real registry and cluster: an independent
//! producer (Python confluent-kafka's own `AvroSerializer`, tests/interop/avro_producer.py)
//! registers its own newer versions of the order-event schema and produces with them. Our
//! consumer group resolves each writer schema into the one its types follow and applies the
//! events: an added optional field is dropped, an added enum symbol reads as the enum default
//! `UNKNOWN` (acknowledged without effect). A record whose writer schema cannot be resolved
//! goes to the dead-letter topic with class `incompatible_schema`. Nothing is lost: every
//! record is applied, counted as unknown, or dead-lettered, and the group commits to the end.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod producer_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::{ConsumerConfig, headers as h};
use orderstream_orders::{OrderProcessor, OrderState, SampleConfig};
use orderstream_schema::compat::Mode;
use orderstream_schema::registry_admin::RegistryAdmin;
use orderstream_schema::{SubjectStrategy, types_version, versions};
use orderstream_testkit::{TestEnv, python, repo_root};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One record the Python producer reports as delivered.
#[derive(Debug)]
struct Sent {
    order_id: String,
    event_type: String,
    partition: i32,
    offset: i64,
    schema_id: u32,
}

fn python_produce(env: &TestEnv, topic: &str, variant: &str, first: u32, orders: u32) -> Vec<Sent> {
    let script = repo_root().join("tests/interop/avro_producer.py");
    let base = repo_root().join(types_version().path);
    let out = Command::new(python())
        .arg(&script)
        .args(["--bootstrap", &env.bootstrap])
        .args(["--registry-url", &env.registry_url])
        .args(["--topic", topic, "--variant", variant])
        .args(["--first-order", &first.to_string()])
        .args(["--orders", &orders.to_string()])
        .arg("--base-schema")
        .arg(&base)
        .output()
        .expect("run the Python producer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{variant}: Python producer failed ({}): {stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            Sent {
                order_id: v["order_id"].as_str().unwrap().to_owned(),
                event_type: v["event_type"].as_str().unwrap().to_owned(),
                partition: i32::try_from(v["partition"].as_i64().unwrap()).unwrap(),
                offset: v["offset"].as_i64().unwrap(),
                schema_id: u32::try_from(v["schema_id"].as_u64().unwrap()).unwrap(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_writer_versions_from_python_are_applied_and_the_unreadable_one_dead_lettered() {
    const ORDERS: u32 = 20;
    let env = TestEnv::connect().await;
    let topics = env.topics("interop").await;
    let orders_topic = topics.names.orders.clone();

    // Our versions first, under the strictest level: the other team's versions must pass it.
    let admin = RegistryAdmin::new(&env.registry_url, Duration::from_secs(10)).unwrap();
    let subject = SubjectStrategy::TopicName.subject(&orders_topic);
    admin
        .set_compatibility(&subject, Mode::FullTransitive)
        .await
        .unwrap();
    let mut ours = BTreeSet::new();
    for v in versions() {
        ours.insert(admin.register(&subject, v.text).await.unwrap());
    }

    let optional = python_produce(&env, &orders_topic, "optional-field", 0, ORDERS);
    let symbol = python_produce(&env, &orders_topic, "enum-symbol", 100, ORDERS);
    let rogue = python_produce(&env, &orders_topic, "unreadable", 200, 1);
    assert_eq!(optional.len(), 4 * ORDERS as usize);
    assert_eq!(symbol.len(), 4 * ORDERS as usize + ORDERS as usize / 2);
    assert_eq!(rogue.len(), 1);
    // The other team's versions are new schemas the registry accepted under FULL_TRANSITIVE.
    let held = admin.versions(&subject).await.unwrap();
    assert_eq!(held.len(), versions().len() + 2, "registry holds {held:?}");
    for sent in optional.iter().chain(&symbol) {
        assert!(
            !ours.contains(&sent.schema_id),
            "{sent:?} used one of our ids"
        );
    }
    let returned = symbol.iter().filter(|s| s.event_type == "RETURNED").count() as u64;

    let codec = producer_support::codec(&env);
    let processor = Arc::new(OrderProcessor::new(codec, SampleConfig::default()));
    let group = env.group_id("interop");
    let cfg = ConsumerConfig::new(
        env.bootstrap.clone(),
        group.clone(),
        orderstream_orders::topics::member_topics(&topics.names),
    );
    let stop = CancellationToken::new();
    let member = tokio::spawn(orderstream_consumer::run(
        cfg,
        Arc::clone(&processor),
        stop.child_token(),
    ));

    let applied_expected = 8 * u64::from(ORDERS);
    let ends = env.end_offsets(&orders_topic);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let snap = processor.snapshot();
        let committed = env.committed_offsets(&group, &orders_topic).await;
        if (snap.applied_events >= applied_expected && committed == ends)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    let summary = member.await.unwrap().expect("member ran");
    let snap = processor.snapshot();
    println!(
        "applied {}, unknown kinds {}, rejected {}, duplicates {}; summary {summary:?}",
        snap.applied_events, snap.unknown_kinds, snap.rejected, snap.duplicates
    );

    assert_eq!(
        snap.applied_events, applied_expected,
        "every lifecycle event applied"
    );
    assert_eq!(
        snap.unknown_kinds, returned,
        "RETURNED read as UNKNOWN, no effect"
    );
    assert_eq!((snap.rejected, snap.duplicates), (0, 0));
    assert_eq!(snap.orders.len(), 2 * ORDERS as usize);
    assert!(
        snap.orders.values().all(|s| *s == OrderState::Delivered),
        "{:?}",
        snap.orders
    );
    // Amounts came through resolution: per customer, the orders and paid totals the Python
    // side wrote (order n: customer c-<n % 7>, amount 1000 + n).
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for n in (0..ORDERS).chain(100..100 + ORDERS) {
        let t = want.entry(format!("c-{}", n % 7)).or_default();
        t.0 += 1;
        t.1 += 1000 + i64::from(n);
    }
    let got: BTreeMap<String, (u64, i64)> = snap
        .customers
        .iter()
        .map(|(k, v)| (k.clone(), (v.orders, v.paid_minor)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        env.committed_offsets(&group, &orders_topic).await,
        ends,
        "the group committed every record, the dead-lettered one included"
    );

    let dead = env
        .read_all(&topics.names.dead_letter, Duration::from_secs(30))
        .await;
    assert_eq!(
        dead.len(),
        1,
        "exactly the unreadable record is dead-lettered"
    );
    let hs: BTreeMap<String, String> = dead[0]
        .headers()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x.key.to_owned(),
                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(hs[h::DLQ_ERROR_CLASS], "incompatible_schema", "{hs:#?}");
    assert_eq!(hs[h::DLQ_SCHEMA_ID], rogue[0].schema_id.to_string());
    assert_eq!(hs[h::DLQ_SOURCE_PARTITION], rogue[0].partition.to_string());
    assert_eq!(hs[h::DLQ_SOURCE_OFFSET], rogue[0].offset.to_string());
    assert!(
        hs[h::DLQ_ERROR_MESSAGE].contains("amount_minor"),
        "the message names the field: {}",
        hs[h::DLQ_ERROR_MESSAGE]
    );
    assert_eq!(dead[0].key(), Some(rogue[0].order_id.as_bytes()));
}

/// The bytes our encoder writes (the golden bytes of the contract tests among them) are the
/// bytes an independent implementation writes: fastavro, from the same schema file, for events
/// covering every enum symbol, both union branches, empty and several items, extreme numbers
/// and non-ASCII text. Equal bytes also mean our fast decoder reads what fastavro writes.
#[test]
fn encoder_bytes_match_fastavro() {
    use orderstream_schema::{EventType, LineItem, OrderCodec, OrderEvent, encode_body};
    use std::io::Write as _;

    let mut events = vec![OrderEvent::example()];
    for (i, t) in EventType::ALL.into_iter().enumerate() {
        let mut e = OrderEvent::example();
        e.event_type = t;
        e.sequence = i64::try_from(i).unwrap() * 1_000_003;
        e.note = None;
        e.channel = (i % 2 == 0).then(|| "app".to_owned());
        events.push(e);
    }
    let mut extreme = OrderEvent::example();
    extreme.sequence = i64::MAX;
    extreme.amount_minor = i64::MIN;
    extreme.occurred_at_micros = -1;
    extreme.items = Vec::new();
    extreme.customer_id = "kunde-Größe-注文-🛒".to_owned();
    extreme.note = Some(String::new());
    events.push(extreme);
    let mut many = OrderEvent::example();
    many.items = (0..70)
        .map(|i| LineItem {
            sku: format!("SKU-{i}"),
            quantity: i32::MAX - i,
            unit_price_minor: -i64::from(i) * 64,
        })
        .collect();
    events.push(many);

    let schema_text = types_version().text;
    let doc = serde_json::json!({ "schema": schema_text, "records": events });
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/interop/fastavro_encode.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fastavro_encode.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fastavro failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(theirs.len(), events.len());
    let codec = OrderCodec::new(orderstream_schema::RegistryConfig::default()).unwrap();
    codec.insert_writer_schema(42, schema_text).unwrap();
    for (event, hex) in events.iter().zip(&theirs) {
        let ours: String = encode_body(event)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&ours, hex, "bytes differ for {event:?}");
        // And our decoder reads fastavro's bytes back into the event.
        let mut framed = vec![0u8, 0, 0, 0, 42];
        framed.extend(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()),
        );
        let mut decoded = OrderEvent::default();
        assert_eq!(
            codec
                .try_decode_cached_into(&framed, &mut decoded)
                .unwrap()
                .unwrap(),
            42
        );
        assert_eq!(&decoded, event);
    }
    println!("{} events: our bytes equal fastavro's", events.len());
}
