//! Scenario 9, bad configuration and CLI input.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use orderstream_testkit::Spawned;

use super::support::blocking;
use super::{checker, finish, setup};

fn cli_binary() -> std::path::PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("orderstream")));
    let path = from_exe
        .filter(|p| p.exists())
        .unwrap_or_else(|| orderstream_testkit::repo_root().join("target/debug/orderstream"));
    assert!(
        path.exists(),
        "the orderstream binary is missing at {}: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Runs the CLI with a 60 s bound; returns (exit code, stdout, stderr).
async fn run_cli(args: Vec<String>, dir: std::path::PathBuf) -> (Option<i32>, String, String) {
    let bin = cli_binary();
    blocking(move || {
        let child = Spawned::start(
            format!("orderstream {args:?}"),
            Command::new(&bin)
                .args(&args)
                .current_dir(&dir)
                .env_remove("ORDERSTREAM_BOOTSTRAP")
                .env_remove("ORDERSTREAM_REGISTRY_URL")
                .env_remove("ORDERSTREAM_TOPOLOGY")
                .env_remove("ORDERSTREAM_CONFIG")
                .env_remove("ORDERSTREAM_PROFILE"),
        );
        let out = child.wait(Duration::from_secs(60));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s9_bad_configuration_and_cli_input() {
    let started = Instant::now();
    let (env, t) = setup("rel-s9").await;
    let dir = std::env::temp_dir().join(env.unique("rel-s9"));
    std::fs::create_dir_all(&dir).unwrap();
    // a layout naming this test's private topics
    let prefix = t
        .names
        .orders
        .strip_suffix("orders.events")
        .unwrap()
        .to_owned();
    let layout_text =
        std::fs::read_to_string(orderstream_testkit::repo_root().join("topology.toml"))
            .unwrap()
            .replace(
                "name = \"orders.events",
                &format!("name = \"{prefix}orders.events"),
            );
    let layout = dir.join("topology.toml");
    std::fs::write(&layout, layout_text).unwrap();
    let malformed = dir.join("malformed.toml");
    std::fs::write(&malformed, "[topics.orders\nname = \n").unwrap();
    let s = |v: &str| v.to_owned();
    let layout_s = layout.display().to_string();
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "wrong broker address",
            vec![
                s("--bootstrap"),
                s("127.0.0.1:1"),
                s("--registry-url"),
                env.registry_url.clone(),
                s("--topology"),
                layout_s.clone(),
                s("produce"),
                s("--count"),
                s("1"),
                s("--quiet"),
            ],
            vec![s("127.0.0.1:1")],
        ),
        (
            "wrong registry URL",
            vec![
                s("--bootstrap"),
                env.bootstrap.clone(),
                s("--registry-url"),
                s("http://127.0.0.1:1/apis/ccompat/v7"),
                s("--topology"),
                layout_s.clone(),
                s("produce"),
                s("--count"),
                s("1"),
                s("--quiet"),
            ],
            vec![s("registry")],
        ),
        (
            "malformed layout file",
            vec![
                s("--bootstrap"),
                env.bootstrap.clone(),
                s("--registry-url"),
                env.registry_url.clone(),
                s("--topology"),
                malformed.display().to_string(),
                s("produce"),
                s("--count"),
                s("1"),
                s("--quiet"),
            ],
            vec![s("malformed.toml")],
        ),
        (
            "unknown flag",
            vec![
                s("--bootstrap"),
                env.bootstrap.clone(),
                s("--topology"),
                layout_s.clone(),
                s("produce"),
                s("--count"),
                s("1"),
                s("--no-such-flag"),
            ],
            vec![s("--no-such-flag")],
        ),
    ];
    let mut rows = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, args, expect) in cases {
        let before: i64 = env.end_offsets(&t.names.orders).values().sum();
        let (code, stdout, stderr) = run_cli(args, dir.clone()).await;
        let after: i64 = env.end_offsets(&t.names.orders).values().sum();
        // the line that says what went wrong: the first `error` line, else the last line
        let first = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("error"))
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or_default()
            .to_owned();
        let on_stdout = expect
            .iter()
            .all(|e| stdout.to_lowercase().contains(&e.to_lowercase()));
        println!(
            "{name}: exit {code:?}; stderr: {}\nstdout: {}",
            stderr.trim(),
            stdout.trim()
        );
        let clear = expect
            .iter()
            .all(|e| stderr.to_lowercase().contains(&e.to_lowercase()))
            && !stderr.contains("panicked");
        if stderr.contains("unrecognized subcommand 'produce'") {
            failures.push(format!(
                "{name}: the orderstream binary has no `produce` command (rebuild it: cargo build --workspace)"
            ));
        }
        if code == Some(0) || code.is_none() {
            failures.push(format!("{name}: exit {code:?}, expected non-zero"));
        }
        if !clear {
            failures.push(format!(
                "{name}: stderr does not mention {expect:?} clearly: {stderr}"
            ));
        }
        if after != before {
            failures.push(format!("{name}: {} records produced", after - before));
        }
        rows.insert(
            name.to_owned(),
            serde_json::json!({"exit": code, "clear_message_on_stderr": clear, "mentioned_on_stdout": on_stdout, "produced": after - before, "message": first}),
        );
    }
    let f = checker::without_delivery("9 bad config / CLI input")
        .with("cases", serde_json::to_value(&rows).unwrap())
        .with("failures", failures.len());
    finish(f, started);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
}
