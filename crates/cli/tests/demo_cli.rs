//! The README's first command, `orderstream demo`, against the running cluster (its own topic
//! names): it ends with the verdict it read from the store.

mod support;

use orderstream_testkit::TestEnv;
use support::{orderstream, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_checks_exactly_once_in_the_store() {
    let env = TestEnv::connect().await;
    let (layout, _) = env.topology_file("demo");
    let layout = layout.to_str().expect("utf-8");
    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "demo",
            "--events",
            "3000",
            "--rate",
            "0",
            "--members",
            "2",
            "--services",
            "2",
            "--timeout",
            "120",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "result: OK — every acknowledged event applied exactly once, checked in the store"
        ),
        "{stdout}"
    );
    let figure = |label: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` figure: {stdout}"))
    };
    assert_eq!(figure("events acknowledged by Kafka"), 3000);
    assert_eq!(figure("events in the store's inbox"), 3000);
    assert_eq!(figure("acknowledged but never applied (lost)"), 0);
    assert_eq!(figure("acknowledged and applied twice"), 0);
}
