//! The CLI against a real secured Kafka node (SASL_SSL with SCRAM and PLAIN, mutual TLS, the
//! `StandardAuthorizer` with ACLs; scripts/kafka-secure.sh) and a real registry that enforces
//! HTTP basic auth (scripts/registry-secure.sh). What is proven: events go through over
//! SCRAM-SHA-512, SCRAM-SHA-256, PLAIN and mTLS, and undecodable records are dead-lettered by the
//! member's own producer, listed, replayed and watched over the same secured connection; wrong
//! passwords, untrusted CAs, plaintext clients and principals without ACLs are turned away
//! quickly with a message that says why (exit 2); nothing is produced when they are; and no
//! password (the stack's, or a wrong one a run was given) or private key appears in any output,
//! even at debug level.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::text;

/// The secured services' addresses and files (`scripts/services.sh env` exports them while
/// `up --secure` runs).
struct Secure {
    sasl_bootstrap: String,
    mtls_bootstrap: String,
    misnamed_bootstrap: String,
    ca: PathBuf,
    untrusted_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
    registry_url: String,
    registry_https_url: String,
    registry_user: String,
    registry_password: PathBuf,
    registry_reader_password: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the secured services with `scripts/services.sh up --secure` and `eval \"$(scripts/services.sh env)\"`")
    })
}

impl Secure {
    fn from_env() -> Secure {
        Secure {
            sasl_bootstrap: var("ORDERSTREAM_SECURE_SASL_BOOTSTRAP"),
            mtls_bootstrap: var("ORDERSTREAM_SECURE_MTLS_BOOTSTRAP"),
            misnamed_bootstrap: var("ORDERSTREAM_SECURE_MISNAMED_BOOTSTRAP"),
            ca: var("ORDERSTREAM_SECURE_CA_FILE").into(),
            untrusted_ca: var("ORDERSTREAM_SECURE_UNTRUSTED_CA_FILE").into(),
            cert: var("ORDERSTREAM_SECURE_CLIENT_CERT_FILE").into(),
            key: var("ORDERSTREAM_SECURE_CLIENT_KEY_FILE").into(),
            dir: var("ORDERSTREAM_SECURE_DIR").into(),
            registry_url: var("ORDERSTREAM_SECURE_REGISTRY_URL"),
            registry_https_url: var("ORDERSTREAM_SECURE_REGISTRY_HTTPS_URL"),
            registry_user: var("ORDERSTREAM_SECURE_REGISTRY_USERNAME"),
            registry_password: var("ORDERSTREAM_SECURE_REGISTRY_PASSWORD_FILE").into(),
            registry_reader_password: var("ORDERSTREAM_SECURE_REGISTRY_READER_PASSWORD_FILE")
                .into(),
        }
    }

    fn password_file(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.password"))
    }

    fn password(&self, user: &str) -> String {
        read(&self.password_file(user)).trim_end().to_owned()
    }

    /// Everything that must never be printed: every password, and the private key's body.
    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = ["admin", "orders-producer", "orders-consumer"]
            .iter()
            .map(|u| self.password(u))
            .collect();
        out.push(read(&self.registry_password).trim_end().to_owned());
        out.push(read(&self.registry_reader_password).trim_end().to_owned());
        out.extend(
            read(&self.key)
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(str::to_owned),
        );
        out.retain(|s| s.len() >= 6);
        assert!(out.len() >= 6, "secrets to look for: {}", out.len());
        out
    }

    /// A SCRAM-SHA-512 identity over SASL_SSL.
    fn scram(&self, user: &str) -> Identity {
        self.sasl("SCRAM-SHA-512", user)
    }

    /// An identity over SASL_SSL with `mechanism` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512).
    fn sasl(&self, mechanism: &str, user: &str) -> Identity {
        Identity {
            bootstrap: self.sasl_bootstrap.clone(),
            env: vec![
                ("ORDERSTREAM_SECURITY_PROTOCOL", "sasl_ssl".into()),
                ("ORDERSTREAM_SSL_CA_FILE", path(&self.ca)),
                ("ORDERSTREAM_SASL_MECHANISM", mechanism.into()),
                ("ORDERSTREAM_SASL_USERNAME", user.into()),
                (
                    "ORDERSTREAM_SASL_PASSWORD_FILE",
                    path(&self.password_file(user)),
                ),
            ],
        }
    }

    /// The `orders-mtls` principal: a client certificate over SSL.
    fn mtls(&self) -> Identity {
        Identity {
            bootstrap: self.mtls_bootstrap.clone(),
            env: vec![
                ("ORDERSTREAM_SECURITY_PROTOCOL", "ssl".into()),
                ("ORDERSTREAM_SSL_CA_FILE", path(&self.ca)),
                ("ORDERSTREAM_SSL_CERT_FILE", path(&self.cert)),
                ("ORDERSTREAM_SSL_KEY_FILE", path(&self.key)),
            ],
        }
    }

    /// Runs `orderstream <args>` as `who`, with the registry's writer credentials, at debug
    /// level; fails the test if any secret shows in the output: the stack's own, and whatever
    /// this run was given (a wrong password is a secret too).
    fn run(&self, who: &Identity, extra_env: &[(&str, String)], args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderstream"));
        for (k, _) in std::env::vars() {
            if k.starts_with("ORDERSTREAM_") && !k.starts_with("ORDERSTREAM_SECURE_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .env("ORDERSTREAM_BOOTSTRAP", &who.bootstrap)
            .env("ORDERSTREAM_REGISTRY_URL", &self.registry_url)
            .env("ORDERSTREAM_REGISTRY_USERNAME", &self.registry_user)
            .env(
                "ORDERSTREAM_REGISTRY_PASSWORD_FILE",
                &self.registry_password,
            )
            .env("RUST_LOG", "debug");
        for (k, v) in who.env.iter().chain(extra_env) {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run orderstream");
        let (stdout, stderr) = text(&out);
        let mut secrets = self.secrets();
        secrets.extend(given_secrets(who.env.iter().chain(extra_env)));
        for secret in secrets {
            assert!(
                !stdout.contains(&secret) && !stderr.contains(&secret),
                "a secret appeared in the output of {args:?}"
            );
        }
        assert!(
            !stderr.contains("PRIVATE KEY-----") && !stdout.contains("PRIVATE KEY-----"),
            "a private key appeared in the output of {args:?}"
        );
        out
    }

    /// A layout whose topic names start with `prefix` (ACLs are granted by prefix).
    fn layout(&self, prefix: &str) -> (PathBuf, String) {
        let unique = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let text = read(&orderstream_testkit::repo_root().join("topology.toml"))
            .replace("name = \"", &format!("name = \"{unique}-"));
        let dir = std::env::temp_dir().join("orderstream-tests");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join(format!("{unique}-topology.toml"));
        std::fs::write(&file, text).expect("write layout");
        (file, format!("{unique}-orders.events"))
    }

    /// Creates the layout's topics as the admin principal.
    fn apply(&self, layout: &Path) {
        let out = self.run(
            &self.scram("admin"),
            &[],
            &[
                "--topology",
                &path(layout),
                "--profile",
                "local",
                "topics",
                "apply",
            ],
        );
        assert!(
            out.status.success(),
            "topics apply as admin: {:?}",
            text(&out)
        );
    }

    /// A client config of the admin (super user) over SASL_SSL.
    fn admin_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.sasl_bootstrap)
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", path(&self.ca))
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "admin")
            .set("sasl.password", self.password("admin"));
        config
    }

    /// Records in `topic`, read as the admin (high watermarks summed).
    fn records_in(&self, topic: &str) -> i64 {
        let consumer: BaseConsumer = self.admin_config().create().expect("admin consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        md.topics()[0]
            .partitions()
            .iter()
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum()
    }
}

struct Identity {
    bootstrap: String,
    env: Vec<(&'static str, String)>,
}

/// The secrets a run was handed: values of `*_PASSWORD` variables and the first line of files
/// named by `*_PASSWORD_FILE` variables.
fn given_secrets<'a>(env: impl Iterator<Item = &'a (&'a str, String)>) -> Vec<String> {
    env.filter_map(|(k, v)| {
        if k.ends_with("_PASSWORD_FILE") {
            Some(read(Path::new(v)).lines().next().unwrap_or("").to_owned())
        } else if k.ends_with("_PASSWORD") {
            Some(v.clone())
        } else {
            None
        }
    })
    .filter(|s| s.len() >= 6)
    .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// A number after `label` in the CLI's summary, e.g. `acked 300`.
fn figure(out: &str, label: &str) -> u64 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("`{label}` not in {out}"));
    out[at + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in {out}"))
}

/// Produces `count` events as `producer` (and `poison` undecodable records as the admin),
/// consumes them as `consumer` in a fresh group: every event acknowledged and applied once, every
/// poison record forwarded to the dead-letter topic by the member's own producer and listed by
/// `dlq list` as `consumer`.
fn round_trip(s: &Secure, producer: &Identity, consumer: &Identity, count: u64, poison: u64) {
    let (layout, topic) = s.layout("orders.");
    let layout = path(&layout);
    s.apply(Path::new(&layout));
    let out = s.run(
        producer,
        &[],
        &[
            "--topology",
            &layout,
            "produce",
            "--count",
            &count.to_string(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "produce: {stdout}\n{stderr}");
    assert_eq!(figure(&stdout, "acked "), count, "{stdout}");
    assert_eq!(s.records_in(&topic), i64::try_from(count).expect("fits"));
    if poison > 0 {
        let raw: BaseProducer = s.admin_config().create().expect("admin producer");
        for i in 0..poison {
            let key = format!("poison-{i}");
            raw.send(
                BaseRecord::to(&topic)
                    .key(&key)
                    .payload(b"not avro".as_slice()),
            )
            .expect("enqueue poison");
        }
        raw.flush(Duration::from_secs(20))
            .expect("poison acknowledged");
    }
    let group = format!("orders.{}", uuid::Uuid::new_v4().simple());
    let out = s.run(
        consumer,
        &[],
        &[
            "--topology",
            &layout,
            "consume",
            "--group",
            &group,
            "--for",
            "40",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "consume: {stdout}\n{stderr}");
    assert_eq!(figure(&stdout, "applied "), count, "{stdout}");
    assert_eq!(figure(&stdout, "dead-lettered "), poison, "{stdout}");
    if poison > 0 {
        let dlq = topic.replace("-orders.events", "-orders.events.dlq");
        assert_eq!(s.records_in(&dlq), i64::try_from(poison).expect("fits"));
        // The reader names a group the consumer principal may READ (ACLs by prefix).
        let reader = format!("orders.{}", uuid::Uuid::new_v4().simple());
        let out = s.run(
            consumer,
            &[],
            &[
                "--topology",
                &layout,
                "dlq",
                "list",
                "--reader-group",
                &reader,
            ],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "dlq list: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("{poison} dead letter(s) in {dlq}")),
            "{stdout}"
        );
        // Replayed to their source as the consumer (its WRITE on the orders topics).
        let out = s.run(
            consumer,
            &[],
            &[
                "--topology",
                &layout,
                "dlq",
                "replay",
                "--reader-group",
                &reader,
            ],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "dlq replay: {stdout}\n{stderr}");
        assert_eq!(figure(&stdout, "read "), poison, "{stdout}");
        assert_eq!(
            s.records_in(&topic),
            i64::try_from(count + 2 * poison).expect("fits")
        );
        // One frame of the group's live view: offsets, and the dead letters read with the
        // watched group's id.
        let out = s.run(
            consumer,
            &[],
            &["--topology", &layout, "watch", "--group", &group, "--once"],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "watch: {stdout}\n{stderr}");
        let shown = stdout
            .lines()
            .skip_while(|l| !l.starts_with("latest dead letters ("))
            .filter(|l| l.contains("bad_magic"))
            .count();
        assert_eq!(
            u64::try_from(shown).expect("fits"),
            poison,
            "watch shows the dead letters: {stdout}"
        );
    }
}

#[test]
fn scram_sha_512_over_tls_produces_and_consumes_every_event() {
    let s = Secure::from_env();
    round_trip(
        &s,
        &s.scram("orders-producer"),
        &s.scram("orders-consumer"),
        300,
        0,
    );
}

#[test]
fn scram_sha_256_and_plain_produce_consume_and_dead_letter() {
    let s = Secure::from_env();
    round_trip(
        &s,
        &s.sasl("SCRAM-SHA-256", "orders-producer"),
        &s.sasl("PLAIN", "orders-consumer"),
        200,
        3,
    );
}

#[test]
fn mutual_tls_produces_and_consumes_every_event() {
    let s = Secure::from_env();
    round_trip(&s, &s.mtls(), &s.mtls(), 200, 0);
}

/// Runs a produce that must be refused: exit 2 within `within`, stderr containing every one of
/// `said`, and nothing written to the topic.
fn refused_produce(
    s: &Secure,
    who: &Identity,
    extra_env: &[(&str, String)],
    prefix: &str,
    said: &[&str],
    within: Duration,
) {
    let (layout, topic) = s.layout(prefix);
    s.apply(&layout);
    let started = Instant::now();
    let out = s.run(
        who,
        extra_env,
        &["--topology", &path(&layout), "produce", "--count", "50"],
    );
    let took = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "exit 2: {stdout}\n{stderr}");
    for want in said {
        assert!(stderr.contains(want), "stderr names `{want}`: {stderr}");
    }
    assert!(
        took < within,
        "refused after {took:?}, not within {within:?}"
    );
    assert_eq!(s.records_in(&topic), 0, "nothing produced");
}

#[test]
fn a_wrong_password_is_refused_quickly_and_nothing_is_produced() {
    let s = Secure::from_env();
    let wrong = std::env::temp_dir().join(format!("wrong-{}.pw", uuid::Uuid::new_v4()));
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    refused_produce(
        &s,
        &s.scram("orders-producer"),
        &[("ORDERSTREAM_SASL_PASSWORD_FILE", path(&wrong))],
        "orders.",
        &["refused the credentials", "Authentication"],
        Duration::from_secs(20),
    );
}

#[test]
fn an_untrusted_ca_is_a_tls_error_naming_the_broker() {
    let s = Secure::from_env();
    refused_produce(
        &s,
        &s.scram("orders-producer"),
        &[("ORDERSTREAM_SSL_CA_FILE", path(&s.untrusted_ca))],
        "orders.",
        &["TLS", "certificate verify failed", &s.sasl_bootstrap],
        Duration::from_secs(20),
    );
}

#[test]
fn a_producer_without_any_permission_on_the_topic_is_refused_naming_it() {
    let s = Secure::from_env();
    refused_produce(
        &s,
        &s.scram("orders-producer"),
        &[],
        "unlisted.",
        &["TopicAuthorizationFailed", "unlisted."],
        Duration::from_secs(20),
    );
}

#[test]
fn wrong_registry_credentials_are_refused_and_nothing_is_produced() {
    let s = Secure::from_env();
    refused_produce(
        &s,
        &s.scram("orders-producer"),
        &[(
            "ORDERSTREAM_REGISTRY_PASSWORD_FILE",
            path(&s.password_file("orders-consumer")),
        )],
        "orders.",
        &["refused user", "401"],
        Duration::from_secs(20),
    );
}

#[test]
fn a_plaintext_client_against_the_tls_listener_fails_clearly() {
    let s = Secure::from_env();
    let started = Instant::now();
    let out = s.run(
        &Identity {
            bootstrap: s.sasl_bootstrap.clone(),
            env: vec![],
        },
        &[],
        &["topics", "describe"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The final error line, not librdkafka's debug chatter, must say it.
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        last.contains("security.protocol") && last.contains(&s.sasl_bootstrap),
        "the error names the broker and points at the protocol setting: {last}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "no hang");
}

#[test]
fn a_consumer_without_group_permission_is_refused_naming_the_group() {
    let s = Secure::from_env();
    let (layout, _) = s.layout("orders.");
    s.apply(&layout);
    let group = format!("unlisted.{}", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    let out = s.run(
        &s.scram("orders-consumer"),
        &[],
        &[
            "--topology",
            &path(&layout),
            "consume",
            "--group",
            &group,
            "--for",
            "60",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "exit 2: {stdout}\n{stderr}");
    assert!(stderr.contains("GroupAuthorizationFailed"), "{stderr}");
    assert!(stderr.contains(&group), "names the group: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "stopped on the refusal, not at --for"
    );
}

#[test]
fn a_host_name_the_certificate_does_not_carry_is_a_tls_error_naming_the_broker() {
    let s = Secure::from_env();
    let misnamed = Identity {
        bootstrap: s.misnamed_bootstrap.clone(),
        env: vec![
            ("ORDERSTREAM_SECURITY_PROTOCOL", "ssl".into()),
            ("ORDERSTREAM_SSL_CA_FILE", path(&s.ca)),
        ],
    };
    refused_produce(
        &s,
        &misnamed,
        &[],
        "orders.",
        &["failed the TLS handshake", &s.misnamed_bootstrap],
        Duration::from_secs(20),
    );
}

#[test]
fn a_registry_behind_a_private_ca_needs_that_ca() {
    let s = Secure::from_env();
    let https = [("ORDERSTREAM_REGISTRY_URL", s.registry_https_url.clone())];
    let (layout, topic) = s.layout("orders.");
    s.apply(&layout);
    let produce = ["--topology", &path(&layout), "produce", "--count", "40"];
    let out = s.run(&s.scram("orders-producer"), &https, &produce);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "untrusted registry certificate: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("cannot be used") && stderr.contains("certificate"),
        "says the registry's certificate is the problem: {stderr}"
    );
    assert_eq!(s.records_in(&topic), 0, "nothing produced");

    let with_ca = [
        https[0].clone(),
        ("ORDERSTREAM_REGISTRY_CA_FILE", path(&s.ca)),
    ];
    let out = s.run(&s.scram("orders-producer"), &with_ca, &produce);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "with the CA: {stdout}\n{stderr}");
    assert_eq!(figure(&stdout, "acked "), 40, "{stdout}");
    assert_eq!(s.records_in(&topic), 40);
}

/// The producer may DESCRIBE `readonly.` topics but not WRITE them: start-up succeeds, the broker
/// refuses each send, and every refusal is permanent (no retries until the delivery timeout).
#[test]
fn a_producer_without_write_permission_is_refused_by_the_broker_without_retrying() {
    let s = Secure::from_env();
    let (layout, topic) = s.layout("readonly.");
    s.apply(&layout);
    let started = Instant::now();
    let out = s.run(
        &s.scram("orders-producer"),
        &[],
        &["--topology", &path(&layout), "produce", "--count", "50"],
    );
    let took = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "exit 2: {stdout}\n{stderr}");
    assert_eq!(figure(&stdout, "acked "), 0, "{stdout}");
    assert_eq!(figure(&stdout, "failed "), 50, "{stdout}");
    assert!(
        stderr.contains("50 failed, 50 of them permanently"),
        "every refusal is permanent: {stderr}"
    );
    assert!(
        stderr.contains("TopicAuthorizationFailed") && stderr.contains(&topic),
        "names the refusal and the topic: {stderr}"
    );
    // librdkafka retries a retriable produce error; this one must fail on the first answer
    // (the delivery timeout is 30 s, so a retrying producer could not end this early).
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
    assert_eq!(s.records_in(&topic), 0, "nothing produced");
}
