//! Scenario 8, registry outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_producer::DeliveryOutcome;

use super::checker::{Observed, check};
use super::support::{
    self, Recorder, RegistryGuard, consumer_config, pipeline_topics, spawn_member,
    wait_consumed_all,
};
use super::{finish, order_producer, producer_support, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s8_registry_outage() {
    let started = Instant::now();
    let (env, t) = setup("rel-s8").await;
    let topics = pipeline_topics(&t);
    let warm = order_producer(&env, &t, producer_support::config(&env)).await;
    let rec = Arc::new(Recorder::new(producer_support::codec(&env), 0));
    let group = env.group_id("rel-s8");
    let (cancel, member) = spawn_member(
        consumer_config(&env.bootstrap, &group, topics.clone()),
        Arc::clone(&rec),
    );
    let mut plog = support::ProduceLog::default();
    let mut seq = 0;
    let mut send_round = async |plog: &mut support::ProduceLog| {
        let events: Vec<_> = (0..200).map(|k| producer_support::event(k, seq)).collect();
        seq += 1;
        let t0 = Instant::now();
        let outcomes = warm.send_batch(&events).await;
        plog.record(&events, outcomes, t0);
    };
    send_round(&mut plog).await;
    wait_consumed_all(&rec, &plog.acked, Duration::from_secs(60)).await;
    let before_outage = plog.acked.len();
    let mut guard = RegistryGuard::stop().await;
    for _ in 0..10 {
        send_round(&mut plog).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during_outage_acked = plog.acked.len() - before_outage;
    let during_outage_failed: usize = plog.errors.values().sum();
    // a producer whose codec has never seen the registry
    let cold = order_producer(&env, &t, producer_support::config(&env)).await;
    let t0 = Instant::now();
    let outcome = cold.send(&producer_support::event(5_000, 0)).await;
    let cold_fail_ms = t0.elapsed().as_millis() as u64;
    // what a user sees: the error and its causes
    let cold_msg = outcome
        .error()
        .map(|e| orderstream_schema::error_chain(e))
        .unwrap_or_default();
    let cold_ok = matches!(
        outcome,
        DeliveryOutcome::NotSent {
            retriable: true,
            ..
        }
    );
    println!("cold producer during the outage: {outcome:?}");
    wait_consumed_all(&rec, &plog.acked, Duration::from_secs(60)).await;
    let restart_t0 = Instant::now();
    guard.start().await;
    let recover = restart_t0.elapsed();
    let after = cold.send(&producer_support::event(5_001, 0)).await;
    cancel.cancel();
    let summary = member.await.unwrap();
    let dlq: i64 = env.end_offsets(&topics.dead_letter).values().sum();
    let f = check(
        "8 registry outage",
        &Observed {
            acked: plog.acked.clone(),
            // Records are also sent outside this log (poison, other writers): phantoms and
            // gaps cannot be judged from it.
            unacked: None,
            possibly_persisted: plog.possibly_persisted,
            consumed: rec.consumed(),
            // the recorder's dedup is the test's, not the product's: not a product figure
            effects: None,
            recover: Some(recover),
        },
    )
    .with("acked_during_outage_warm_cache", during_outage_acked)
    .with("warm_failed_during_outage", during_outage_failed)
    .with("misrouted_to_dlq", dlq)
    .with(
        "consumer_decode_errors",
        rec.decode_errors.load(std::sync::atomic::Ordering::Relaxed),
    )
    .with("cold_producer_not_sent_retriable", cold_ok)
    .with("cold_producer_fail_ms", cold_fail_ms)
    .with("cold_producer_error", cold_msg.clone())
    .with(
        "cold_producer_after_restart_delivered",
        after.is_delivered(),
    )
    .with("recover", "registry restart until it answers");
    let f = finish(f, started);
    println!("{summary:?}");
    assert_eq!(during_outage_failed, 0, "warm producer kept sending: {f:?}");
    assert_eq!(dlq, 0, "nothing misrouted to the DLQ");
    assert!(
        cold_ok,
        "cold producer must fail NotSent retriable: {cold_msg}"
    );
    assert!(
        cold_msg.to_lowercase().contains("registry"),
        "the cold producer's error must name the registry: {cold_msg}"
    );
    assert!(
        after.is_delivered(),
        "after restart the cold producer sends: {after:?}"
    );
    f.assert_promise();
}
