//! Scenario 15, a broker dies while the member dead-letters: 20 000 undecodable records among
//! 4 000 valid events; once the member's forwarder has written a tenth of them to the
//! dead-letter topic, the leader of that topic's partition 0 is SIGKILLed. The forwarder is an
//! idempotent producer whose sends are retried, and a record's offset is committed only after
//! its dead letter is acknowledged. Promise: every undecodable record is in the dead-letter
//! topic (matched by its source partition and offset), no valid event is dead-lettered, no
//! forward is abandoned, and the group commits to the end of the orders topic while the broker
//! is down. A dead letter may be written twice: a send that timed out may have been written
//! all the same and is sent again (`forwards_resent` bounds those copies), and after a lost
//! assignment its record comes back and is dead-lettered again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::ConsumerConfig;
use orderstream_consumer::headers as h;
use orderstream_orders::{OrderProcessor, SampleConfig};

use super::checker::without_delivery;
use super::support::{
    NodesGuard, consumer_config, leaders, pipeline_topics, spawn_member, wait_isr_full,
};
use super::{finish, order_producer, producer_support, setup};

const POISON: usize = 20_000;
const VALID: usize = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s15_broker_sigkill_while_dead_lettering() {
    let started = Instant::now();
    let (env, t) = setup("rel-s15").await;
    let topic = t.names.orders.clone();
    let dlq = t.names.dead_letter.clone();
    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let valid: Vec<_> = (0..VALID)
        .map(|n| producer_support::event(n % 1_000, (n / 1_000) as i64))
        .collect();
    let outcomes = p.send_batch(&valid).await;
    assert!(
        outcomes.iter().all(|o| o.position().is_some()),
        "valid events acked"
    );
    // Not Confluent-framed (magic byte 7): a permanent decode failure, dead-lettered at once.
    let keys: Vec<String> = (0..POISON).map(|i| format!("poison-{i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .map(|k| (Some(k.as_bytes()), b"\x07 not an order event".as_slice()))
        .collect();
    let mut poison: BTreeSet<(i32, i64)> = BTreeSet::new();
    for o in p.raw().send_raw_batch(&records, &[]).await {
        poison.insert(
            o.position()
                .unwrap_or_else(|| panic!("poison not acked: {o:?}")),
        );
    }
    let ends = env.end_offsets(&topic);
    let processor = Arc::new(OrderProcessor::new(
        producer_support::codec(&env),
        SampleConfig::default(),
    ));
    let group = env.group_id("rel-s15");
    // A dead letter not acknowledged within 2 s times out in librdkafka and comes back to the
    // member's own retry loop: the kill must be survived by that loop, not only by librdkafka's
    // internal retries (which outlast a leader failover with the default 30 s).
    let cfg = ConsumerConfig {
        produce_timeout: Duration::from_secs(2),
        ..consumer_config(&env.bootstrap, &group, pipeline_topics(&t))
    };
    let (cancel, member) = spawn_member(cfg, Arc::clone(&processor));
    let deadline = Instant::now() + Duration::from_secs(60);
    let written_at_kill = loop {
        let written: i64 = env.end_offsets(&dlq).values().sum();
        if written >= (POISON / 10) as i64 {
            break written;
        }
        assert!(Instant::now() < deadline, "the member dead-letters nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let victim = leaders(&env, &dlq).await[&0];
    let nodes = NodesGuard::default();
    nodes.kill(victim).await;
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let committed = env.committed_offsets(&group, &topic).await;
        if committed == ends {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits stuck after the kill: committed {committed:?}, ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let committed_to_end = killed.elapsed();
    cancel.cancel();
    let summary = member.await.expect("member task");
    nodes.start(victim).await;
    wait_isr_full(&env, &dlq, Duration::from_secs(120)).await;
    // Every dead letter, by the source position its headers name.
    let letters = env.read_all(&dlq, Duration::from_secs(60)).await;
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut unreadable = 0;
    for m in &letters {
        let field = |name| {
            producer_support::header(m, name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        match (field(h::DLQ_SOURCE_PARTITION), field(h::DLQ_SOURCE_OFFSET)) {
            (Some(p), Some(o)) => *seen.entry((p as i32, o)).or_default() += 1,
            _ => unreadable += 1,
        }
    }
    let missing = poison.iter().filter(|pos| !seen.contains_key(pos)).count();
    let not_poison = seen.keys().filter(|pos| !poison.contains(pos)).count();
    let twice: usize = seen.values().map(|n| n - 1).sum();
    let f = without_delivery("15 broker SIGKILL while dead-lettering")
        .with("poison_records", POISON)
        .with("valid_events", VALID)
        .with("dead_letters_written_at_kill", written_at_kill)
        .with("killed_broker", victim)
        .with("dead_letters", letters.len())
        .with("poison_missing_from_dlq", missing)
        .with("dead_letters_not_poison", not_poison)
        .with("dead_letters_twice", twice)
        .with("dead_letters_without_source", unreadable)
        .with("forwards_abandoned", summary.forwards_abandoned)
        .with("forwards_resent", summary.forwards_resent)
        .with("partitions_lost", summary.partitions_lost)
        .with("forward_producer_rebuilds", summary.producer_rebuilds)
        .with("committed_to_end_ms", committed_to_end.as_millis() as u64)
        .with(
            "recover",
            "kill of the dead-letter leader to the orders topic committed to its end",
        );
    let f = finish(f, started);
    assert_eq!(
        missing, 0,
        "undecodable records missing from the DLQ: {f:?}"
    );
    assert_eq!(not_poison, 0, "valid events dead-lettered: {f:?}");
    assert_eq!(unreadable, 0, "dead letters without source headers: {f:?}");
    // A forward is given up only when its partition is taken away (the member must stop
    // touching it; the next owner dead-letters the record again, which `missing == 0` proves);
    // with the assignment kept, the member's own retry loop must carry the whole outage.
    if summary.partitions_lost == 0 {
        assert_eq!(summary.forwards_abandoned, 0, "{f:?}");
    }
    assert!(
        summary.forwards_resent > 0,
        "no dead letter had to be sent again: the kill missed the forwarding: {f:?}"
    );
    if summary.partitions_lost == 0 {
        assert!(
            twice as u64 <= summary.forwards_resent,
            "more copies than sends repeated, without a lost assignment: {f:?}"
        );
    }
    assert!(
        summary.stopped_cleanly(),
        "the member stopped cleanly: {summary:?}"
    );
}
