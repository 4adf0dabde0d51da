//! Scenario 3, below min ISR: the topics' `min.insync.replicas` is 3 (the replication factor)
//! and one broker is stopped, so every partition is below its minimum while the controller
//! quorum lives. Promise: no record whose delivery timeout ran out before the broker came back
//! (sent while below the minimum, ≥ 8 s before the restart) is acknowledged, a producer without retries
//! hears NOT_ENOUGH_REPLICAS from every partition, nothing acknowledged is lost, and acks resume
//! once the broker is back.

use std::time::{Duration, Instant};

use orderstream_producer::ProducerConfig;
use orderstream_testkit::TestEnv;

use super::checker::{Observed, check};
use super::support::{
    self, BackgroundProducer, NodesGuard, Pace, probe_min_isr, require_cluster, wait_until,
};
use super::{finish, order_producer, producer_support, read_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s3_below_min_isr() {
    let started = Instant::now();
    let env = TestEnv::connect().await;
    require_cluster(&env);
    // min.insync.replicas = replication factor = 3: one stopped broker puts every partition
    // below its minimum, while the other two controllers keep the quorum, so the ISR really
    // shrinks (with two brokers down the quorum is lost and nothing changes at all).
    let t = env.topics_with_min_isr("rel-s3", Some(3)).await;
    let delivery_timeout = Duration::from_secs(8);
    let cfg = ProducerConfig {
        delivery_timeout,
        request_timeout: Duration::from_secs(4),
        ..producer_support::config(&env)
    };
    let p = order_producer(&env, &t, cfg).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 500,
            chunk: 50,
            pause: Duration::from_millis(50),
            min_events: 0,
        },
    );
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;
    let nodes = NodesGuard::default();
    nodes.stop(3).await;
    // The outage, as far as this test may judge it, starts once every partition is seen with
    // fewer in-sync replicas than its minimum.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut isr = support::isr_sizes(&env, &t.names.orders).await;
        isr.extend(
            support::isr_sizes(&env, &t.names.retry)
                .await
                .into_iter()
                .map(|(p, n)| (p + 100, n)),
        );
        if isr.len() == 12 && isr.values().all(|n| *n < 3) {
            break;
        }
        assert!(Instant::now() < deadline, "ISR never shrank: {isr:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let below_min = Instant::now();
    // The probe writes to the layout's retry topic (same replicas, same minimum), so the
    // orders topic holds only the scenario's own events.
    let probe = probe_min_isr(&env, &t.names.retry, &[0, 1, 2, 3, 4, 5]).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(below_min.elapsed())).await;
    let outage_end = Instant::now();
    nodes.start(3).await;
    let restarted = Instant::now();
    wait_until("acks after recovery", Duration::from_secs(120), || {
        (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > restarted))
    })
    .await;
    let recover = outage_end.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = bg.finish().await;
    // Records whose batch was sent while every ISR was below its minimum and whose delivery
    // timeout ran out before the broker was started again (batch start = ack instant − ack
    // latency): Kafka may acknowledge none of them, however late the ack is seen. A batch
    // sent later may rightly be acknowledged once the broker is back.
    let judged = below_min
        ..outage_end
            .checked_sub(delivery_timeout)
            .unwrap_or(below_min);
    let acked_sent_below_min = log
        .acked_at
        .iter()
        .zip(&log.latencies)
        .map(|(at, latency)| *at - *latency)
        .filter(|sent| judged.contains(sent))
        .count();
    let consumed = read_topic(&env, &t.names.orders).await;
    let f = check(
        "3 below min ISR",
        &Observed {
            acked: log.acked.clone(),
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed,
            effects: None,
            recover: Some(recover),
        },
    )
    .with("acked_sent_while_isr_below_min", acked_sent_below_min)
    .with("judged_window_s", (judged.end - judged.start).as_secs_f64())
    .with("probe_not_enough_replicas_of_6", probe.not_enough_replicas)
    .with("probe_acked", probe.acked)
    .with(
        "probe_other_answers",
        serde_json::to_value(&probe.other).unwrap(),
    )
    .with(
        "failed_or_in_doubt",
        serde_json::to_value(&log.errors).unwrap(),
    )
    .with("outage_s", 20)
    .with(
        "recover",
        "restart of the stopped node until every partition acks again",
    )
    .with("first_error", log.first_error.clone());
    let f = finish(f, started);
    assert_eq!(
        acked_sent_below_min, 0,
        "records sent while ISR < min ISR were acknowledged: {f:?}"
    );
    assert_eq!(
        probe.acked, 0,
        "the probe was acknowledged below min ISR: {probe:?}"
    );
    assert_eq!(
        probe.not_enough_replicas, 6,
        "every partition answers NOT_ENOUGH_REPLICAS: {probe:?}"
    );
    assert!(
        !log.errors.is_empty(),
        "the producer must report failures or timeouts during the outage"
    );
    f.assert_promise();
}
