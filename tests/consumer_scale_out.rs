//! Scale-out against the real cluster: one member, then three, on a 6-partition topic while
//! Avro order events are being produced. Every partition ends up owned, every acknowledged
//! event is applied, and effects happen exactly once after dedup.

mod producer_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::sample::{OrderProcessor, OrderState, SampleConfig};
use orderstream_consumer::{ConsumerConfig, RunSummary, Topics};
use orderstream_producer::{OrderProducer, ProducerTopic};
use orderstream_testkit::TestEnv;
use orderstream_topology::TopicRole;
use producer_support::{codec, config, event};
use tokio_util::sync::CancellationToken;

const ORDERS: usize = 600;
/// Created, paid, shipped, delivered.
const LIFECYCLE: i64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_then_three_members_while_producing() {
    let env = TestEnv::connect().await;
    let topics = env.topics("scale-out").await;
    let orders = topics.topology.topic(TopicRole::Orders);
    let codec = codec(&env);
    let producer = OrderProducer::new(
        config(&env),
        codec.clone(),
        ProducerTopic::new(orders.name.clone(), orders.partitions),
    )
    .await
    .expect("producer");

    let processor = Arc::new(OrderProcessor::new(codec, SampleConfig::default()));
    let group = env.group_id("scale-out");
    let cfg = ConsumerConfig::new(
        env.bootstrap.clone(),
        group.clone(),
        Topics::from(&topics.names),
    );
    let stop = CancellationToken::new();
    let spawn_member = || {
        tokio::spawn(orderstream_consumer::run(
            cfg.clone(),
            Arc::clone(&processor),
            stop.child_token(),
        ))
    };

    // Produce in rounds (each order's events in sequence) while the group grows.
    let mut members = vec![spawn_member()];
    let mut acked = 0usize;
    for step in 0..LIFECYCLE {
        let mut pending = Vec::with_capacity(ORDERS);
        for order in 0..ORDERS {
            pending.push(producer.enqueue(&event(order, step)).await);
        }
        for p in pending {
            assert!(p.outcome().await.is_delivered(), "every send acknowledged");
            acked += 1;
        }
        if step == 0 {
            env.wait_for_group(&group, 1, Duration::from_secs(30)).await;
        }
        if step == 1 {
            members.push(spawn_member());
            members.push(spawn_member());
            // Cooperative-sticky moves partitions in up to two rounds once all have joined.
            env.wait_for_group(&group, 3, Duration::from_secs(60)).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    while processor.snapshot().applied_events < acked as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the cooperative rebalance settle before stopping, so the figures are final.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut summaries: Vec<RunSummary> = Vec::new();
    for m in members {
        summaries.push(m.await.expect("join").expect("member ran"));
    }
    producer.shutdown(Duration::from_secs(10)).await;

    let snap = processor.snapshot();
    println!(
        "acked {acked}, applied {}, duplicates skipped {}, per member processed {:?}",
        snap.applied_events,
        snap.duplicates,
        summaries.iter().map(|s| s.processed).collect::<Vec<_>>()
    );
    assert_eq!(
        snap.applied_events, acked as u64,
        "every acked event applied exactly once"
    );
    assert_eq!(snap.rejected, 0);
    assert_eq!(snap.orders.len(), ORDERS);
    assert!(
        snap.orders.values().all(|s| *s == OrderState::Delivered),
        "in-order effects"
    );
    // The two late members took partitions over from the first.
    assert!(
        summaries.iter().all(|s| s.processed > 0),
        "each member processed records: {summaries:?}"
    );
    assert!(summaries.iter().all(|s| s.revoke_commits_failed == 0));
    let committed = env.committed_offsets(&group, &orders.name).await;
    assert_eq!(
        committed,
        env.end_offsets(&orders.name),
        "lag 0 on all 6 partitions"
    );
}
