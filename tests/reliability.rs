//! Reliability suite: broker, client and registry faults on the 3-node cluster (RF 3,
//! min ISR 2, unclean election off), with figures.
//!
//! Every scenario is `#[ignore]`d so the fast suite skips it; run them all with
//! `scripts/reliability.sh` (starts the 3-node cluster when needed, writes `RELIABILITY.md`) or
//! `cargo test --test reliability -- --ignored --test-threads=1 --nocapture`. Scenarios are
//! named `sN_*` and run one at a time in the test runner's name order (s1, s10…s19, s2…s9);
//! each leaves the cluster and the registry as it found them, prints one table row and
//! appends it to `target/reliability/results.jsonl` (see `reliability/checker.rs` for the
//! definitions); RELIABILITY.md sorts the rows by number.
//!
//! Each scenario is a module in its own file, `reliability/sN_*.rs`. What they share stays
//! here (setup, the order producer, reading a topic back, child test processes), in
//! `reliability/support.rs` and in `reliability/checker.rs`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "reliability/checker.rs"]
mod checker;
mod producer_support;
#[path = "reliability/support.rs"]
mod support;
#[path = "reliability/toxiproxy.rs"]
mod toxiproxy;
// One file per scenario.
#[path = "reliability/s10_paused_leader.rs"]
mod s10_paused_leader;
#[path = "reliability/s11_hard_bounce.rs"]
mod s11_hard_bounce;
#[path = "reliability/s12_all_brokers_killed.rs"]
mod s12_all_brokers_killed;
#[path = "reliability/s13_controller_killed.rs"]
mod s13_controller_killed;
#[path = "reliability/s14_coordinator_killed.rs"]
mod s14_coordinator_killed;
#[path = "reliability/s15_broker_killed_while_dead_lettering.rs"]
mod s15_broker_killed_while_dead_lettering;
#[path = "reliability/s16_registry_wiped.rs"]
mod s16_registry_wiped;
#[path = "reliability/s17_network_faults.rs"]
mod s17_network_faults;
#[path = "reliability/s18_broker_links.rs"]
mod s18_broker_links;
#[path = "reliability/s19_transactions.rs"]
mod s19_transactions;
#[path = "reliability/s1_leader_kills.rs"]
mod s1_leader_kills;
#[path = "reliability/s2_rolling_restart.rs"]
mod s2_rolling_restart;
#[path = "reliability/s3_below_min_isr.rs"]
mod s3_below_min_isr;
#[path = "reliability/s4_producer_sigkill.rs"]
mod s4_producer_sigkill;
#[path = "reliability/s5_consumer_sigkill.rs"]
mod s5_consumer_sigkill;
#[path = "reliability/s6_rebalance_storm.rs"]
mod s6_rebalance_storm;
#[path = "reliability/s7_poison_records.rs"]
mod s7_poison_records;
#[path = "reliability/s8_registry_outage.rs"]
mod s8_registry_outage;
#[path = "reliability/s9_bad_input.rs"]
mod s9_bad_input;

use std::process::Command;
use std::time::{Duration, Instant};

use checker::{Ev, Figures};
use orderstream_orders::OrderProducer;
use orderstream_producer::ProducerConfig;
use orderstream_testkit::{Spawned, TestEnv, TestTopics};
use support::require_cluster;

async fn setup(test: &str) -> (TestEnv, TestTopics) {
    let env = TestEnv::connect().await;
    require_cluster(&env);
    let topics = env.topics(test).await;
    (env, topics)
}

async fn order_producer(env: &TestEnv, t: &TestTopics, cfg: ProducerConfig) -> OrderProducer {
    OrderProducer::new(
        cfg,
        producer_support::codec(env),
        orderstream_orders::topics::producer_topic(
            t.topology.topic(orderstream_topology::TopicRole::Orders),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("producer start: {e}"))
}

/// Reads the whole orders topic back and decodes it (consumption order = offset order per
/// partition).
async fn read_topic(env: &TestEnv, topic: &str) -> Vec<Ev> {
    let msgs = env.read_all(topic, Duration::from_secs(120)).await;
    producer_support::decode_all(&producer_support::codec(env), &msgs)
        .await
        .into_iter()
        .map(|(p, o, e)| Ev {
            event_id: e.event_id,
            key: e.order_id,
            sequence: e.sequence,
            partition: p,
            offset: o,
        })
        .collect()
}

fn finish(mut f: Figures, started: Instant) -> Figures {
    f.elapsed_s = started.elapsed().as_secs_f64();
    f = f.with("seed", support::seed().to_string());
    f.report();
    f
}

/// A child test process (SIGKILLed and reaped when dropped: a scenario that fails half-way
/// leaves no producer or group member running behind it).
fn spawn_child(test: &str, var: &str, spec: &str) -> Spawned {
    Spawned::start(
        test,
        Command::new(std::env::current_exe().unwrap())
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(var, spec)
            // The children's choices (handler latencies) follow the parent's seed.
            .env("RELIABILITY_SEED", support::seed().to_string()),
    )
}
