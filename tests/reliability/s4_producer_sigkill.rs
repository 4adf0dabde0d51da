//! Scenario 4, producer SIGKILL and restart (a new producer session).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_orders::OrderProducer;
use orderstream_producer::{DeliveryOutcome, ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, RegistryConfig};
use rand::Rng;

use super::checker::{Ev, Observed, check};
use super::support::{
    self, Recorder, blocking, consumer_config, pipeline_topics, spawn_member, wait_until,
};
use super::{finish, producer_support, setup, spawn_child};

const P4_KEYS: usize = 200;
const P4_ROUNDS: i64 = 100;

fn p4_event_id(key: usize, seq: i64) -> String {
    // a deterministic UUID (the schema requires one), so a resend carries the same id
    format!("00000000-0000-4000-8000-{key:06x}{seq:06x}")
}

/// Child of s4: produces the `P4_KEYS × P4_ROUNDS` events with deterministic event ids that
/// its log does not show acknowledged (an earlier, killed session's unacknowledged sends
/// included), in sequence order, asking again for the ones that fail, up to five passes. Every
/// batch is logged as attempted (`SENDING id key seq`) before it is handed over, then each
/// record's outcome (`id key seq partition offset`, or `NOTACKED id key seq outcome`), so a
/// session killed at any point leaves a log that explains every record it may have written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of s4_producer_sigkill_restart"]
async fn child_producer() {
    let Ok(spec) = std::env::var("ORDERSTREAM_REL_PRODUCER") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let (bootstrap, registry, topic, log_path) = (f[0], f[1], f[2], f[3]);
    let acked: HashSet<(usize, i64)> = P4Log::read(std::path::Path::new(log_path))
        .acked
        .iter()
        .map(|e| (p4_key(&e.key), e.sequence))
        .collect();
    let codec = OrderCodec::new(RegistryConfig {
        url: registry.to_owned(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let cfg = ProducerConfig {
        bootstrap_servers: bootstrap.to_owned(),
        ..ProducerConfig::default()
    };
    let p = OrderProducer::new(cfg, codec, ProducerTopic::new(topic, 6))
        .await
        .unwrap();
    let mut todo: Vec<_> = (0..P4_ROUNDS)
        .flat_map(|seq| (0..P4_KEYS).map(move |k| (k, seq)))
        .filter(|ks| !acked.contains(ks))
        .map(|(k, seq)| {
            let mut e = producer_support::event(k, seq);
            e.event_id = p4_event_id(k, seq);
            e
        })
        .collect();
    // A half-written last line (its writer was SIGKILLed) is cut off, so the next line
    // appended does not run into it.
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    if complete < text.len() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(log_path)
            .and_then(|f| f.set_len(complete as u64))
            .unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    for pass in 0..5 {
        if todo.is_empty() {
            break;
        }
        if pass > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut failed = Vec::new();
        for batch in todo.chunks(P4_BATCH) {
            let mut lines = String::new();
            for e in batch {
                lines.push_str(&format!(
                    "SENDING {} {} {}\n",
                    e.event_id,
                    p4_key(&e.order_id),
                    e.sequence
                ));
            }
            std::io::Write::write_all(&mut file, lines.as_bytes()).unwrap();
            let outcomes = p.send_batch(batch).await;
            let mut lines = String::new();
            for (e, o) in batch.iter().zip(outcomes) {
                let key = p4_key(&e.order_id);
                match o {
                    DeliveryOutcome::Delivered {
                        partition, offset, ..
                    } => lines.push_str(&format!(
                        "{} {key} {} {partition} {offset}\n",
                        e.event_id, e.sequence
                    )),
                    other => {
                        lines.push_str(&format!(
                            "NOTACKED {} {key} {} {other:?}\n",
                            e.event_id, e.sequence
                        ));
                        failed.push(e.clone());
                    }
                }
            }
            std::io::Write::write_all(&mut file, lines.as_bytes()).unwrap();
        }
        todo = failed;
    }
    p.shutdown(Duration::from_secs(10)).await;
}

/// Events per `send_batch` of the s4 child: at most this many records are in flight when it is
/// killed, so each kill can leave at most this many written but unacknowledged.
const P4_BATCH: usize = 200;

fn p4_key(order_id: &str) -> usize {
    order_id.trim_start_matches("order-").parse().unwrap()
}

/// The s4 children's shared log, parsed.
#[derive(Debug, Default)]
struct P4Log {
    /// Acknowledged sends, with their positions.
    acked: Vec<Ev>,
    /// Every `SENDING` line: (event id, key, sequence).
    attempts: Vec<(String, usize, i64)>,
    /// Event id → the outcome of its last `NOTACKED` line.
    not_acked: BTreeMap<String, String>,
}

impl P4Log {
    fn read(path: &std::path::Path) -> P4Log {
        let mut log = P4Log::default();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A last line without its newline was cut short by a kill: a truncated offset would
        // still parse, so it is not read at all (its record was logged as attempted before).
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        for line in complete.lines() {
            let w: Vec<&str> = line.splitn(5, ' ').collect();
            match w.first() {
                // A line cut short by a kill (fewer words) is ignored: its record was logged
                // as attempted before it could be sent.
                Some(&"SENDING") if w.len() == 4 => {
                    if let (Ok(k), Ok(seq)) = (w[2].parse(), w[3].parse()) {
                        log.attempts.push((w[1].to_owned(), k, seq));
                    }
                }
                Some(&"NOTACKED") if w.len() == 5 => {
                    log.not_acked.insert(w[1].to_owned(), w[4].to_owned());
                }
                Some(_) if w.len() == 5 => {
                    if let (Ok(k), Ok(seq), Ok(partition), Ok(offset)) = (
                        w[1].parse::<usize>(),
                        w[2].parse(),
                        w[3].parse(),
                        w[4].parse(),
                    ) {
                        log.acked.push(Ev {
                            event_id: w[0].to_owned(),
                            key: format!("order-{k:06}"),
                            sequence: seq,
                            partition,
                            offset,
                        });
                    }
                }
                _ => {}
            }
        }
        log
    }
}

fn line_count(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s4_producer_sigkill_restart() {
    let started = Instant::now();
    let (env, t) = setup("rel-s4").await;
    let log_path = std::env::temp_dir().join(format!("{}.acks", env.unique("rel-s4")));
    let spec = format!(
        "{}|{}|{}|{}",
        env.bootstrap,
        env.registry_url,
        t.names.orders,
        log_path.display()
    );
    let total = P4_KEYS * P4_ROUNDS as usize;
    let mut kills = Vec::new();
    let mut rng = support::rng("s4");
    for _ in 0..2 {
        let mut child = spawn_child(
            "s4_producer_sigkill::child_producer",
            "ORDERSTREAM_REL_PRODUCER",
            &spec,
        );
        let base = line_count(&log_path);
        let at = base + rng.random_range(1_000..6_000);
        wait_until("child producer progress", Duration::from_secs(90), || {
            line_count(&log_path) >= at
        })
        .await;
        child.kill(); // SIGKILL
        kills.push(line_count(&log_path));
    }
    let child = spawn_child(
        "s4_producer_sigkill::child_producer",
        "ORDERSTREAM_REL_PRODUCER",
        &spec,
    );
    let status = blocking(move || child.wait(Duration::from_secs(300)).status).await;
    assert!(status.success(), "the restarted producer failed: {status}");
    let log = P4Log::read(&log_path);
    let acked_ids: HashSet<&str> = log.acked.iter().map(|e| e.event_id.as_str()).collect();
    // Every attempt without an acknowledgement of its own: a killed session's in-flight batch,
    // and sends reported failed (asked again by the next pass or session).
    let mut attempts_per_id: HashMap<&str, usize> = HashMap::new();
    for (id, _, _) in &log.attempts {
        *attempts_per_id.entry(id.as_str()).or_default() += 1;
    }
    let unacked: Vec<Ev> = log
        .attempts
        .iter()
        .filter(|(id, _, _)| {
            attempts_per_id[id.as_str()] > usize::from(acked_ids.contains(id.as_str()))
        })
        .map(|(id, k, seq)| Ev {
            event_id: id.clone(),
            key: format!("order-{k:06}"),
            sequence: *seq,
            partition: -1,
            offset: -1,
        })
        .collect();
    // The producer's last word on each event that never got an ack: a reported failure.
    let reported_failed: HashSet<&str> = log
        .not_acked
        .keys()
        .map(String::as_str)
        .filter(|id| !acked_ids.contains(id))
        .collect();
    let all_ids: HashSet<String> = (0..P4_ROUNDS)
        .flat_map(|s| (0..P4_KEYS).map(move |k| p4_event_id(k, s)))
        .collect();
    // Exact accounting: each intended event is acknowledged or was reported failed.
    let vanished = all_ids
        .iter()
        .filter(|id| !acked_ids.contains(id.as_str()) && !reported_failed.contains(id.as_str()))
        .count();
    let never_attempted = all_ids
        .iter()
        .filter(|id| !attempts_per_id.contains_key(id.as_str()))
        .count();
    // the consumer
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 0));
    let group = env.group_id("rel-s4");
    let (cancel, member) = spawn_member(
        consumer_config(&env.bootstrap, &group, pipeline_topics(&t)),
        Arc::clone(&rec),
    );
    let in_topic: i64 = env.end_offsets(&t.names.orders).values().sum();
    wait_until(
        "consumer read the whole topic",
        Duration::from_secs(120),
        || rec.consumed.lock().unwrap().len() as i64 >= in_topic,
    )
    .await;
    cancel.cancel();
    member.await.unwrap();
    let consumed_ids: HashSet<String> = rec.consumed().into_iter().map(|e| e.event_id).collect();
    let never_applied = all_ids
        .iter()
        .filter(|id| !consumed_ids.contains(*id))
        .count();
    let f = check(
        "4 producer SIGKILL + restart",
        &Observed {
            acked: log.acked.clone(),
            unacked: Some(unacked),
            possibly_persisted: reported_failed.len(),
            consumed: rec.consumed(),
            effects: None,
            recover: None,
        },
    )
    .with("kills", 2)
    .with("acks_logged_at_kill", kills)
    .with("events_intended", total)
    .with("attempts", log.attempts.len())
    .with("reported_failed", reported_failed.len())
    .with("vanished", vanished)
    .with("never_attempted", never_attempted)
    .with("records_in_topic", in_topic)
    .with("intended_never_consumed", never_applied);
    let f = finish(f, started);
    assert_eq!(
        vanished, 0,
        "intended events neither acked nor reported failed: {f:?}"
    );
    assert_eq!(never_attempted, 0, "{f:?}");
    assert_eq!(
        f.acked + reported_failed.len(),
        total,
        "every intended event acked once or reported failed: {f:?}"
    );
    assert!(
        never_applied <= reported_failed.len(),
        "only events reported failed may be missing from the topic: {f:?}"
    );
    f.assert_promise();
    // Within a session the idempotent producer writes nothing twice; across a kill, at most
    // the batch in flight was written without its acks being logged, and is sent again.
    assert!(
        f.dup_raw <= 2 * P4_BATCH,
        "raw duplicates beyond one in-flight batch per kill: {f:?}"
    );
    let _ = std::fs::remove_file(&log_path);
}
