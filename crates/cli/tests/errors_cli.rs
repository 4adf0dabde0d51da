//! The common mistakes give a clear message and a non-zero exit, and send nothing: unknown flag,
//! malformed settings, unreachable broker, wrong registry URL, malformed layout, unknown config
//! key, no Java, a port already taken.

mod support;

use std::process::{Command, Output};

use orderstream_testkit::{TestEnv, repo_root};
use support::{orderstream, text};

/// Runs the binary with no services configured (for mistakes caught before any connection).
fn offline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args(args)
        .env_remove("ORDERSTREAM_BOOTSTRAP")
        .env_remove("ORDERSTREAM_REGISTRY_URL")
        .env_remove("ORDERSTREAM_CONFIG")
        .env("RUST_LOG", "error")
        .output()
        .expect("run orderstream")
}

fn assert_fails(out: &Output, code: i32, needle: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "expected `{needle}` in stderr: {stderr}"
    );
}

fn temp_file(name: &str, body: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orderstream-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

/// A binary built without the `otlp` feature cannot export spans: the flag is a usage error, not
/// a silent no-op; the standard variable (which may be meant for other programs) only a warning.
#[cfg(not(feature = "otlp"))]
#[test]
fn an_otlp_endpoint_needs_the_otlp_feature() {
    let flag = ["--otlp-endpoint", "http://127.0.0.1:4318", "config", "show"];
    assert_fails(
        &offline(&flag),
        2,
        "exporting spans needs a build with the `otlp` feature",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args(["config", "show"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("RUST_LOG", "warn")
        .env_remove("ORDERSTREAM_CONFIG")
        .output()
        .expect("run orderstream");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 is ignored"),
        "{stderr}"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_fails(
        &offline(&["produce", "--cuont", "5"]),
        2,
        "unexpected argument '--cuont'",
    );
}

#[test]
fn a_typo_in_a_choice_is_refused_with_the_choices() {
    for (args, needle) in [
        (
            &["consume", "--ordering", "kye"][..],
            "[possible values: key, partition]",
        ),
        (
            &["consume", "--protocol", "kip848"][..],
            "[possible values: classic, consumer]",
        ),
        (
            &["produce", "--compression", "zstd"][..],
            "[possible values: lz4, none, gzip, snappy]",
        ),
        (
            &["schemas", "check", "--mode", "SIDEWAYS"][..],
            "FULL_TRANSITIVE",
        ),
    ] {
        assert_fails(&offline(args), 2, needle);
    }
}

#[test]
fn malformed_bootstrap_is_refused_before_connecting() {
    assert_fails(
        &offline(&["--bootstrap", "localhost", "topics", "diff"]),
        2,
        "bootstrap servers `localhost` must be a comma-separated list of host:port",
    );
}

#[test]
fn registry_url_without_scheme_is_refused() {
    assert_fails(
        &offline(&["--registry-url", "127.0.0.1:8081", "schemas", "list"]),
        2,
        "must start with http:// or https://",
    );
}

#[test]
fn unreachable_broker_says_how_to_start_it() {
    let out = offline(&["--bootstrap", "127.0.0.1:1", "topics", "diff"]);
    assert_fails(&out, 1, "Kafka is not reachable at 127.0.0.1:1");
    assert!(text(&out).1.contains("orderstream up"));
}

#[test]
fn unreachable_broker_fails_produce_within_its_startup_timeout() {
    let started = std::time::Instant::now();
    let out = offline(&[
        "--bootstrap",
        "127.0.0.1:1",
        "produce",
        "--count",
        "1",
        "--quiet",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start the producer"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn malformed_layout_file_is_named_in_the_error() {
    let bad = temp_file(
        "bad-topology.toml",
        "[topics.orders]\nname = \"x\"\npartitions = \"six\"\n",
    );
    let out = offline(&["--topology", bad.to_str().expect("utf-8"), "topics", "diff"]);
    assert_fails(&out, 2, "is malformed");
    assert!(text(&out).1.contains("bad-topology.toml"));
}

#[test]
fn unknown_config_key_is_refused() {
    let cfg = temp_file("orderstream.toml", "bootstrapp = \"127.0.0.1:9092\"\n");
    assert_fails(
        &offline(&["--config", cfg.to_str().expect("utf-8"), "config", "show"]),
        2,
        "unknown field `bootstrapp`",
    );
}

#[test]
fn config_show_masks_secrets_and_honours_precedence() {
    let cfg = temp_file(
        "precedence.toml",
        "bootstrap = \"file:1\"\nprofile = \"local\"\n[kafka]\n\"ssl.keystore.password\" = \"hunter2\"\n[security]\nprotocol = \"sasl_ssl\"\nmechanism = \"SCRAM-SHA-512\"\nusername = \"svc\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args([
            "--config",
            cfg.to_str().expect("utf-8"),
            "--profile",
            "cluster",
            "config",
            "show",
        ])
        .env("ORDERSTREAM_BOOTSTRAP", "env:2")
        .env("ORDERSTREAM_SASL_PASSWORD", "correct-horse-battery")
        .output()
        .expect("run");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("bootstrap = \"env:2\""),
        "env beats file: {stdout}"
    );
    assert!(
        stdout.contains("profile = \"cluster\""),
        "flag beats file: {stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && stdout.contains("******"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("correct-horse-battery")
            && stdout.contains("from environment variable ORDERSTREAM_SASL_PASSWORD"),
        "the SASL password is masked, its source named: {stdout}"
    );
}

#[test]
fn a_password_in_the_kafka_section_is_refused() {
    let cfg = temp_file(
        "kafka-password.toml",
        "[kafka]\n\"sasl.password\" = \"hunter2\"\n",
    );
    let out = offline(&["--config", cfg.to_str().expect("utf-8"), "config", "show"]);
    assert_fails(&out, 2, "set it in [security]");
    assert!(!text(&out).1.contains("hunter2"), "{:?}", text(&out));
}

#[test]
fn missing_java_is_explained() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/kafka.sh"))
        .args(["start", "--nodes", "1"])
        .env("JAVA_HOME", "/nonexistent-jdk")
        .env(
            "ORDERSTREAM_RUN_DIR",
            std::env::temp_dir().join("orderstream-nojava"),
        )
        .env("KAFKA_PORT_BASE", "47092")
        .output()
        .expect("run kafka.sh");
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("Java not found"), "{stderr}");
}

#[test]
fn taken_port_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/kafka.sh"))
        .args(["start", "--nodes", "1"])
        .env(
            "ORDERSTREAM_RUN_DIR",
            std::env::temp_dir().join(format!("orderstream-port-{port}")),
        )
        .env("KAFKA_PORT_BASE", port.to_string())
        .output()
        .expect("run kafka.sh");
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("port {port}")), "{stderr}");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_url_sends_nothing() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("bad-registry");
    let layout = layout.to_str().expect("utf-8");
    assert!(
        orderstream(&env, &["--topology", layout, "topics", "apply"])
            .status
            .success()
    );
    let out = orderstream(
        &env,
        &[
            "--topology",
            layout,
            "--registry-url",
            "http://127.0.0.1:1/apis/ccompat/v7",
            "produce",
            "--count",
            "5",
            "--quiet",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a registry that does not answer stops the producer at start-up: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("nothing was sent"),
        "the error names the registry and says nothing was sent: {stderr}"
    );
    assert!(
        env.end_offsets(&names.orders).values().all(|o| *o == 0),
        "nothing reached the topic"
    );
}

/// Numbers that select nothing are refused as invalid input (exit 2) instead of a run that
/// does nothing, or a producer setting librdkafka would refuse later.
#[test]
fn counts_of_zero_and_impossible_producer_settings_are_usage_errors() {
    for flag in ["--count", "--duration"] {
        assert_fails(&offline(&["produce", flag, "0"]), 2, flag);
    }
    for command in ["consume", "notify", "relay", "stage"] {
        assert_fails(&offline(&[command, "--for", "0"]), 2, "--for");
    }
    for flag in ["--services", "--open-orders", "--window"] {
        assert_fails(
            &offline(&["produce", "--count", "1", flag, "0"]),
            2,
            &format!("{flag} must be at least 1"),
        );
    }
    let layout = repo_root().join("topology.toml");
    let layout = layout.to_str().expect("utf-8");
    assert_fails(
        &offline(&[
            "--topology",
            layout,
            "produce",
            "--count",
            "1",
            "--linger-ms",
            "999999999",
        ]),
        2,
        "delivery_timeout",
    );
}

/// A dead-letter selection the topic cannot satisfy is invalid input, not "0 dead letters".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_selection_outside_the_topic_is_refused() {
    let env = TestEnv::connect().await;
    let (layout, _) = env.topology_file("dlq-selection");
    let layout = layout.to_str().expect("utf-8");
    assert!(
        orderstream(&env, &["--topology", layout, "topics", "apply"])
            .status
            .success()
    );
    let cases: [(&[&str], &str); 4] = [
        (&["dlq", "list", "--partition", "99"], "partition 99"),
        (&["dlq", "replay", "--partition", "99"], "partition 99"),
        (&["dlq", "replay", "--from", "10", "--to", "5"], "10..5"),
        (
            &["dlq", "replay", "--into", "retry"],
            "--into retry needs --group",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["--topology", layout];
        all.extend_from_slice(args);
        let out = orderstream(&env, &all);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_count_differing_from_layout_refuses_to_produce() {
    let env = TestEnv::connect().await;
    let (layout, names) = env.topology_file("partition-guard");
    let layout_s = layout.to_str().expect("utf-8");
    assert!(
        orderstream(&env, &["--topology", layout_s, "topics", "apply"])
            .status
            .success()
    );
    // The layout now claims 12 partitions while the live topic has 6.
    let text12 = std::fs::read_to_string(&layout)
        .expect("read")
        .replace("partitions = 6", "partitions = 12");
    let drifted = temp_file(&format!("{}-12.toml", names.orders), &text12);
    let out = orderstream(
        &env,
        &[
            "--topology",
            drifted.to_str().expect("utf-8"),
            "produce",
            "--count",
            "1",
            "--quiet",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("12") && stderr.contains('6'), "{stderr}");
    assert!(env.end_offsets(&names.orders).values().all(|o| *o == 0));
}

/// Security settings that cannot work together are refused before any connection, naming the
/// setting to fix, and a password given is never echoed.
#[test]
fn invalid_security_combinations_are_refused_at_start_up() {
    let key = temp_file(
        "client.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let ca = temp_file(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let password = temp_file("sasl.password", "correct-horse-battery\n");
    let key = key.to_str().expect("utf-8");
    let ca = ca.to_str().expect("utf-8");
    let password = password.to_str().expect("utf-8");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("ORDERSTREAM_SECURITY_PROTOCOL", "ssl"),
                ("ORDERSTREAM_SSL_KEY_FILE", key),
            ],
            "a client key needs its certificate",
        ),
        (
            &[
                ("ORDERSTREAM_SECURITY_PROTOCOL", "plaintext"),
                ("ORDERSTREAM_SSL_CA_FILE", ca),
            ],
            "a CA file is set but the security protocol is plaintext",
        ),
        (
            &[
                ("ORDERSTREAM_SECURITY_PROTOCOL", "sasl_ssl"),
                ("ORDERSTREAM_SASL_USERNAME", "svc"),
                ("ORDERSTREAM_SASL_PASSWORD_FILE", password),
            ],
            "needs a SASL mechanism",
        ),
        (
            &[
                ("ORDERSTREAM_SECURITY_PROTOCOL", "ssl"),
                ("ORDERSTREAM_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("ORDERSTREAM_SASL_PASSWORD_FILE", password),
            ],
            "a SASL mechanism is set but the security protocol is ssl",
        ),
        (
            &[
                ("ORDERSTREAM_SECURITY_PROTOCOL", "sasl_ssl"),
                ("ORDERSTREAM_SASL_MECHANISM", "PLAIN"),
                ("ORDERSTREAM_SASL_USERNAME", "svc"),
                ("ORDERSTREAM_SASL_PASSWORD", "correct-horse-battery"),
                ("ORDERSTREAM_SASL_PASSWORD_FILE", password),
            ],
            "ORDERSTREAM_SASL_PASSWORD",
        ),
    ];
    for (env, said) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args(["topics", "describe"])
            .env("ORDERSTREAM_BOOTSTRAP", "127.0.0.1:1")
            .env_remove("ORDERSTREAM_CONFIG")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .output()
            .expect("run orderstream");
        assert_fails(&out, 2, said);
        let (stdout, stderr) = text(&out);
        assert!(
            !stdout.contains("correct-horse-battery") && !stderr.contains("correct-horse-battery"),
            "{env:?}: {stderr}"
        );
    }
}

/// Only commands that move records serve metrics: with the configured port taken (e.g. by a
/// member sharing the config file), `config show` still works and `produce` names the port.
#[test]
fn one_shot_commands_leave_the_metrics_port_alone() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let out = offline(&["--metrics-addr", &addr, "config", "show"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_fails(
        &offline(&["--metrics-addr", &addr, "produce", "--count", "1"]),
        1,
        "cannot serve metrics",
    );
    drop(listener);
}

/// The relay publishes an existing store's outbox: a mistyped SQLite path is refused, and no
/// empty store is left behind.
#[test]
fn relay_refuses_a_store_that_does_not_exist() {
    let dir = std::env::temp_dir().join(format!("orderstream-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let typo = dir.join("typo.db");
    let url = format!("sqlite:{}", typo.display());
    assert_fails(
        &offline(&["relay", "--store", &url, "--for", "1"]),
        2,
        "no SQLite store",
    );
    assert!(!typo.exists(), "an empty store was created");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Small mistakes named before anything runs: a node count the scripts do not know, a config
/// path that is a directory; a schema version is taken as the commands print it (`v1`).
#[test]
fn node_counts_config_directories_and_printed_versions() {
    assert_fails(&offline(&["up", "--nodes", "2"]), 2, "1 (fast) or 3");
    let dir = std::env::temp_dir();
    let dir = dir.to_str().expect("utf-8");
    assert_fails(
        &offline(&["--config", dir, "config", "show"]),
        2,
        "is a directory",
    );
    let schemas = repo_root().join("schemas");
    let out = offline(&[
        "schemas",
        "diff",
        "--schemas-dir",
        schemas.to_str().expect("utf-8"),
        "--from",
        "v1",
        "--to",
        "v2",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_fails(
        &offline(&["schemas", "diff", "--from", "x1"]),
        2,
        "not a schema version",
    );
}
