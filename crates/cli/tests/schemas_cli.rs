//! `orderstream schemas check|diff` judge the files on disk, offline: proposed versions of
//! several incompatible kinds dropped into a temp copy of schemas/ fail the check, which names
//! the field and the rule; a compatible one passes; files that cannot be versions are refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orderstream_testkit::repo_root;
use serde_json::{Value, json};
use support::text;

/// A fresh copy of schemas/ for one test.
fn schemas_copy(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("orderstream-schemas-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(repo_root().join("schemas")).expect("schemas/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

/// The latest checked-in version as JSON, to derive candidates from.
fn latest() -> Value {
    let dir = repo_root().join("schemas");
    let mut newest = (0u32, PathBuf::new());
    for entry in std::fs::read_dir(&dir).expect("schemas/") {
        let path = entry.expect("entry").path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("order_event.v"))
            .and_then(|n| n.strip_suffix(".avsc"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n > newest.0 {
            newest = (n, path);
        }
    }
    serde_json::from_str(&std::fs::read_to_string(newest.1).expect("read")).expect("json")
}

fn next_version(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("order_event.v"))
        })
        .count() as u32
        + 1
}

fn field<'a>(schema: &'a mut Value, name: &str) -> &'a mut Value {
    schema["fields"]
        .as_array_mut()
        .expect("fields")
        .iter_mut()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args(args)
        .arg("--schemas-dir")
        .arg(dir)
        .env_remove("ORDERSTREAM_CONFIG")
        .env_remove("ORDERSTREAM_SCHEMAS_DIR")
        .env_remove("ORDERSTREAM_COMPATIBILITY")
        .env("RUST_LOG", "error")
        .output()
        .expect("run orderstream")
}

/// Writes `candidate` as the next version in a copy of schemas/ and checks under `mode`.
fn check_candidate(test: &str, candidate: &Value, mode: &str) -> (Output, String) {
    let dir = schemas_copy(test);
    let n = next_version(&dir);
    let path = dir.join(format!("order_event.v{n}.avsc"));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(candidate).expect("json"),
    )
    .expect("write");
    let out = run(&dir, &["schemas", "check", "--mode", mode]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&path.display().to_string()),
        "the check must say it read {}: {stdout}",
        path.display()
    );
    (out, format!("v{n}"))
}

fn assert_incompatible(out: &Output, field_path: &str, rule: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("INCOMPATIBLE"), "{stdout}");
    assert!(stdout.contains("result: VIOLATIONS"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("field {field_path}:")))
        .unwrap_or_else(|| panic!("no finding names {field_path}: {stdout}"));
    assert!(line.contains(&format!("[rule {rule}:")), "{line}");
}

#[test]
fn checked_in_versions_pass_and_are_listed() {
    let dir = schemas_copy("clean");
    let out = run(&dir, &["schemas", "check", "--mode", "FULL_TRANSITIVE"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    assert!(stdout.contains("order_event.v1.avsc"), "{stdout}");
}

#[test]
fn added_field_without_default_fails_backward() {
    let mut s = latest();
    s["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "gift_message", "type": "string"}));
    let (out, _) = check_candidate("no-default", &s, "BACKWARD");
    assert_incompatible(&out, "OrderEvent.gift_message", "missing-default");
}

#[test]
fn changed_type_fails_naming_the_field() {
    let mut s = latest();
    field(&mut s, "amount_minor")["type"] = json!("string");
    let (out, _) = check_candidate("type", &s, "BACKWARD");
    assert_incompatible(&out, "OrderEvent.amount_minor", "type-mismatch");
}

#[test]
fn changed_nested_type_fails_with_its_path() {
    let mut s = latest();
    let items = field(&mut s, "items");
    let line_item = &mut items["type"]["items"];
    line_item["fields"][1]["type"] = json!("string");
    assert_eq!(line_item["fields"][1]["name"], "quantity");
    let (out, _) = check_candidate("nested", &s, "FORWARD");
    assert_incompatible(&out, "OrderEvent.items[].quantity", "type-mismatch");
}

#[test]
fn removed_enum_symbol_without_default_fails() {
    let mut s = latest();
    let e = &mut field(&mut s, "event_type")["type"];
    e.as_object_mut().expect("enum").remove("default");
    let symbols = e["symbols"].as_array_mut().expect("symbols");
    symbols.retain(|sym| sym != "CANCELLED");
    let (out, _) = check_candidate("enum", &s, "BACKWARD");
    assert_incompatible(&out, "OrderEvent.event_type", "enum-symbol");
}

#[test]
fn dropped_union_branch_fails() {
    let mut s = latest();
    let note = field(&mut s, "note");
    note["type"] = json!("string");
    note.as_object_mut().expect("field").remove("default");
    let (out, _) = check_candidate("union", &s, "BACKWARD");
    assert_incompatible(&out, "OrderEvent.note", "union-branch");
}

#[test]
fn renamed_record_without_alias_fails() {
    let mut s = latest();
    field(&mut s, "items")["type"]["items"]["name"] = json!("Item");
    let (out, _) = check_candidate("rename", &s, "BACKWARD");
    assert_incompatible(&out, "OrderEvent.items[]", "name-mismatch");
}

#[test]
fn removed_required_field_passes_backward_but_fails_forward() {
    let mut s = latest();
    s["fields"]
        .as_array_mut()
        .expect("fields")
        .retain(|f| f["name"] != "currency");
    let (out, _) = check_candidate("removed-bw", &s, "BACKWARD");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
    let (out, _) = check_candidate("removed-fw", &s, "FORWARD");
    assert_incompatible(&out, "OrderEvent.currency", "missing-default");
}

#[test]
fn compatible_candidate_passes_full_transitive_and_diff_shows_it() {
    let mut s = latest();
    s["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "gift_message", "type": ["null", "string"], "default": null}));
    field(&mut s, "event_type")["type"]["symbols"]
        .as_array_mut()
        .expect("symbols")
        .push(json!("RETURNED"));
    let (out, v) = check_candidate("compatible", &s, "FULL_TRANSITIVE");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "data written with {v} is read by schema resolution"
        )),
        "{stdout}"
    );

    let dir = std::env::temp_dir().join(format!(
        "orderstream-schemas-{}-compatible",
        std::process::id()
    ));
    let out = run(&dir, &["schemas", "diff"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("+ OrderEvent.gift_message: union [null, string], default null"),
        "{stdout}"
    );
    assert!(
        stdout.contains("~ OrderEvent.event_type: enum +[RETURNED]"),
        "{stdout}"
    );
}

#[test]
fn candidate_outside_the_directory_is_judged_as_the_next_version() {
    let dir = schemas_copy("candidate");
    let mut s = latest();
    field(&mut s, "amount_minor")["type"] = json!("int");
    let proposed = dir.join("proposed.avsc");
    std::fs::write(&proposed, s.to_string()).expect("write");
    let out = run(
        &dir,
        &[
            "schemas",
            "check",
            "--mode",
            "BACKWARD",
            "--candidate",
            proposed.to_str().expect("utf-8"),
        ],
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("(candidate)"), "{stdout}");
    assert_incompatible(&out, "OrderEvent.amount_minor", "type-mismatch");
}

fn assert_refused(out: &Output, needle: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

#[test]
fn unparseable_version_file_is_refused() {
    let dir = schemas_copy("unparseable");
    let n = next_version(&dir);
    let path = dir.join(format!("order_event.v{n}.avsc"));
    std::fs::write(
        &path,
        r#"{"type": "record", "name": "OrderEvent", "fields": [{"name": "x"}]}"#,
    )
    .expect("write");
    let out = run(&dir, &["schemas", "check"]);
    assert_refused(&out, "is not a valid Avro schema");
    assert!(text(&out).1.contains(&path.display().to_string()));
}

#[test]
fn gap_in_numbering_is_refused() {
    let dir = schemas_copy("gap");
    let n = next_version(&dir) + 1;
    std::fs::write(
        dir.join(format!("order_event.v{n}.avsc")),
        latest().to_string(),
    )
    .expect("write");
    assert_refused(
        &run(&dir, &["schemas", "check"]),
        &format!("v{} is missing", n - 1),
    );
}

#[test]
fn malformed_version_name_is_refused_not_skipped() {
    let dir = schemas_copy("name");
    std::fs::write(dir.join("order_event.v4-draft.avsc"), latest().to_string()).expect("write");
    assert_refused(
        &run(&dir, &["schemas", "check"]),
        "expected a file named order_event.v<N>.avsc",
    );
}

#[test]
fn missing_directory_is_refused() {
    assert_refused(
        &run(
            Path::new("/nonexistent/orderstream-schemas"),
            &["schemas", "check"],
        ),
        "no schemas directory",
    );
}
