//! `orderstream schemas register` and `schemas check --registry` against the real registry:
//! a proposed version is judged by the registry as well as offline, before anything is
//! registered, and the subject keeps only what was registered.

mod support;

use orderstream_testkit::{TestEnv, repo_root};
use serde_json::{Value, json};
use support::{orderstream, text};

fn proposed(dir: &std::path::Path, name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let v3 = std::fs::read_to_string(repo_root().join("schemas/order_event.v3.avsc")).expect("v3");
    let mut s: Value = serde_json::from_str(&v3).expect("json");
    edit(&mut s);
    let path = dir.join(name);
    std::fs::write(&path, s.to_string()).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_judges_a_candidate_before_it_is_registered() {
    let env = TestEnv::connect().await;
    // A unique orders topic name, hence a unique subject (<topic>-value).
    let (layout, names) = env.topology_file("schemas-registry");
    let layout = layout.to_str().expect("utf-8");
    let subject = format!("{}-value", names.orders);
    let schemas = repo_root().join("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    let dir = std::env::temp_dir().join(env.unique("schemas-registry"));
    std::fs::create_dir_all(&dir).expect("mkdir");

    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "schemas",
            "register",
            "--schemas-dir",
            schemas,
            "--mode",
            "FULL_TRANSITIVE",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches(&subject).count(), 3, "{stdout}");

    let bad = proposed(&dir, "bad.avsc", |s| {
        for f in s["fields"].as_array_mut().expect("fields") {
            if f["name"] == "amount_minor" {
                f["type"] = json!("string");
            }
        }
    });
    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "schemas",
            "check",
            "--schemas-dir",
            schemas,
            "--mode",
            "FULL_TRANSITIVE",
            "--registry",
            "--candidate",
            &bad,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "subject {subject} (level FULL_TRANSITIVE, holds versions [1, 2, 3])"
        )),
        "{stdout}"
    );
    let registry_line = stdout
        .lines()
        .find(|l| l.contains("bad.avsc") && !l.contains("(candidate)"))
        .unwrap_or_else(|| panic!("no registry verdict for the candidate: {stdout}"));
    assert!(registry_line.contains("INCOMPATIBLE"), "{registry_line}");
    assert!(
        stdout.contains("field OrderEvent.amount_minor:"),
        "{stdout}"
    );

    let good = proposed(&dir, "good.avsc", |s| {
        s["fields"]
            .as_array_mut()
            .expect("fields")
            .push(json!({"name": "gift_message", "type": ["null", "string"], "default": null}));
    });
    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "schemas",
            "check",
            "--schemas-dir",
            schemas,
            "--mode",
            "FULL_TRANSITIVE",
            "--registry",
            "--candidate",
            &good,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let registry_line = stdout
        .lines()
        .find(|l| l.contains("good.avsc") && !l.contains("(candidate)"))
        .unwrap_or_else(|| panic!("no registry verdict for the candidate: {stdout}"));
    assert!(
        registry_line.trim_end().ends_with("compatible"),
        "{registry_line}"
    );

    // Checking registered nothing.
    let out = orderstream(&env, &["schemas", "list"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(&format!("{subject}: versions [1, 2, 3]")),
        "{stdout}"
    );
}
