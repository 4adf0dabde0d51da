//! `OrderCodec` and `registry_admin` against the real registry (Apicurio, Confluent-compatible
//! API) and the real cluster.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use orderstream_schema::compat::{self, Mode};
use orderstream_schema::registry_admin::{AdminError, RegistryAdmin};
use orderstream_schema::{
    CodecError, EventType, OrderCodec, OrderEvent, RegistryConfig, SubjectStrategy,
    parsed_versions, types_schema, types_version, versions, wire,
};
use orderstream_testkit::TestEnv;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;

fn admin(env: &TestEnv) -> RegistryAdmin {
    RegistryAdmin::new(&env.registry_url, Duration::from_secs(10)).unwrap()
}

fn codec(env: &TestEnv) -> OrderCodec {
    OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn events(n: i64) -> Vec<OrderEvent> {
    (0..n)
        .map(|i| OrderEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            order_id: format!("order-{}", i % 3),
            sequence: i / 3,
            event_type: EventType::ALL[(i % 6) as usize],
            note: (i % 2 == 0).then(|| format!("note {i}")),
            ..OrderEvent::example()
        })
        .collect()
}

async fn produce(env: &TestEnv, topic: &str, payloads: &[(String, Vec<u8>)]) {
    let producer = env.producer();
    for (key, bytes) in payloads {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(bytes),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Encode through the registry, carry the bytes through Kafka, decode them with (a) a fresh codec
/// that fetches the writer schema from the registry and (b) a codec seeded from `schemas/` that
/// never talks to a registry: identical results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_decode_identically_from_registry_or_files() {
    let env = TestEnv::connect().await;
    let topic = env.unique("schema-codec");
    env.create_topic(&topic, 3).await;
    let producer_codec = codec(&env);
    let admin = admin(&env);
    let subject = format!("{topic}-value");
    admin
        .set_compatibility(&subject, Mode::FullTransitive)
        .await
        .unwrap();

    let sent = events(30);
    let mut payloads = Vec::new();
    let mut id = None;
    for e in &sent {
        let enc = producer_codec.encode(&topic, e).await.unwrap();
        assert_eq!(*id.get_or_insert(enc.schema_id), enc.schema_id);
        payloads.push((e.order_id.clone(), enc.bytes));
    }
    let id = id.unwrap();
    // The id is the registry's, under the topic-name subject, for the schema text the types follow.
    assert_eq!(admin.versions(&subject).await.unwrap(), vec![1]);
    let stored = admin.schema_by_id(id).await.unwrap();
    assert_eq!(
        Schema::parse_str(&stored).unwrap().canonical_form(),
        types_schema().canonical_form(),
        "the registry stores the types' schema"
    );
    produce(&env, &topic, &payloads).await;
    let received = env.read_all(&topic, Duration::from_secs(60)).await;
    assert_eq!(received.len(), sent.len());

    let from_registry = codec(&env);
    let from_files = OrderCodec::new(RegistryConfig {
        url: "http://127.0.0.1:9".into(), // nothing listens: any registry call would fail
        ..RegistryConfig::default()
    })
    .unwrap();
    from_files
        .insert_writer_schema(id, types_version().text)
        .unwrap();
    let mut decoded = Vec::new();
    for m in &received {
        let bytes = m.payload().unwrap();
        let a = from_registry.decode(bytes).await.unwrap();
        let b = from_files.decode(bytes).await.unwrap();
        assert_eq!(a, b, "registry and schemas/ decode differently");
        assert_eq!(a.schema_id, id);
        assert_eq!(m.key().unwrap(), a.event.order_id.as_bytes());
        // Re-encoding with the cached id reproduces the bytes exactly.
        let mut again = Vec::new();
        from_registry
            .encode_with_cached_id(id, &a.event, &mut again)
            .unwrap();
        assert_eq!(again, bytes);
        decoded.push(a.event);
    }
    decoded.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let mut want = sent.clone();
    want.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(decoded, want);
    admin.delete_subject(&subject).await.unwrap();
}

fn v1_value(e: &OrderEvent) -> Value {
    let idx = EventType::ALL
        .iter()
        .position(|t| *t == e.event_type)
        .unwrap();
    Value::Record(vec![
        ("event_id".into(), Value::Uuid(e.event_id.parse().unwrap())),
        ("order_id".into(), Value::String(e.order_id.clone())),
        ("customer_id".into(), Value::String(e.customer_id.clone())),
        ("sequence".into(), Value::Long(e.sequence)),
        (
            "event_type".into(),
            Value::Enum(u32::try_from(idx).unwrap(), e.event_type.symbol().into()),
        ),
        ("amount_minor".into(), Value::Long(e.amount_minor)),
        ("currency".into(), Value::String(e.currency.clone())),
        (
            "items".into(),
            Value::Array(
                e.items
                    .iter()
                    .map(|i| {
                        Value::Record(vec![
                            ("sku".into(), Value::String(i.sku.clone())),
                            ("quantity".into(), Value::Int(i.quantity)),
                            ("unit_price_minor".into(), Value::Long(i.unit_price_minor)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "occurred_at_micros".into(),
            Value::TimestampMicros(e.occurred_at_micros),
        ),
    ])
}

/// Every checked-in version registers under FULL_TRANSITIVE (the online twin of
/// `schemas check`); a v1 producer's events decode in the current consumer, and a v1 consumer
/// reads the current producer's events, through Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_versions_evolve_through_registry_and_kafka() {
    let env = TestEnv::connect().await;
    let admin = admin(&env);
    let topic = env.unique("schema-versions");
    env.create_topic(&topic, 1).await;
    let subject = SubjectStrategy::TopicName.subject(&topic);
    admin
        .set_compatibility(&subject, Mode::FullTransitive)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for v in versions() {
        assert!(
            admin.test_compatibility(&subject, v.text).await.unwrap(),
            "{}",
            v.path
        );
        ids.push(admin.register(&subject, v.text).await.unwrap());
    }
    println!(
        "registered {} versions under {subject}: ids {ids:?}",
        ids.len()
    );

    // An old producer (v1) and the current one (the types' version, via the codec).
    let v1 = &parsed_versions()[0];
    let old_event = OrderEvent {
        note: None,
        channel: None,
        ..events(1).remove(0)
    };
    let mut old_framed = Vec::new();
    wire::write_header(ids[0], &mut old_framed);
    old_framed.extend(
        GenericDatumWriter::builder(v1)
            .build()
            .unwrap()
            .write_value_to_vec(v1_value(&old_event))
            .unwrap(),
    );
    let codec = codec(&env);
    let new_event = OrderEvent::example();
    let new_framed = codec.encode(&topic, &new_event).await.unwrap();
    let types_at = versions()
        .iter()
        .position(|v| v.version == types_version().version)
        .unwrap();
    assert_eq!(
        new_framed.schema_id, ids[types_at],
        "encode finds the already registered version the types follow"
    );
    produce(
        &env,
        &topic,
        &[
            ("old".into(), old_framed),
            ("new".into(), new_framed.bytes.clone()),
        ],
    )
    .await;
    let received = env.read_all(&topic, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2);

    // New consumer reads both.
    let consumer = OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let old_decoded = consumer
        .decode(received[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(
        old_decoded.event, old_event,
        "v1 data with new fields defaulted"
    );
    assert_eq!(old_decoded.schema_id, ids[0]);
    let new_decoded = consumer
        .decode(received[1].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(new_decoded.event, new_event);

    // Old consumer (v1 reader) reads the new event.
    let (id, mut body) = wire::split(received[1].payload().unwrap()).unwrap();
    let writer = Schema::parse_str(&admin.schema_by_id(id).await.unwrap()).unwrap();
    let old_view = GenericDatumReader::builder(&writer)
        .reader_schema(v1)
        .build()
        .unwrap()
        .read_value(&mut body)
        .unwrap();
    assert_eq!(old_view, v1_value(&new_event));
    admin.delete_subject(&subject).await.unwrap();
}

/// An incompatible change to the order schema is refused by the registry (HTTP 409) and by the
/// offline check alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_order_change_is_rejected_with_409() {
    let env = TestEnv::connect().await;
    let admin = admin(&env);
    let subject = env.unique("schema-incompatible");
    admin
        .set_compatibility(&subject, Mode::FullTransitive)
        .await
        .unwrap();
    for v in versions() {
        admin.register(&subject, v.text).await.unwrap();
    }
    // amount_minor: long -> string.
    let mut json: serde_json::Value = serde_json::from_str(types_version().text).unwrap();
    for f in json["fields"].as_array_mut().unwrap() {
        if f["name"] == "amount_minor" {
            f["type"] = serde_json::json!("string");
        }
    }
    let bad_text = json.to_string();
    let bad = Schema::parse_str(&bad_text).unwrap();
    assert_ne!(
        bad.canonical_form(),
        types_schema().canonical_form(),
        "the edit applied"
    );

    let mut all: Vec<Schema> = parsed_versions().to_vec();
    all.push(bad);
    let offline = compat::check(&all, Mode::FullTransitive);
    assert!(!offline.is_empty(), "offline check must refuse");
    assert!(!admin.test_compatibility(&subject, &bad_text).await.unwrap());
    match admin.register(&subject, &bad_text).await {
        Err(AdminError::Incompatible {
            subject: s,
            message,
        }) => {
            assert_eq!(s, subject);
            println!("registry refused with 409: {message}");
        }
        other => panic!("expected HTTP 409, got {other:?}"),
    }
    // Refused under BACKWARD too (the default Confluent level).
    admin
        .set_compatibility(&subject, Mode::Backward)
        .await
        .unwrap();
    assert!(matches!(
        admin.register(&subject, &bad_text).await,
        Err(AdminError::Incompatible { .. })
    ));
    admin.delete_subject(&subject).await.unwrap();
}

/// Unknown ids: reported as such, negatively cached for the TTL, asked again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_schema_id_is_negatively_cached() {
    let env = TestEnv::connect().await;
    let codec = OrderCodec::new(RegistryConfig {
        url: env.registry_url.clone(),
        // long enough that a loaded host cannot stall past it between two decodes
        negative_cache_ttl: Duration::from_secs(3),
        ..RegistryConfig::default()
    })
    .unwrap();
    let mut bytes = Vec::new();
    wire::write_header(1_999_999_999, &mut bytes);
    bytes.extend_from_slice(&[0, 1, 2]);
    let first = codec.decode(&bytes).await.unwrap_err();
    assert!(
        matches!(
            first,
            CodecError::UnknownSchemaId {
                schema_id: 1_999_999_999,
                cached: false
            }
        ),
        "{first:?}"
    );
    assert_eq!(first.class(), "unknown_schema_id");
    assert_eq!(first.schema_id(), Some(1_999_999_999));
    let second = codec.decode(&bytes).await.unwrap_err();
    assert!(
        matches!(second, CodecError::UnknownSchemaId { cached: true, .. }),
        "{second:?}"
    );
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let third = codec.decode(&bytes).await.unwrap_err();
    assert!(
        matches!(third, CodecError::UnknownSchemaId { cached: false, .. }),
        "{third:?}"
    );
}

/// Record-name and topic-record-name strategies register under the expected subjects; with
/// `auto_register = false` an unregistered subject is a permanent registry error, a registered
/// one is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_strategies_and_lookup_only() {
    let env = TestEnv::connect().await;
    let admin = admin(&env);
    let topic = env.unique("schema-strategy");
    let event = OrderEvent::example();
    for strategy in [
        SubjectStrategy::TopicRecordName,
        SubjectStrategy::RecordName,
    ] {
        let c = OrderCodec::new(RegistryConfig {
            url: env.registry_url.clone(),
            subject_strategy: strategy,
            ..RegistryConfig::default()
        })
        .unwrap();
        let enc = c.encode(&topic, &event).await.unwrap();
        let subject = strategy.subject(&topic);
        assert!(
            admin.list_subjects().await.unwrap().contains(&subject),
            "{subject} not registered"
        );
        assert_eq!(c.decode(&enc.bytes).await.unwrap().event, event);
        if strategy == SubjectStrategy::TopicRecordName {
            admin.delete_subject(&subject).await.unwrap();
        }
    }

    let lookup_only = |url: &str| {
        OrderCodec::new(RegistryConfig {
            url: url.to_owned(),
            auto_register: false,
            ..RegistryConfig::default()
        })
        .unwrap()
    };
    let missing = env.unique("schema-unregistered");
    let err = lookup_only(&env.registry_url)
        .encode(&missing, &event)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::Registry {
                retriable: false,
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), "registry_error");

    let registered = env.unique("schema-preregistered");
    let subject = format!("{registered}-value");
    let id = admin
        .register(&subject, types_version().text)
        .await
        .unwrap();
    let enc = lookup_only(&env.registry_url)
        .encode(&registered, &event)
        .await
        .unwrap();
    assert_eq!(enc.schema_id, id);
    admin.delete_subject(&subject).await.unwrap();
}
