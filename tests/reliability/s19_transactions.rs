//! Scenario 19, the transactional stage through broker bounces: two stage members (Kafka
//! transactions, EOS v2, the product's `run_transactional` with its order-status transform)
//! turn order events into status records while, four times, a broker is SIGKILLed and
//! restarted: alternately the transaction coordinator of member a's transactional id and the
//! leader of most orders partitions. Their transform also fails once, transiently, on every
//! `ABORT_EVERY`-th source offset, so transactions abort with outputs already in the log
//! however the faults fall.
//! Promise, read back by a `read_committed` reader: one status record per event in the
//! orders topic (set equality: 0 lost, 0 phantoms), none twice, each order's statuses in
//! sequence; the aborted transactions' records are in the log (a `read_uncommitted` reader
//! sees them) and none is visible; the group committed every input offset.
//! `missing_at` names the source positions of any status missing.
//!
//! The kills make rewinds fail while coordinators move: the stage retries them, and this
//! scenario is what catches a member that rejoins its group instead (records fetched past the
//! aborted batch are then delivered before the revoke and committed over it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderstream_consumer::{
    Output, ProcessError, Record, StageConfig, StageSummary, Transform, run_transactional,
};
use orderstream_orders::status::StatusTransform;
use orderstream_testkit::TestEnv;
use orderstream_topology::TopicRole;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::checker::{Ev, Observed, check};
use super::support::{
    BackgroundProducer, NodesGuard, Pace, blocking, leaders, wait_committed_to_end, wait_until,
};
use super::{finish, order_producer, producer_support, read_topic, setup};

/// Every this many source offsets (per partition) a record fails its first attempt.
const ABORT_EVERY: i64 = 500;
const ROUNDS: usize = 4;

/// The product's status transform, failing the first attempt of some records: the stage must
/// abort the transaction those records' batch was in, outputs already sent included.
struct AbortingOnce(StatusTransform);

impl Transform for AbortingOnce {
    async fn transform(&self, record: &Record, attempt: u32) -> Result<Vec<Output>, ProcessError> {
        if attempt == 0 && record.offset() % ABORT_EVERY == ABORT_EVERY - 1 {
            return Err(ProcessError::transient(
                "injected: this record's first attempt aborts its transaction",
            ));
        }
        self.0.transform(record, attempt).await
    }
}

/// The transaction coordinator of `transactional_id`, asked with Kafka's own
/// `TransactionsCommand`; `None` while it cannot say.
async fn txn_coordinator(env: &TestEnv, transactional_id: &str) -> Option<i32> {
    let (bootstrap, id) = (env.bootstrap.clone(), transactional_id.to_owned());
    let out = blocking(move || {
        std::panic::catch_unwind(|| {
            orderstream_testkit::kafka_script(&[
                "tool",
                "transactions",
                "--bootstrap-server",
                &bootstrap,
                "describe",
                "--transactional-id",
                &id,
            ])
        })
    })
    .await
    .ok()?;
    // A header line, then one row whose first column is the coordinator.
    out.lines().nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Status records as the checker's events: the event each was derived from, at its source
/// position, in the order a reader of the status topic met them.
fn statuses(msgs: &[OwnedMessage]) -> Vec<Ev> {
    msgs.iter()
        .map(|m| {
            let v: Value =
                serde_json::from_slice(m.payload().expect("status value")).expect("status JSON");
            let field = |k: &str| v[k].clone();
            Ev {
                event_id: field("event_id").as_str().expect("event_id").to_owned(),
                key: field("order_id").as_str().expect("order_id").to_owned(),
                sequence: field("sequence").as_i64().expect("sequence"),
                partition: field("source_partition").as_i64().expect("partition") as i32,
                offset: field("source_offset").as_i64().expect("offset"),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reliability suite: needs the 3-node cluster; run scripts/reliability.sh"]
async fn s19_transactions() {
    let started = Instant::now();
    let (env, t) = setup("rel-s19").await;
    let (source, output) = (t.names.orders.clone(), t.names.get(TopicRole::Status));
    let group = env.group_id("rel-s19");
    let stage = |member: &str| {
        let cfg = StageConfig::new(
            env.bootstrap.clone(),
            group.clone(),
            source.clone(),
            output,
            t.names.get(TopicRole::DeadLetter),
            format!("{group}-{member}"),
        );
        let transform = Arc::new(AbortingOnce(StatusTransform::new(producer_support::codec(
            &env,
        ))));
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            run_transactional(cfg, transform, c)
                .await
                .unwrap_or_else(|e| panic!("stage member: {e}"))
        });
        (cancel, task)
    };
    let members = [stage("a"), stage("b")];

    let p = order_producer(&env, &t, producer_support::config(&env)).await;
    let bg = BackgroundProducer::start(
        p,
        Pace {
            keys: 2_000,
            chunk: 100,
            pause: Duration::from_millis(100),
            min_events: 20_000,
        },
    );
    wait_until(
        "the producer's first ack on every partition",
        Duration::from_secs(60),
        || (0..6).all(|p| bg.last_ack_on(p).is_some()),
    )
    .await;

    let nodes = NodesGuard::default();
    let mut victims = Vec::new();
    let mut recover = Duration::ZERO;
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let victim = if round % 2 == 0 {
            txn_coordinator(&env, &format!("{group}-a")).await
        } else {
            let led = leaders(&env, &source).await;
            (1..=3).max_by_key(|n| led.values().filter(|l| *l == n).count())
        }
        .unwrap_or((round % 3 + 1) as i32);
        victims.push(victim);
        nodes.kill(victim).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        nodes.start(victim).await;
        let back = Instant::now();
        wait_until(
            "an ack on every partition after the restart",
            Duration::from_secs(120),
            || (0..6).all(|p| bg.last_ack_on(p).is_some_and(|at| at > back)),
        )
        .await;
        recover = recover.max(back.elapsed());
    }
    let log = bg.finish().await;
    wait_committed_to_end(
        &env,
        &group,
        &source,
        Duration::from_secs(240),
        "the stage did not commit the input's end",
    )
    .await;
    let mut summaries: Vec<StageSummary> = Vec::new();
    for (cancel, task) in members {
        cancel.cancel();
        summaries.push(task.await.expect("stage member task"));
    }
    let aborted: u64 = summaries.iter().map(|s| s.aborted).sum();
    let transactions: u64 = summaries.iter().map(|s| s.transactions).sum();
    let dead_lettered: u64 = summaries.iter().map(|s| s.dead_lettered).sum();

    let in_source = read_topic(&env, &source).await;
    let committed = statuses(&env.read_all(output, Duration::from_secs(120)).await);
    let uncommitted = env
        .read_all_uncommitted(output, Duration::from_secs(120))
        .await;
    // Records aborted transactions left in the log: there for a read_uncommitted reader,
    // never for a read_committed one.
    let aborted_in_log = uncommitted.len() - committed.len();
    let source_ids: BTreeSet<&str> = in_source.iter().map(|e| e.event_id.as_str()).collect();
    let output_ids: BTreeSet<&str> = committed.iter().map(|e| e.event_id.as_str()).collect();
    let missing_events: Vec<String> = in_source
        .iter()
        .filter(|e| !output_ids.contains(e.event_id.as_str()))
        .map(|e| format!("{}@{}", e.partition, e.offset))
        .collect();
    let missing = missing_events.len();
    let phantom = output_ids.difference(&source_ids).count();
    let uncommitted_dups = uncommitted.len()
        - statuses(&uncommitted)
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<BTreeSet<_>>()
            .len();

    let f = check(
        "19 transactional stage through broker bounces",
        &Observed {
            acked: log.acked,
            unacked: Some(log.unacked.clone()),
            possibly_persisted: log.possibly_persisted,
            consumed: committed,
            effects: None,
            recover: Some(recover),
        },
    )
    .with("broker_kills", victims.clone())
    .with("events_in_source", source_ids.len())
    .with("statuses_missing_for_source_events", missing)
    .with("statuses_without_source_event", phantom)
    .with(
        "missing_at",
        missing_events.iter().take(20).cloned().collect::<Vec<_>>(),
    )
    .with("transactions_committed", transactions)
    .with("transactions_aborted", aborted)
    .with("aborted_records_in_log", aborted_in_log)
    .with("duplicates_seen_read_uncommitted", uncommitted_dups)
    .with("dead_lettered", dead_lettered)
    .with(
        "recover",
        "broker restart to an ack on every partition (longest of the rounds)",
    )
    .with("failed", serde_json::to_value(&log.errors).unwrap());
    let f = finish(f, started);
    f.assert_promise();
    assert_eq!(
        (f.dup_raw, missing, phantom),
        (0, 0, 0),
        "exactly one committed status per source event: {f:?}"
    );
    assert_eq!(dead_lettered, 0, "no valid event dead-lettered");
    assert!(
        aborted > 0 && aborted_in_log > 0,
        "transactions must have aborted with records in the log ({aborted} aborted, \
         {aborted_in_log} records left), or the read_committed check proves nothing"
    );
}
