//! Scale-out against the real cluster: one member, then three, on a 6-partition topic while
//! Avro order events are being produced. Every partition ends up owned, every acknowledged
//! event is applied, and effects happen exactly once after dedup.

#![allow(clippy::unwrap_used)]

mod producer_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::{
    ConsumerConfig, GroupProtocol, ProcessError, Processor, Record, RunSummary, Topics,
};
use orderstream_orders::OrderProducer;
use orderstream_orders::{OrderProcessor, OrderState, SampleConfig};
use orderstream_producer::ProducerTopic;
use orderstream_testkit::{Spawned, TestEnv};
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
    let mut cfg = ConsumerConfig::new(
        env.bootstrap.clone(),
        group.clone(),
        orderstream_orders::topics::member_topics(&topics.names),
    );
    // Only the orders topic: every partition carries work, so whichever 2 of the 6 the
    // assignor gives each member, every member has records to process (with the retry topic
    // subscribed too, a member could legitimately own only empty retry partitions).
    cfg.consume_retry_topic = false;
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
            env.wait_for_group(&group, 1, Duration::from_secs(60)).await;
        }
        if step == 1 {
            members.push(spawn_member());
            members.push(spawn_member());
            // Cooperative-sticky moves partitions in two rounds once all have joined (the
            // group is briefly Stable in between, with the new members owning nothing): wait
            // for the final assignment before producing the remaining rounds.
            let owned = env
                .wait_for_assignments(
                    &group,
                    3,
                    usize::try_from(orders.partitions).unwrap_or(0),
                    Duration::from_secs(60),
                )
                .await;
            println!("assignment after scale-out: {owned:?}");
        }
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    while processor.snapshot().applied_events < acked as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stop only once the running group has committed everything: new owners may still be
    // reprocessing redelivered records, and shutdown commits only the contiguous frontier.
    wait_committed_to_end(&env, &group, &orders.name, Duration::from_secs(60)).await;
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

/// Polls until the committed offsets of `group` on `topic` equal its end offsets (measured once:
/// call it after production finished).
///
/// # Panics
/// When they are not equal within `timeout`, with the last committed offsets seen.
async fn wait_committed_to_end(env: &TestEnv, group: &str, topic: &str, timeout: Duration) {
    let ends = env.end_offsets(topic);
    let deadline = Instant::now() + timeout;
    loop {
        let committed = env.committed_offsets(group, topic).await;
        if committed == ends {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} did not commit to the end of {topic} within {timeout:?}: \
             committed {committed:?}, end {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per member id, the `(topic, partition)`s the group leader assigned to it.
/// Each topic is balanced on its own: 1, 2, then 3 member **processes** (the default config,
/// which also consumes the retry topic) on a 6-partition orders topic whose retry topic has
/// more partitions than the orders topic. Every step ends with each member owning exactly
/// 6 / N orders partitions, whatever the retry topic's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_partitions_spread_over_member_processes_classic() {
    orders_partitions_spread("spread", GroupProtocol::default()).await;
}

/// The same with the KIP-848 consumer group protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_partitions_spread_over_member_processes_kip848() {
    orders_partitions_spread("spread848", GroupProtocol::Consumer).await;
}

async fn orders_partitions_spread(name: &str, protocol: GroupProtocol) {
    let env = TestEnv::connect().await;
    let base = env.unique(name);
    let topics = Topics::new(base.clone(), format!("{base}.retry"), format!("{base}.dlq"));
    env.create_topic(&topics.source, 6).await;
    env.create_topic(&topics.retry, 8).await;
    env.create_topic(&topics.dead_letter, 1).await;
    let group = env.group_id(name);
    let kip848 = protocol == GroupProtocol::Consumer;
    let spec = format!(
        "{}|{}|{}|{}|{}|{}",
        env.bootstrap, group, topics.source, topics.retry, topics.dead_letter, kip848
    );
    let mut children = Vec::new();
    for members in 1..=3usize {
        children.push(Spawned::start(
            "spread_child_member",
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "spread_child_member", "--ignored", "--nocapture"])
                .env("ORDERSTREAM_SPREAD_SPEC", &spec),
        ));
        let spread = wait_for_spread(&env, &group, &topics.source, members).await;
        println!("{members} member process(es): orders partitions per member {spread:?}");
        assert_eq!(
            spread,
            vec![6 / members; members],
            "orders partitions per member"
        );
    }
}

/// Polls `ConsumerGroupCommand --describe --members --verbose` (it answers for both group
/// protocols) until `members` members each own `6 / members` partitions of `topic`; returns the
/// last spread seen (sorted) either way after 90 s.
async fn wait_for_spread(env: &TestEnv, group: &str, topic: &str, members: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let (b, g, t) = (env.bootstrap.clone(), group.to_owned(), topic.to_owned());
        let spread = tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("bash")
                .arg(orderstream_testkit::repo_root().join("scripts/kafka.sh"))
                .args(["tool", "consumer-groups", "--bootstrap-server", &b])
                .args(["--describe", "--group", &g, "--members", "--verbose"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            orderstream_testkit::partitions_per_member(&out, &g, &t)
        })
        .await
        .unwrap();
        if spread == vec![6 / members; members] {
            return spread;
        }
        last = spread;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// Accepts every record.
struct Accept;

impl Processor for Accept {
    async fn process(&self, _: &Record) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// Not a test on its own: a member process of `orders_partitions_spread_*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of orders_partitions_spread_over_member_processes_*"]
async fn spread_child_member() {
    let Ok(spec) = std::env::var("ORDERSTREAM_SPREAD_SPEC") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let cfg = ConsumerConfig {
        group_protocol: if f[5] == "true" {
            GroupProtocol::Consumer
        } else {
            GroupProtocol::default()
        },
        session_timeout: Duration::from_secs(10),
        revoke_drain_timeout: Duration::from_secs(3),
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(f[0], f[1], Topics::new(f[2], f[3], f[4]))
    };
    // runs until SIGKILLed
    orderstream_consumer::run(cfg, Arc::new(Accept), CancellationToken::new())
        .await
        .unwrap();
}
