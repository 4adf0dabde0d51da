//! Scenario 16, the registry comes back empty: after 1 000 events were produced, the registry
//! is stopped, its storage deleted and started again, so every record now names a schema id
//! the registry does not know. The member must not lose them: an unknown schema id is
//! transient, so each record is retried in place, then through the retry topic, then
//! dead-lettered with class `unknown_schema_id`. The registry is then restored from the export
//! taken before (Apicurio's admin export/import keeps the ids) and `dlq replay` sends the dead
//! letters back. Promise: every record dead-lettered once with its class, none applied while
//! its schema was unknown, every one applied after the replay, and no new dead letter.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::{BackoffConfig, ConsumerConfig, ReplaySelection, headers as h};
use orderstream_orders::{OrderProcessor, SampleConfig};
use orderstream_testkit::{TestEnv, repo_root};

use super::checker::without_delivery;
use super::support::{RegistryGuard, blocking, consumer_config, pipeline_topics, spawn_member};
use super::{finish, order_producer, producer_support, setup};

const ORDERS: usize = 500;
const EVENTS: usize = 2 * ORDERS;

/// The registry's own REST API (export/import), beside its Confluent-compatible one.
fn admin_url(env: &TestEnv) -> String {
    env.registry_url
        .replace("/apis/ccompat/v7", "/apis/registry/v3/admin")
}

/// `curl` with its HTTP status (0: no answer within 60 s, or no curl); the body goes to
/// `out`. Never panics: a guard calls it while unwinding.
fn curl(out: &str, args: &[&str]) -> u16 {
    Command::new("curl")
        .args(["-s", "--max-time", "60", "-o", out, "-w", "%{http_code}"])
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The registry's storage (scripts/registry.sh keeps it under the run directory).
fn registry_data() -> PathBuf {
    std::env::var_os("ORDERSTREAM_RUN_DIR")
        .map_or_else(|| repo_root().join(".run"), PathBuf::from)
        .join("registry/data")
}

/// Imports `export` into the (empty) registry at `admin`; `true` when it answered 2xx.
fn import(admin: &str, export: &std::path::Path) -> bool {
    let status = curl(
        "/dev/null",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/zip",
            "--data-binary",
            &format!("@{}", export.display()),
            &format!("{admin}/import"),
        ],
    );
    (200..300).contains(&status)
}

/// Puts the export back if the scenario ends after wiping the registry and before restoring
/// it (the registry is shared). Made before the registry guard, so it is dropped after it:
/// the registry is running again when it imports.
struct Restore {
    admin: String,
    export: PathBuf,
    armed: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.armed {
            let ok = import(&self.admin, &self.export);
            eprintln!(
                "guard: registry restored from {}: ok={ok}",
                self.export.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s16_registry_restarted_empty() {
    let started = Instant::now();
    let (env, t) = setup("rel-s16").await;
    let topic = t.names.orders.clone();
    let dlq = t.names.dead_letter.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let events: Vec<_> = (0..EVENTS)
        .map(|n| producer_support::event(n % ORDERS, (n / ORDERS) as i64))
        .collect();
    let outcomes = p.send_batch(&events).await;
    assert!(
        outcomes.iter().all(|o| o.position().is_some()),
        "events acked"
    );
    let schema_id = p
        .codec()
        .encode(&topic, &events[0])
        .await
        .unwrap()
        .schema_id;
    drop(p);
    let ids_url = format!("{}/schemas/ids/{schema_id}", env.registry_url);
    assert_eq!(
        blocking({
            let u = ids_url.clone();
            move || curl("/dev/null", &[&u])
        })
        .await,
        200
    );

    // Export, then stop, wipe and start the registry empty.
    let export = std::env::temp_dir().join(format!("{}.zip", env.unique("rel-s16-export")));
    let (url, path) = (format!("{}/export", admin_url(&env)), export.clone());
    let status = blocking(move || curl(&path.display().to_string(), &[&url])).await;
    assert_eq!(status, 200, "registry export");
    let data = registry_data();
    assert!(
        data.is_dir(),
        "registry storage not found at {} (scripts/registry.sh with REGISTRY_STORAGE=file)",
        data.display()
    );
    let mut restore = Restore {
        admin: admin_url(&env),
        export: export.clone(),
        armed: false,
    };
    let mut guard = RegistryGuard::stop().await;
    restore.armed = true;
    std::fs::remove_dir_all(&data).expect("delete the registry storage");
    guard.start().await;
    assert_eq!(
        blocking({
            let u = ids_url.clone();
            move || curl("/dev/null", &[&u])
        })
        .await,
        404,
        "schema id {schema_id} is unknown to the emptied registry"
    );

    // The member meets only unknown schema ids.
    let processor = Arc::new(OrderProcessor::new(
        producer_support::codec(&env),
        SampleConfig {
            unknown_schema_max_attempts: 2,
            ..SampleConfig::default()
        },
    ));
    let group = env.group_id("rel-s16");
    let cfg = ConsumerConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max_attempts: 3,
            ..BackoffConfig::default()
        },
        retry_topic_delay: Duration::from_millis(200),
        ..consumer_config(&env.bootstrap, &group, pipeline_topics(&t))
    };
    let (cancel, member) = spawn_member(cfg.clone(), Arc::clone(&processor));
    let deadline = Instant::now() + Duration::from_secs(180);
    let dead_lettered = loop {
        let n: i64 = env.end_offsets(&dlq).values().sum();
        if n >= EVENTS as i64 {
            break n;
        }
        assert!(Instant::now() < deadline, "{n} of {EVENTS} dead-lettered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let dead_lettering = started.elapsed();
    cancel.cancel();
    let first = member.await.expect("member task");
    let applied_unknown = processor.snapshot().applied_events;
    let letters = env.read_all(&dlq, Duration::from_secs(60)).await;
    let wrong_class = letters
        .iter()
        .filter(|m| {
            producer_support::header(m, h::DLQ_ERROR_CLASS) != Some(b"unknown_schema_id".as_slice())
        })
        .count();

    // Restore the schemas under their ids, replay the dead letters, consume again.
    let restored = blocking({
        let (a, x) = (admin_url(&env), export.clone());
        move || import(&a, &x)
    })
    .await;
    assert!(restored, "registry import");
    restore.armed = false;
    assert_eq!(
        blocking({
            let u = ids_url.clone();
            move || curl("/dev/null", &[&u])
        })
        .await,
        200,
        "schema id {schema_id} restored"
    );
    let replay = orderstream_consumer::replay(
        &env.client_config(),
        &dlq,
        &ReplaySelection::default(),
        Duration::from_secs(30),
    )
    .await
    .expect("dlq replay");
    let after_replay = Arc::new(OrderProcessor::new(
        producer_support::codec(&env),
        SampleConfig::default(),
    ));
    let (cancel, member) = spawn_member(cfg, Arc::clone(&after_replay));
    let ends = env.end_offsets(&topic);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if env.committed_offsets(&group, &topic).await == ends {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replayed records were not consumed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cancel.cancel();
    let second = member.await.expect("member task");
    let applied_after = after_replay.snapshot().applied_events;
    let new_letters: i64 = env.end_offsets(&dlq).values().sum::<i64>() - dead_lettered;
    let _ = std::fs::remove_file(&export);
    let f = without_delivery("16 registry restarted empty")
        .with("events", EVENTS)
        .with("schema_id", schema_id)
        .with("dead_lettered", dead_lettered)
        .with("dead_letters_of_another_class", wrong_class)
        .with("applied_while_schema_unknown", applied_unknown)
        .with("dead_lettering_s", dead_lettering.as_secs_f64())
        .with("replayed", replay.read)
        .with("applied_after_restore_and_replay", applied_after)
        .with("new_dead_letters_after_replay", new_letters)
        .with("retried_in_place", first.retried_in_place)
        .with("parked", first.parked)
        .with(
            "recover",
            "restore from export, dlq replay, consumed to the end",
        );
    let f = finish(f, started);
    assert_eq!(
        dead_lettered, EVENTS as i64,
        "each record dead-lettered once: {f:?}"
    );
    assert_eq!(wrong_class, 0, "{f:?}");
    // Transient first: each record was tried again before it was dead-lettered.
    assert!(first.retried_in_place >= EVENTS as u64, "{f:?}");
    assert_eq!(applied_unknown, 0, "{f:?}");
    assert_eq!(replay.read, EVENTS as u64, "{f:?}");
    assert_eq!(
        applied_after, EVENTS as u64,
        "every event applied after the replay: {f:?}"
    );
    assert_eq!(new_letters, 0, "{f:?}");
    assert!(
        first.stopped_cleanly() && second.stopped_cleanly(),
        "{first:?} {second:?}"
    );
}
