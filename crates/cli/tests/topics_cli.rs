//! `orderstream topics apply|diff` against the real cluster: idempotent apply, drift reported
//! with exit 3, configs fixed by `--fix`, partition counts never changed silently.

mod support;

use std::time::Duration;

use orderstream_testkit::TestEnv;
use rdkafka::admin::{AdminOptions, AlterConfig, NewPartitions, ResourceSpecifier};
use support::{orderstream, text};

/// Runs `args` until it exits with `code` or 30 s pass; returns the last run. Brokers apply the
/// controller's metadata asynchronously and each command may ask a different broker, so a
/// change (ours or one behind the layout's back) is seen everywhere only a moment later.
async fn until_exit(env: &TestEnv, code: i32, args: &[&str]) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = orderstream(env, args);
        if out.status.code() == Some(code) || std::time::Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn until_drift(env: &TestEnv, args: &[&str]) -> std::process::Output {
    until_exit(env, 3, args).await
}

/// Waits until every broker a command may ask reports the layout in sync (`topics diff` exits 0).
async fn until_in_sync(env: &TestEnv, layout: &str) {
    let out = until_exit(env, 0, &["--topology", layout, "topics", "diff"]).await;
    assert!(
        out.status.success(),
        "layout never in sync: {:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_drift_is_reported_not_hidden() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("topics-cli");
    let layout = layout.to_str().expect("utf-8 path");

    let first = orderstream(&env, &["--topology", layout, "topics", "apply"]);
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}\n{err}");
    let roles = orderstream_topology::TopicRole::ALL.len();
    assert_eq!(out.matches("Created").count(), roles, "{out}");
    until_in_sync(&env, layout).await;

    let second = orderstream(&env, &["--topology", layout, "topics", "apply"]);
    let (out, err) = text(&second);
    assert!(second.status.success(), "{out}\n{err}");
    assert_eq!(
        out.matches("Unchanged").count(),
        roles,
        "second apply changes nothing: {out}"
    );

    // Drift a managed config behind the layout's back.
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&names.retry)).set("retention.ms", "1234567");
    env.admin()
        .alter_configs([&alter], &opts)
        .await
        .expect("alter");
    // Brokers apply the controller's config change asynchronously: poll until one reports it.
    let diff = until_drift(&env, &["--topology", layout, "topics", "diff"]).await;
    let (out, err) = text(&diff);
    assert_eq!(diff.status.code(), Some(3), "drift exits 3: {out}\n{err}");
    assert!(
        out.contains("retention.ms: layout 604800000, live 1234567"),
        "{out}"
    );

    let fix = orderstream(&env, &["--topology", layout, "topics", "apply", "--fix"]);
    let (out, err) = text(&fix);
    assert!(fix.status.success(), "{out}\n{err}");
    until_in_sync(&env, layout).await;

    // More partitions than declared: reported, refused to shrink, never "fixed".
    env.admin()
        .create_partitions([&NewPartitions::new(&names.orders, 8)], &opts)
        .await
        .expect("add partitions");
    let drift = until_drift(&env, &["--topology", layout, "topics", "apply", "--fix"]).await;
    let (out, err) = text(&drift);
    assert_eq!(drift.status.code(), Some(3), "{out}\n{err}");
    assert!(
        out.contains("partitions: layout 6, live 8 (refusing to shrink"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_layout_and_live_state() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("topics-describe");
    let layout = layout.to_str().expect("utf-8 path");
    assert!(
        orderstream(&env, &["--topology", layout, "topics", "apply"])
            .status
            .success()
    );
    until_in_sync(&env, layout).await;
    let out = orderstream(&env, &["--topology", layout, "topics", "describe"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let rf = env.replication_factor().to_string();
    let row = stdout
        .lines()
        .find(|l| l.contains(&names.dead_letter))
        .expect("dead-letter row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2..5], ["6", "6", rf.as_str()], "{row}");
}
