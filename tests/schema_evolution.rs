//! The schema-evolution matrix, against the real registry and the real cluster.
//!
//! For every case (a change from an "old" to a "new" version of a small record) and every mode
//! (BACKWARD, FORWARD, FULL) three verdicts are compared with the Avro specification's
//! resolution rules, which the table encodes per case as two facts:
//! * `new_reads_old`: data written with the old schema resolves with the new schema as reader
//!   (needed by BACKWARD: upgrade consumers first);
//! * `old_reads_new`: data written with the new schema resolves with the old schema as reader
//!   (needed by FORWARD: upgrade producers first). FULL needs both.
//!
//! The three verdicts:
//! 1. offline: `orderstream_schema::compat::check` (what `orderstream schemas check` runs);
//! 2. registry: a fresh subject per case × mode, compatibility level set, old registered, new
//!    tested (`POST /compatibility/...`) and then registered (HTTP 409 expected when refused);
//! 3. actual: a record written with the writer schema, framed in the Confluent wire format
//!    (schema id from the registry), produced to Kafka, consumed, its writer schema fetched by
//!    id from the registry, and decoded with the reader schema through the product's resolving
//!    reader (`orderstream_schema::resolve`, what `OrderCodec` runs for every writer version
//!    other than the one its types follow), in both directions.
//!
//! The order-event schema itself is exercised the same way, with an independent writer, in
//! tests/schema_interop.rs (Python's AvroSerializer registering its own newer versions).
//!
//! A verdict that differs from the spec fails the test unless the case's row documents it as a
//! known deviation (`known`), which is printed as a FINDING. A registry/offline disagreement is
//! always printed as a FINDING.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use orderstream_schema::compat::{self, Mode};
use orderstream_schema::registry_admin::{AdminError, RegistryAdmin};
use orderstream_schema::{resolve, wire};
use orderstream_testkit::TestEnv;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;

/// Which verdict source a known deviation concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Offline,
    Registry,
    /// Actual decode (the product's resolving reader) in the direction the mode needs.
    Actual,
}

/// A documented deviation from the Avro spec: (source, mode or None for all modes, why).
type Known = (Source, Option<Mode>, &'static str);

struct Case {
    name: &'static str,
    /// Extra fields (JSON) of the old and new record, after a fixed `id: long`.
    old_fields: &'static str,
    new_fields: &'static str,
    /// Values (JSON object, merged with `id`) written with the old / new schema. Chosen to hit
    /// the difference (e.g. the new enum symbol, the new union branch).
    old_value: &'static str,
    new_value: &'static str,
    /// The Avro specification's verdicts.
    new_reads_old: bool,
    old_reads_new: bool,
    known: &'static [Known],
}

const RENAME_ALIAS_NOTE: &str = "apache-avro 0.22's resolving reader ignores reader field aliases \
     (types.rs resolve_record looks fields up by name only), so data written before a rename \
     does not decode in Rust although the spec and both checkers say it does";

const NARROWING_NOTE: &str = "apache-avro 0.22's resolving reader narrows a written long to a \
     reader int when the value fits (types.rs resolve_int accepts Value::Long in i32 range); \
     the spec has no long -> int resolution, so the same bytes fail in Java. Both checkers \
     correctly refuse the change; only the Rust reader is lenient";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "add field with default",
            old_fields: "",
            new_fields: r#"{"name":"x","type":"int","default":7}"#,
            old_value: "{}",
            new_value: r#"{"x":42}"#,
            new_reads_old: true,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "add field without default",
            old_fields: "",
            new_fields: r#"{"name":"x","type":"int"}"#,
            old_value: "{}",
            new_value: r#"{"x":42}"#,
            new_reads_old: false,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "remove field with default",
            old_fields: r#"{"name":"x","type":"int","default":7}"#,
            new_fields: "",
            old_value: r#"{"x":42}"#,
            new_value: "{}",
            new_reads_old: true,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "remove field without default",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: "",
            old_value: r#"{"x":42}"#,
            new_value: "{}",
            new_reads_old: true,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "rename with alias",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: r#"{"name":"y","type":"int","aliases":["x"]}"#,
            old_value: r#"{"x":42}"#,
            new_value: r#"{"y":42}"#,
            new_reads_old: true,
            old_reads_new: false,
            known: &[(Source::Actual, None, RENAME_ALIAS_NOTE)],
        },
        Case {
            name: "rename without alias",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: r#"{"name":"y","type":"int"}"#,
            old_value: r#"{"x":42}"#,
            new_value: r#"{"y":42}"#,
            new_reads_old: false,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "int -> long promotion",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: r#"{"name":"x","type":"long"}"#,
            old_value: r#"{"x":42}"#,
            // Beyond i32: an old (int) reader cannot hold it.
            new_value: r#"{"x":5000000000}"#,
            new_reads_old: true,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "int -> long, long value fits an int",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: r#"{"name":"x","type":"long"}"#,
            old_value: r#"{"x":42}"#,
            new_value: r#"{"x":42}"#,
            new_reads_old: true,
            old_reads_new: false,
            known: &[
                (Source::Actual, Some(Mode::Forward), NARROWING_NOTE),
                (Source::Actual, Some(Mode::Full), NARROWING_NOTE),
            ],
        },
        Case {
            name: "string -> bytes",
            old_fields: r#"{"name":"x","type":"string"}"#,
            new_fields: r#"{"name":"x","type":"bytes"}"#,
            old_value: r#"{"x":"hello"}"#,
            new_value: r#"{"x":"hello"}"#,
            new_reads_old: true,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "incompatible type change (int -> string)",
            old_fields: r#"{"name":"x","type":"int"}"#,
            new_fields: r#"{"name":"x","type":"string"}"#,
            old_value: r#"{"x":42}"#,
            new_value: r#"{"x":"42"}"#,
            new_reads_old: false,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "add enum symbol, enum has default",
            old_fields: r#"{"name":"x","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN"],"default":"RED"}}"#,
            new_fields: r#"{"name":"x","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN","BLUE"],"default":"RED"}}"#,
            old_value: r#"{"x":"GREEN"}"#,
            new_value: r#"{"x":"BLUE"}"#,
            new_reads_old: true,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "add enum symbol, no enum default",
            old_fields: r#"{"name":"x","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN"]}}"#,
            new_fields: r#"{"name":"x","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN","BLUE"]}}"#,
            old_value: r#"{"x":"GREEN"}"#,
            new_value: r#"{"x":"BLUE"}"#,
            new_reads_old: true,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "widen a union",
            old_fields: r#"{"name":"x","type":["null","string"],"default":null}"#,
            new_fields: r#"{"name":"x","type":["null","string","int"],"default":null}"#,
            old_value: r#"{"x":"s"}"#,
            new_value: r#"{"x":5}"#,
            new_reads_old: true,
            old_reads_new: false,
            known: &[],
        },
        Case {
            name: "nested record: add field with default",
            old_fields: r#"{"name":"x","type":{"type":"record","name":"Inner","fields":[{"name":"a","type":"int"}]}}"#,
            new_fields: r#"{"name":"x","type":{"type":"record","name":"Inner","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"z"}]}}"#,
            old_value: r#"{"x":{"a":1}}"#,
            new_value: r#"{"x":{"a":1,"b":"q"}}"#,
            new_reads_old: true,
            old_reads_new: true,
            known: &[],
        },
        Case {
            name: "nested record: add field without default",
            old_fields: r#"{"name":"x","type":{"type":"record","name":"Inner","fields":[{"name":"a","type":"int"}]}}"#,
            new_fields: r#"{"name":"x","type":{"type":"record","name":"Inner","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}}"#,
            old_value: r#"{"x":{"a":1}}"#,
            new_value: r#"{"x":{"a":1,"b":"q"}}"#,
            new_reads_old: false,
            old_reads_new: true,
            known: &[],
        },
    ]
}

const MODES: [Mode; 3] = [Mode::Backward, Mode::Forward, Mode::Full];

fn schema_text(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(
        r#"{{"type":"record","name":"Probe","namespace":"io.orderstream.evo","fields":[{{"name":"id","type":"long"}}{sep}{extra}]}}"#
    )
}

fn spec_verdict(c: &Case, mode: Mode) -> bool {
    (!mode.checks_backward() || c.new_reads_old) && (!mode.checks_forward() || c.old_reads_new)
}

fn known(c: &Case, source: Source, mode: Mode) -> Option<&'static str> {
    c.known
        .iter()
        .find(|(s, m, _)| *s == source && m.is_none_or(|m| m == mode))
        .map(|(_, _, why)| *why)
}

/// Writes `value_json` (+ `id`) with `schema` as an Avro body.
fn write_body(schema: &Schema, id: i64, value_json: &str) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_str(value_json).unwrap();
    json.as_object_mut()
        .unwrap()
        .insert("id".into(), serde_json::json!(id));
    let value = Value::try_from(json).unwrap().resolve(schema).unwrap();
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

/// Decodes a framed message: writer schema fetched by id from the registry, resolved to
/// `reader`. Returns the resolved value or the error text.
async fn decode_framed(
    admin: &RegistryAdmin,
    bytes: &[u8],
    reader: &Schema,
) -> Result<Value, String> {
    let (id, body) = wire::split(bytes).map_err(|e| e.to_string())?;
    let writer_text = admin.schema_by_id(id).await.map_err(|e| e.to_string())?;
    let writer = Schema::parse_str(&writer_text).map_err(|e| e.to_string())?;
    // The product's resolving reader: what OrderCodec runs for every writer version other than
    // the one its types follow.
    resolve::read_resolved(&writer, reader, body).map_err(|e| e.to_string())
}

fn mark(b: bool) -> &'static str {
    if b { "ok" } else { "NO" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolution_matrix() {
    let env = TestEnv::connect().await;
    let admin = RegistryAdmin::new(&env.registry_url, Duration::from_secs(10)).unwrap();
    let cases = cases();

    // --- actual behaviour, through Kafka: both directions per case --------------------------
    let topic = env.unique("schema-evolution");
    env.create_topic(&topic, 1).await;
    let producer = env.producer();
    // (case index, "new_reads_old" | "old_reads_new") -> framed bytes as sent
    let mut sent: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut behaviour_subjects = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let old_text = schema_text(c.old_fields);
        let new_text = schema_text(c.new_fields);
        let old = Schema::parse_str(&old_text).unwrap();
        let new = Schema::parse_str(&new_text).unwrap();
        // A subject with compatibility NONE holds both versions, so both have ids.
        let subject = env.unique(&format!("evo-behaviour-{i}"));
        admin.set_compatibility(&subject, Mode::None).await.unwrap();
        let old_id = admin.register(&subject, &old_text).await.unwrap();
        let new_id = admin.register(&subject, &new_text).await.unwrap();
        for (direction, writer, id, value) in [
            ("new_reads_old", &old, old_id, c.old_value),
            ("old_reads_new", &new, new_id, c.new_value),
        ] {
            let mut framed = Vec::new();
            wire::write_header(id, &mut framed);
            framed.extend_from_slice(&write_body(writer, i as i64, value));
            let key = format!("{i}/{direction}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&framed),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            sent.insert(key, framed);
        }
        // Deleted only at the end: a permanently deleted subject takes its ids with it.
        behaviour_subjects.push(subject);
    }
    let received = env.read_all(&topic, Duration::from_secs(60)).await;
    assert_eq!(received.len(), sent.len(), "every framed record comes back");
    // (case index, direction) -> actual outcome
    let mut actual: BTreeMap<String, Result<Value, String>> = BTreeMap::new();
    for m in &received {
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let payload = m.payload().unwrap();
        assert_eq!(payload, &sent[&key][..], "bytes survive Kafka unchanged");
        let (i, direction) = key.split_once('/').unwrap();
        let c = &cases[i.parse::<usize>().unwrap()];
        let reader_text = if direction == "new_reads_old" {
            schema_text(c.new_fields)
        } else {
            schema_text(c.old_fields)
        };
        let reader = Schema::parse_str(&reader_text).unwrap();
        actual.insert(key, decode_framed(&admin, payload, &reader).await);
    }

    // --- offline + registry verdicts per case × mode -----------------------------------------
    let mut table = String::new();
    let mut findings = Vec::new();
    let mut failures = Vec::new();
    writeln!(
        table,
        "{:<42} {:<9} {:<6} {:<8} {:<9} {:<7} {:<7} note",
        "case", "mode", "spec", "offline", "registry", "409", "actual"
    )
    .unwrap();
    for (i, c) in cases.iter().enumerate() {
        let old_text = schema_text(c.old_fields);
        let new_text = schema_text(c.new_fields);
        let old = Schema::parse_str(&old_text).unwrap();
        let new = Schema::parse_str(&new_text).unwrap();
        for mode in MODES {
            let spec = spec_verdict(c, mode);
            let violations = compat::check(&[old.clone(), new.clone()], mode);
            let offline = violations.is_empty();

            let subject = env.unique(&format!("evo-{i}-{}", mode.as_str().to_lowercase()));
            admin.set_compatibility(&subject, mode).await.unwrap();
            assert_eq!(
                admin.get_compatibility(&subject).await.unwrap().as_deref(),
                Some(mode.as_str())
            );
            admin.register(&subject, &old_text).await.unwrap();
            let registry = admin.test_compatibility(&subject, &new_text).await.unwrap();
            // Registering must agree with the test: accepted, or refused with HTTP 409.
            let registered = match admin.register(&subject, &new_text).await {
                Ok(_) => "accept",
                Err(AdminError::Incompatible { .. }) => "409",
                Err(e) => panic!("register {subject}: unexpected {e}"),
            };
            admin.delete_subject(&subject).await.unwrap();

            let need_b = mode.checks_backward();
            let need_f = mode.checks_forward();
            let b = actual[&format!("{i}/new_reads_old")].is_ok();
            let f = actual[&format!("{i}/old_reads_new")].is_ok();
            let act = (!need_b || b) && (!need_f || f);

            let mut notes = Vec::new();
            for (source, got, label) in [
                (Source::Offline, offline, "offline"),
                (Source::Registry, registry, "registry"),
                (Source::Actual, act, "actual"),
            ] {
                if got != spec {
                    match known(c, source, mode) {
                        Some(why) => {
                            notes.push(format!("known {label} deviation"));
                            findings.push(format!(
                                "FINDING [{}, {mode}] {label} says {} but the spec says {}: {why}",
                                c.name,
                                mark(got),
                                mark(spec)
                            ));
                        }
                        None => failures.push(format!(
                            "[{}, {mode}] {label} says {} but the spec says {} (offline violations: {violations:?}; actual: new_reads_old={:?} old_reads_new={:?})",
                            c.name,
                            mark(got),
                            mark(spec),
                            actual[&format!("{i}/new_reads_old")],
                            actual[&format!("{i}/old_reads_new")],
                        )),
                    }
                }
            }
            if registry != offline {
                findings.push(format!(
                    "FINDING [{}, {mode}] registry ({}) and offline checker ({}) disagree",
                    c.name,
                    mark(registry),
                    mark(offline)
                ));
            }
            if (registered == "accept") != registry {
                failures.push(format!(
                    "[{}, {mode}] compatibility test said {} but registration gave {registered}",
                    c.name,
                    mark(registry)
                ));
            }
            writeln!(
                table,
                "{:<42} {:<9} {:<6} {:<8} {:<9} {:<7} {:<7} {}",
                c.name,
                mode.as_str(),
                mark(spec),
                mark(offline),
                mark(registry),
                registered,
                mark(act),
                notes.join("; ")
            )
            .unwrap();
        }
    }
    for subject in &behaviour_subjects {
        admin.delete_subject(subject).await.unwrap();
    }
    println!("\n{table}");
    println!("actual decode per direction (writer -> reader through Kafka, wire format):");
    for (key, outcome) in &actual {
        let (i, direction) = key.split_once('/').unwrap();
        let name = cases[i.parse::<usize>().unwrap()].name;
        match outcome {
            Ok(v) => println!("  {name:<42} {direction:<14} ok   {v:?}"),
            Err(e) => println!("  {name:<42} {direction:<14} FAIL {e}"),
        }
    }
    for f in &findings {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "verdicts disagree with the Avro spec:\n{}",
        failures.join("\n")
    );
}
