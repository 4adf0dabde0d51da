//! Registry-free tests of the contract: types vs schema, golden bytes, round trips, versions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use orderstream_schema::compat::{self, Mode};
use orderstream_schema::{
    CodecError, EventType, LineItem, ORDER_EVENT_FULL_NAME, OrderCodec, OrderEvent, RegistryConfig,
    encode_body, parsed_versions, types_schema, types_version, versions, wire,
};
use proptest::prelude::*;

fn record_fields(schema: &Schema) -> Vec<String> {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        other => panic!("not a record: {other:?}"),
    }
}

fn field_schema<'a>(schema: &'a Schema, name: &str) -> &'a Schema {
    match schema {
        Schema::Record(r) => &r.fields[r.lookup[name]].schema,
        other => panic!("not a record: {other:?}"),
    }
}

fn json_keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The Rust types and the types' schema must not drift apart: same field names in the same
/// order (both ways), the same enum symbols, and a fully populated event validates.
#[test]
fn types_match_their_schema() {
    let schema = types_schema();
    let Schema::Record(rec) = schema else {
        panic!("the types' schema is not a record")
    };
    assert_eq!(rec.name.fullname(None), ORDER_EVENT_FULL_NAME);

    let event = OrderEvent::example();
    // serde_json keeps struct field order (preserve_order is not needed: we compare sets and
    // check order via the Avro serializer, which writes fields in schema order).
    let rust_fields: BTreeSet<String> = json_keys(&serde_json::to_value(&event).unwrap())
        .into_iter()
        .collect();
    let schema_fields: BTreeSet<String> = record_fields(schema).into_iter().collect();
    assert_eq!(
        rust_fields.difference(&schema_fields).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "Rust fields missing from the schema"
    );
    assert_eq!(
        schema_fields.difference(&rust_fields).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "schema fields missing from the Rust type"
    );

    // LineItem.
    let Schema::Array(items) = field_schema(schema, "items") else {
        panic!("items is not an array")
    };
    let item_fields: BTreeSet<String> = record_fields(&items.items).into_iter().collect();
    let rust_item: BTreeSet<String> = json_keys(&serde_json::to_value(&event.items[0]).unwrap())
        .into_iter()
        .collect();
    assert_eq!(item_fields, rust_item);

    // EventType symbols, both ways and in order.
    let Schema::Enum(e) = field_schema(schema, "event_type") else {
        panic!("event_type is not an enum")
    };
    let rust_symbols: Vec<&str> = EventType::ALL.iter().map(|t| t.symbol()).collect();
    assert_eq!(e.symbols, rust_symbols);
    for t in EventType::ALL {
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!(t.symbol())
        );
    }

    // Every field populated (options Some) validates against the schema (generic Value path).
    let value = apache_avro::to_value(&event).unwrap();
    assert!(
        value.validate(schema),
        "a fully populated event does not validate: {value:?}"
    );
    // ... and with options None.
    let sparse = OrderEvent {
        note: None,
        channel: None,
        items: vec![],
        ..event
    };
    assert!(apache_avro::to_value(&sparse).unwrap().validate(schema));
}

#[test]
fn every_version_parses_and_is_full_transitive() {
    assert!(versions().len() >= 2);
    for (i, v) in versions().iter().enumerate() {
        assert_eq!(
            v.version as usize,
            i + 1,
            "versions must be dense and ordered"
        );
        let s = v.parse().unwrap_or_else(|e| panic!("{}: {e}", v.path));
        let Schema::Record(r) = &s else {
            panic!("{} is not a record", v.path)
        };
        assert_eq!(r.name.fullname(None), ORDER_EVENT_FULL_NAME, "{}", v.path);
    }
    for mode in Mode::ALL {
        let report = compat::check_versions(mode);
        assert!(report.is_ok(), "{report}");
    }
    let report = compat::check_versions(Mode::FullTransitive);
    println!("{report}");
    assert_eq!(
        report.rows.len(),
        versions().len() * (versions().len() - 1) / 2
    );
}

#[test]
fn compat_check_finds_violations() {
    let v1 =
        Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#)
            .unwrap();
    let v2 = Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#).unwrap();
    // Adding a field without default: forward ok, backward not.
    assert!(compat::check(&[v1.clone(), v2.clone()], Mode::Forward).is_empty());
    let bw = compat::check(&[v1.clone(), v2.clone()], Mode::Backward);
    assert_eq!(bw.len(), 1);
    assert_eq!(bw[0].direction, compat::Direction::NewReadsOld);
    assert_eq!(
        compat::check(&[v1.clone(), v2.clone()], Mode::Full).len(),
        1
    );
    assert!(compat::check(&[v1, v2], Mode::None).is_empty());
    // Enum symbol added, reader without default: partial = incompatible.
    let e1 = Schema::parse_str(r#"{"type":"enum","name":"E","symbols":["A","B"]}"#).unwrap();
    let e2 = Schema::parse_str(r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#).unwrap();
    assert!(compat::compatible(&e1, &e2).is_ok());
    let why = compat::compatible(&e2, &e1).unwrap_err();
    assert!(
        why.contains("writer symbol C") && why.contains("[rule enum-symbol:"),
        "{why}"
    );
}

#[test]
fn mode_names_round_trip() {
    for m in Mode::ALL {
        assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
    }
    assert_eq!(
        "full-transitive".parse::<Mode>().unwrap(),
        Mode::FullTransitive
    );
    assert!("SIDEWAYS".parse::<Mode>().is_err());
}

#[test]
fn subject_strategies() {
    use orderstream_schema::SubjectStrategy as S;
    assert_eq!(S::default().subject("orders"), "orders-value");
    assert_eq!(
        S::RecordName.subject("orders"),
        "io.orderstream.orders.OrderEvent"
    );
    assert_eq!(
        S::TopicRecordName.subject("orders"),
        "orders-io.orderstream.orders.OrderEvent"
    );
    assert_eq!("record-name".parse::<S>().unwrap(), S::RecordName);
}

#[test]
fn config_validation() {
    assert!(RegistryConfig::default().validate().is_ok());
    for url in ["", "ftp://x", "http://x/"] {
        let cfg = RegistryConfig {
            url: url.into(),
            ..RegistryConfig::default()
        };
        assert!(cfg.validate().is_err(), "{url:?} accepted");
    }
    let cfg = RegistryConfig {
        request_timeout: std::time::Duration::ZERO,
        ..RegistryConfig::default()
    };
    assert!(cfg.validate().is_err());
}

/// Golden bytes: the exact Confluent wire format of `OrderEvent::example()` with schema id 42.
/// If this fails, the wire format changed: that breaks every consumer in the field.
#[test]
fn golden_wire_bytes() {
    // Hand-checked: header 00 0000002a | 48 (len 36) uuid text | 18 "order-000042" |
    // 12 "cust-0007" | 06 (sequence 3) | 04 (enum index 2 = PAID) | f2c001 (12345) | 06 "EUR" |
    // 04 (2 items) 0a "SKU-1" 04 c03e, 0c "SKU-22" 02 f243 | 00 (end of array) |
    // 808082e288d2a306 (timestamp) | 02 08 "gift" (union branch 1) | 02 06 "web".
    const GOLDEN: &str = concat!(
        "000000002a",
        "48",
        "3366316332613965",
        "2d386237642d346536662d396130312d323334353637383961626364",
        "18",
        "6f726465722d303030303432",
        "12",
        "637573742d30303037",
        "06",
        "04",
        "f2c001",
        "06",
        "455552",
        "04",
        "0a",
        "534b552d31",
        "04",
        "c03e",
        "0c",
        "534b552d3232",
        "02",
        "f243",
        "00",
        "808082e288d2a306",
        "02",
        "08",
        "67696674",
        "02",
        "06",
        "776562",
    );
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    let mut out = Vec::new();
    codec
        .encode_with_cached_id(42, &OrderEvent::example(), &mut out)
        .unwrap();
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    // Print it so a deliberate change can be pasted back here.
    println!("{hex}");
    assert_eq!(hex, GOLDEN, "wire bytes changed");
    assert_eq!(&out[..5], &[0, 0, 0, 0, 42]);
    // Decoding the golden bytes gives the example back.
    codec
        .insert_writer_schema(42, types_version().text)
        .unwrap();
    let decoded = codec.try_decode_cached(&out).unwrap().unwrap();
    assert_eq!(decoded.event, OrderEvent::example());
    assert_eq!(decoded.schema_id, 42);
}

/// The schema-aware serde fast path writes exactly what the generic Value path writes.
#[test]
fn fast_path_equals_value_path() {
    let event = OrderEvent::example();
    let fast = encode_body(&event).unwrap();
    let value = apache_avro::to_value(&event).unwrap();
    let slow = GenericDatumWriter::builder(types_schema())
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    assert_eq!(fast, slow);
}

fn v1_value(event: &OrderEvent) -> Value {
    let items = event
        .items
        .iter()
        .map(|i| {
            Value::Record(vec![
                ("sku".into(), Value::String(i.sku.clone())),
                ("quantity".into(), Value::Int(i.quantity)),
                ("unit_price_minor".into(), Value::Long(i.unit_price_minor)),
            ])
        })
        .collect();
    let idx = EventType::ALL
        .iter()
        .position(|t| *t == event.event_type)
        .unwrap() as u32;
    Value::Record(vec![
        (
            "event_id".into(),
            Value::Uuid(event.event_id.parse().unwrap()),
        ),
        ("order_id".into(), Value::String(event.order_id.clone())),
        (
            "customer_id".into(),
            Value::String(event.customer_id.clone()),
        ),
        ("sequence".into(), Value::Long(event.sequence)),
        (
            "event_type".into(),
            Value::Enum(idx, event.event_type.symbol().into()),
        ),
        ("amount_minor".into(), Value::Long(event.amount_minor)),
        ("currency".into(), Value::String(event.currency.clone())),
        ("items".into(), Value::Array(items)),
        (
            "occurred_at_micros".into(),
            Value::TimestampMicros(event.occurred_at_micros),
        ),
    ])
}

/// Data written by a v1 producer decodes (resolving path) with the new fields defaulted.
#[test]
fn old_writer_versions_resolve_to_the_types() {
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    for v in versions() {
        codec.insert_writer_schema(v.version, v.text).unwrap();
    }
    let v1 = &parsed_versions()[0];
    let event = OrderEvent {
        note: None,
        channel: None,
        ..OrderEvent::example()
    };
    let body = GenericDatumWriter::builder(v1)
        .build()
        .unwrap()
        .write_value_to_vec(v1_value(&event))
        .unwrap();
    let mut framed = Vec::new();
    wire::write_header(1, &mut framed);
    framed.extend_from_slice(&body);
    let decoded = codec.try_decode_cached(&framed).unwrap().unwrap();
    assert_eq!(decoded.event, event);
    // And bytes of the types' version decode through the fast path under any id bound to it.
    let mut out = Vec::new();
    codec
        .encode_with_cached_id(3, &OrderEvent::example(), &mut out)
        .unwrap();
    assert_eq!(
        codec.try_decode_cached(&out).unwrap().unwrap().event,
        OrderEvent::example()
    );
    // A v1 reader can read v3 data (forward): old consumers keep working.
    let (_, body) = wire::split(&out).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(types_schema())
        .reader_schema(v1)
        .build()
        .unwrap();
    let old_view = reader.read_value(&mut &body[..]).unwrap();
    assert_eq!(old_view, v1_value(&OrderEvent::example()));
}

#[test]
fn encode_rejects_bad_event_ids() {
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    for bad in [
        "",
        "not-a-uuid",
        "3F1C2A9E-8B7D-4E6F-9A01-23456789ABCD",
        "3f1c2a9e8b7d4e6f9a0123456789abcd",
    ] {
        let mut out = vec![9];
        let e = OrderEvent {
            event_id: bad.into(),
            ..OrderEvent::example()
        };
        let err = codec.encode_with_cached_id(1, &e, &mut out).unwrap_err();
        assert_eq!(err.class(), "encode");
        assert_eq!(out, vec![9], "output must be untouched on error");
    }
}

#[test]
fn malformed_bodies_are_undecodable_not_panics() {
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    codec.insert_writer_schema(7, types_version().text).unwrap();
    let mut good = Vec::new();
    codec
        .encode_with_cached_id(7, &OrderEvent::example(), &mut good)
        .unwrap();
    // Every truncation and a trailing byte.
    for cut in 5..good.len() {
        let r = codec.try_decode_cached(&good[..cut]).unwrap();
        assert_eq!(r.unwrap_err().class(), "undecodable", "cut at {cut}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        codec
            .try_decode_cached(&longer)
            .unwrap()
            .unwrap_err()
            .class(),
        "undecodable"
    );
    // Garbage.
    let garbage = [
        0u8, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert_eq!(
        codec
            .try_decode_cached(&garbage)
            .unwrap()
            .unwrap_err()
            .class(),
        "undecodable"
    );
    // Framing errors.
    assert_eq!(
        codec.try_decode_cached(&[]).unwrap().unwrap_err().class(),
        "empty"
    );
    assert_eq!(
        codec
            .try_decode_cached(&[1, 2, 3, 4, 5])
            .unwrap()
            .unwrap_err()
            .class(),
        "bad_magic"
    );
    assert_eq!(
        codec
            .try_decode_cached(&[0, 1])
            .unwrap()
            .unwrap_err()
            .class(),
        "truncated"
    );
    // Unknown id: not cached -> None (the async path would ask the registry).
    assert!(codec.try_decode_cached(&[0, 0, 0, 0, 99, 1]).is_none());
}

/// With no registry listening, encode and decode fail retriably and cache nothing.
#[tokio::test]
async fn registry_down_is_retriable() {
    let codec = OrderCodec::new(RegistryConfig {
        url: "http://127.0.0.1:9".into(), // discard port: connection refused
        request_timeout: std::time::Duration::from_secs(2),
        ..RegistryConfig::default()
    })
    .unwrap();
    let err = codec
        .encode("orders", &OrderEvent::example())
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert_eq!(err.class(), "registry_unavailable");
    let err = codec.decode(&[0, 0, 0, 0, 5, 0]).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert_eq!(err.schema_id(), Some(5));
    assert!(matches!(
        err,
        CodecError::Registry {
            retriable: true,
            ..
        }
    ));
    // Within a second of the failure, queued callers fail fast without asking again.
    let err = codec.decode(&[0, 0, 0, 0, 6, 0]).await.unwrap_err();
    assert!(
        err.is_retriable() && err.to_string().contains("not asked again yet"),
        "{err}"
    );
    // Nothing was cached: after the back-off the registry is asked again (and fails again).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let err = codec
        .encode("orders", &OrderEvent::example())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("not asked again yet"), "{err}");
    assert!(
        codec
            .encode("orders", &OrderEvent::example())
            .await
            .unwrap_err()
            .is_retriable()
    );
}

fn arb_event() -> impl Strategy<Value = OrderEvent> {
    let item = ("[A-Z0-9-]{0,12}", any::<i32>(), any::<i64>()).prop_map(
        |(sku, quantity, unit_price_minor)| LineItem {
            sku,
            quantity,
            unit_price_minor,
        },
    );
    (
        any::<u128>(),
        ".{0,20}",
        ".{0,20}",
        any::<i64>(),
        proptest::sample::select(EventType::ALL.to_vec()),
        any::<i64>(),
        "[A-Z]{3}",
        proptest::collection::vec(item, 0..5),
        any::<i64>(),
        proptest::option::of(".{0,30}"),
        proptest::option::of("[a-z]{0,8}"),
    )
        .prop_map(
            |(
                id,
                order_id,
                customer_id,
                sequence,
                event_type,
                amount_minor,
                currency,
                items,
                ts,
                note,
                channel,
            )| OrderEvent {
                event_id: uuid::Uuid::from_u128(id).to_string(),
                order_id,
                customer_id,
                sequence,
                event_type,
                amount_minor,
                currency,
                items,
                occurred_at_micros: ts,
                note,
                channel,
            },
        )
}

proptest! {
    #[test]
    fn prop_round_trip(event in arb_event(), id in any::<u32>()) {
        let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
        codec.insert_writer_schema(id, types_version().text).unwrap();
        let mut out = Vec::new();
        codec.encode_with_cached_id(id, &event, &mut out).unwrap();
        let decoded = codec.try_decode_cached(&out).unwrap().unwrap();
        prop_assert_eq!(decoded.schema_id, id);
        prop_assert_eq!(&decoded.event, &event);
        // The fast path and the resolving path agree.
        let value = apache_avro::to_value(&event).unwrap();
        let slow = GenericDatumWriter::builder(types_schema()).build().unwrap().write_value_to_vec(value).unwrap();
        prop_assert_eq!(&out[5..], &slow[..]);
        // apache-avro's own schema-aware reader reads our bytes back to the same event.
        let oracle: OrderEvent = apache_avro::reader::datum::GenericDatumReader::builder(types_schema())
            .build().unwrap().read_deser(&mut &out[5..]).unwrap();
        prop_assert_eq!(&oracle, &event);
    }

    /// `decode_into` with one reused buffer across events of different shapes (more/fewer
    /// items, options set/unset) equals a fresh decode every time.
    #[test]
    fn prop_decode_into_reuses_buffers(events in proptest::collection::vec(arb_event(), 1..8)) {
        let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
        codec.insert_writer_schema(5, types_version().text).unwrap();
        let mut reused = OrderEvent::default();
        for event in &events {
            let mut out = Vec::new();
            codec.encode_with_cached_id(5, event, &mut out).unwrap();
            let id = codec.try_decode_cached_into(&out, &mut reused).unwrap().unwrap();
            prop_assert_eq!(id, 5);
            prop_assert_eq!(&reused, event);
            // Every truncation fails cleanly.
            for cut in [6, out.len() / 2, out.len() - 1] {
                let r = codec.try_decode_cached_into(&out[..cut], &mut reused).unwrap();
                prop_assert_eq!(r.unwrap_err().class(), "undecodable");
            }
        }
    }

    #[test]
    fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
        codec.insert_writer_schema(1, versions()[0].text).unwrap();
        codec.insert_writer_schema(3, types_version().text).unwrap();
        for id in [1u8, 3] {
            let mut framed = vec![0, 0, 0, 0, id];
            framed.extend_from_slice(&bytes);
            let _ = codec.try_decode_cached(&framed);
            let mut reused = OrderEvent::example();
            let _ = codec.try_decode_cached_into(&framed, &mut reused);
        }
    }
}

/// Every version in schemas/, older or newer than the one the types follow, resolves into the
/// types: a compatible new file needs no code change for consumers to read its data.
#[test]
fn every_embedded_version_resolves_into_the_types() {
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    for (v, schema) in versions().iter().zip(parsed_versions()) {
        compat::compatible(schema, types_schema())
            .unwrap_or_else(|why| panic!("v{} cannot be read by the types: {why}", v.version));
        codec
            .insert_writer_schema(100 + v.version, v.text)
            .unwrap_or_else(|e| panic!("v{}: {e}", v.version));
    }
    assert_eq!(types_version().version, orderstream_schema::TYPES_VERSION);
}
