//! Idempotence under forced retries: 0 duplicates and 0 losses of acked events.
//!
//! * `short_request_timeout_forces_retries_without_duplicates`: `request.timeout.ms` far below
//!   the cluster's acks=all latency makes the client give up on requests the broker did append,
//!   and resend them; the idempotent producer's sequence numbers make the broker drop the copies.
//! * `broker_kill_mid_stream_*` (3-node cluster only, `ORDERSTREAM_NODES=3`, `--ignored`):
//!   SIGKILL the leader of partition 0 mid-stream, restart it.

mod producer_support;

use std::time::{Duration, Instant};

use orderstream_producer::{DeliveryOutcome, OrderProducer};
use orderstream_testkit::TestEnv;
use rdkafka::consumer::{BaseConsumer, Consumer};

struct Tally {
    acked: Vec<String>,
    possibly_persisted: usize,
    failed: usize,
}

async fn produce(p: &OrderProducer, keys: usize, per_key: i64, chunk: usize) -> Tally {
    let mut t = Tally {
        acked: Vec::new(),
        possibly_persisted: 0,
        failed: 0,
    };
    let events: Vec<_> = (0..per_key)
        .flat_map(|seq| (0..keys).map(move |k| producer_support::event(k, seq)))
        .collect();
    for batch in events.chunks(chunk) {
        for (e, o) in batch.iter().zip(p.send_batch(batch).await) {
            match o {
                DeliveryOutcome::Delivered { .. } => t.acked.push(e.event_id.clone()),
                DeliveryOutcome::PossiblyPersisted { error, .. } => {
                    t.possibly_persisted += 1;
                    eprintln!("possibly persisted: {error}");
                }
                other => {
                    t.failed += 1;
                    eprintln!("failed: {other:?}");
                }
            }
        }
    }
    t
}

/// Round `round`: one event for each of 1 000 orders, sequence `round`.
async fn produce_round(p: &OrderProducer, round: i64) -> Tally {
    let events: Vec<_> = (0..1_000)
        .map(|k| producer_support::event(k, round))
        .collect();
    let mut t = Tally {
        acked: Vec::new(),
        possibly_persisted: 0,
        failed: 0,
    };
    for (e, o) in events.iter().zip(p.send_batch(&events).await) {
        match o {
            DeliveryOutcome::Delivered { .. } => t.acked.push(e.event_id.clone()),
            DeliveryOutcome::PossiblyPersisted { .. } => t.possibly_persisted += 1,
            other => {
                t.failed += 1;
                eprintln!("failed: {other:?}");
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_request_timeout_forces_retries_without_duplicates() {
    let env = TestEnv::connect().await;
    let mut cfg = producer_support::config(&env);
    // Broker-enforced ack timeout of 1 ms: with acks=all on RF 3 the leader has usually
    // appended the batch but not yet replicated it when the timeout fires, answers
    // REQUEST_TIMED_OUT, and librdkafka re-sends a batch the log already holds.
    cfg.request_timeout = Duration::from_millis(1);
    cfg.delivery_timeout = Duration::from_secs(60);
    cfg.retry_backoff.initial = Duration::from_millis(5);
    cfg.retry_backoff.max = Duration::from_millis(50);
    cfg.extra
        .insert("statistics.interval.ms".into(), "500".into());
    // Client-side request timeout (librdkafka's request.timeout.ms is enforced by the broker):
    // requests older than 10 ms at librdkafka's once-a-second scan are abandoned and retried,
    // although the broker may well have appended them.
    cfg.extra.insert("socket.timeout.ms".into(), "10".into());
    let (topic, p) = producer_support::producer(&env, "idem-retries", 6, cfg).await;
    let started = Instant::now();
    // librdkafka scans for timed-out requests once a second: keep producing (≥ 10k events)
    // until the statistics show request timeouts, bounded at 90 s.
    let mut t = Tally {
        acked: Vec::new(),
        possibly_persisted: 0,
        failed: 0,
    };
    let mut round = 0;
    loop {
        let r = produce_round(&p, round).await;
        t.acked.extend(r.acked);
        t.possibly_persisted += r.possibly_persisted;
        t.failed += r.failed;
        round += 1;
        let st = p.raw().retry_stats();
        let resent = st.records_transmitted.saturating_sub(t.acked.len() as u64);
        if (round >= 10 && resent > 0) || started.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await; // one more statistics report
    let st = p.raw().retry_stats();
    let (retries, timeouts) = (st.request_retries, st.request_timeouts);
    let resent = st
        .records_transmitted
        .saturating_sub((t.acked.len() + t.possibly_persisted) as u64);
    let report = p.shutdown(Duration::from_secs(30)).await;
    let msgs = env.read_all(&topic, producer_support::READ_TIMEOUT).await;
    let read = producer_support::decode_all(p.codec(), &msgs).await;
    let audit = producer_support::audit(&t.acked, &read);
    println!(
        "forced retries: {:.2?}, records transmitted {} (re-sent {resent}), request timeouts {timeouts}, request retries {retries}, possibly persisted {}, failed {}, {audit:?}, flush {report:?}",
        started.elapsed(),
        st.records_transmitted,
        t.possibly_persisted,
        t.failed
    );
    assert!(
        resent > 0,
        "the test must actually force re-sends (transmitted {} for {} acked)",
        st.records_transmitted,
        t.acked.len()
    );
    assert_eq!(audit.duplicates, 0, "idempotence must drop resent copies");
    assert_eq!(audit.acked_lost, 0);
    assert_eq!(audit.reorderings, 0);
    assert_eq!(t.failed, 0);
    // Possibly-persisted records may or may not be there; everything read is acked or in doubt.
    assert!(audit.distinct_read <= t.acked.len() + t.possibly_persisted);
}

fn leader_of(env: &TestEnv, topic: &str, partition: i32) -> i32 {
    let c: BaseConsumer = env.client_config().create().expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .expect("partition")
        .leader()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs 3-node cluster"]
async fn broker_kill_mid_stream_no_duplicates_no_acked_loss() {
    if std::env::var("ORDERSTREAM_NODES").as_deref() != Ok("3") {
        eprintln!("skipped: set ORDERSTREAM_NODES=3 with `scripts/kafka.sh start --nodes 3`");
        return;
    }
    let env = TestEnv::connect().await;
    assert!(env.brokers >= 3, "needs 3 brokers, found {}", env.brokers);
    let mut cfg = producer_support::config(&env);
    cfg.delivery_timeout = Duration::from_secs(120);
    let (topic, p) = producer_support::producer(&env, "idem-kill", 6, cfg).await;
    let victim = leader_of(&env, &topic, 0);
    let producer = p.clone();
    let task = tokio::spawn(async move { produce(&producer, 1_000, 30, 500).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("killing broker {victim} (leader of partition 0)");
    let v = victim.to_string();
    let killed_at = Instant::now();
    tokio::task::spawn_blocking({
        let v = v.clone();
        move || orderstream_testkit::kafka_script(&["kill", &v])
    })
    .await
    .expect("kill");
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::spawn_blocking(move || orderstream_testkit::kafka_script(&["start", &v]))
        .await
        .expect("start");
    println!("broker {victim} back after {:.1?}", killed_at.elapsed());
    let t = task.await.expect("producer task");
    p.shutdown(Duration::from_secs(30)).await;
    let msgs = env.read_all(&topic, Duration::from_secs(120)).await;
    let read = producer_support::decode_all(p.codec(), &msgs).await;
    let audit = producer_support::audit(&t.acked, &read);
    println!(
        "broker kill: possibly persisted {}, failed {}, rebuilds {}, {audit:?}",
        t.possibly_persisted,
        t.failed,
        p.rebuilds()
    );
    assert_eq!(audit.duplicates, 0);
    assert_eq!(audit.acked_lost, 0);
    assert_eq!(audit.reorderings, 0);
}
