//! Partition owners without a broker: records handed over, completed out of order, failed,
//! revoked and cancelled; what the poll thread may commit afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::handler::{Batched, Handler, PartCtx, PerRecord, Shared};
use super::partitions::{Drained, Owned, drain};
use super::{client, owner, parked, summary};
use crate::forward_producer::ForwardProducer;
use crate::{BatchProcessor, ConsumerConfig, ProcessError, Processor, Record, Topics};

fn cfg() -> ConsumerConfig {
    ConsumerConfig {
        retry_topic_enabled: false,
        ..ConsumerConfig::new("127.0.0.1:1", "g", Topics::new("o", "o.retry", "o.dlq"))
    }
}

fn shared<H: Handler>(cfg: ConsumerConfig, handler: H) -> Arc<Shared<H>> {
    // never reaches a broker: a dead-letter send blocks until the partition stops
    let producer =
        ForwardProducer::new(client::producer_config(&cfg), Duration::from_secs(1)).unwrap();
    Arc::new(Shared {
        cfg,
        handler,
        producer,
        parked: parked::Parked::default(),
        counters: summary::Counters::default(),
    })
}

fn rec(offset: i64, key: u8) -> Record {
    Record::from_parts(
        "o",
        0,
        offset,
        Some(&[key]),
        Some(&offset.to_le_bytes()),
        [],
        Some(0),
    )
}

fn part_ctx() -> Arc<PartCtx> {
    Arc::new(PartCtx::new("o".into(), 0, false, Arc::default()))
}

/// Hands `records` to a fresh owner, waits `run_for`, then drains with `drain_for`.
async fn one_partition<H: Handler>(
    sh: &Arc<Shared<H>>,
    records: Vec<Record>,
    run_for: Duration,
    drain_for: Duration,
) -> Drained {
    one_partition_of(part_ctx(), sh, vec![records], run_for, drain_for).await
}

/// [`one_partition`] with a partition context of the caller's (e.g. to stop it from a handler),
/// the records handed over in `parts` 1.5 ms apart (so later parts arrive while earlier records
/// run).
async fn one_partition_of<H: Handler>(
    ctx: Arc<PartCtx>,
    sh: &Arc<Shared<H>>,
    parts: Vec<Vec<Record>>,
    run_for: Duration,
    drain_for: Duration,
) -> Drained {
    let mut o = Owned::new(owner::spawn(
        &tokio::runtime::Handle::current(),
        Arc::clone(sh),
        ctx,
    ));
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_micros(1500)).await;
        }
        for r in part {
            assert!(o.push(r));
        }
        o.flush();
    }
    tokio::time::sleep(run_for).await;
    tokio::task::spawn_blocking(move || drain(vec![o], Instant::now() + drain_for))
        .await
        .unwrap()
        .pop()
        .unwrap()
}

/// Sleeps a per-offset time (under 1 000 µs: no sleep, the call finishes at once; from
/// 1 000 µs on: the excess), fails the chosen offsets permanently, records effects in order.
#[derive(Debug, Default)]
struct Scripted {
    delay_us: HashMap<i64, u64>,
    fail: Vec<i64>,
    effects: Mutex<Vec<(u8, i64)>>,
}

impl Processor for Scripted {
    async fn process(&self, r: &Record) -> Result<(), ProcessError> {
        let us = self.delay_us.get(&r.offset()).copied().unwrap_or(0);
        // Calls that finish at once start records straight from the hand-over; calls that wait
        // own their key in the scheduler: both, interleaved, must keep each key's order.
        if us >= 1000 {
            tokio::time::sleep(Duration::from_micros(us - 1000)).await;
        }
        if self.fail.contains(&r.offset()) {
            return Err(ProcessError::permanent("scripted", "fails"));
        }
        let key = r.key().and_then(|k| k.first().copied()).unwrap_or(0);
        self.effects.lock().unwrap().push((key, r.offset()));
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random keys, completion orders, failures (stuck in a dead-letter send that never
    /// completes), revoke times and drain deadlines: the committable offset never passes a
    /// record without an effect, and a key's effects happen in offset order.
    #[test]
    fn revoke_never_commits_past_unfinished_work(
        keys in prop::collection::vec(0u8..6, 1..60),
        delays in prop::collection::vec(0u64..3000, 60),
        fail in prop::collection::vec(0i64..60, 0..3),
        run_ms in 0u64..15,
        drain_ms in 0u64..10,
    ) {
        let records: Vec<Record> = keys.iter().enumerate().map(|(i, k)| rec(i as i64, *k)).collect();
        let p = Arc::new(Scripted {
            delay_us: (0..60).map(|i| (i, delays[i as usize])).collect(),
            fail,
            ..Scripted::default()
        });
        let sh = shared(ConsumerConfig { max_concurrency: 4, ..cfg() }, PerRecord(Arc::clone(&p)));
        let d = runtime().block_on(one_partition(
            &sh,
            records,
            Duration::from_millis(run_ms),
            Duration::from_millis(drain_ms),
        ));
        let effects = p.effects.lock().unwrap().clone();
        let done: std::collections::BTreeSet<i64> = effects.iter().map(|(_, o)| *o).collect();
        if let Some(c) = d.committable {
            for o in 0..c {
                prop_assert!(done.contains(&o), "offset {o} below committable {c} has no effect");
            }
        }
        let mut last: BTreeMap<u8, i64> = BTreeMap::new();
        for (k, o) in effects {
            prop_assert!(last.insert(k, o).is_none_or(|prev| prev < o), "key {k} out of order");
        }
    }
}

/// Counts effects that happen after a long await: a handler cut off by the drain deadline must
/// never apply its effect afterwards (the new owner may already be processing the key).
#[derive(Debug, Default)]
struct Slow {
    effects: AtomicU64,
}

impl Processor for Slow {
    async fn process(&self, _: &Record) -> Result<(), ProcessError> {
        tokio::time::sleep(Duration::from_millis(600)).await;
        self.effects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Four records of four keys to [`Slow`], a revoke after 50 ms, a drain of `drain_for`.
async fn four_slow_records_drained_within(
    drain_for: Duration,
) -> (Arc<Slow>, Arc<Shared<PerRecord<Slow>>>, Drained) {
    let p = Arc::new(Slow::default());
    let sh = shared(cfg(), PerRecord(Arc::clone(&p)));
    let records = (0..4).map(|o| rec(o, o as u8)).collect();
    let d = one_partition(&sh, records, Duration::from_millis(50), drain_for).await;
    (p, sh, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_past_the_drain_deadline_are_cancelled() {
    let (p, sh, d) = four_slow_records_drained_within(Duration::from_millis(100)).await;
    assert_eq!(d.committable, None, "nothing finished: nothing to commit");
    assert_eq!(d.uncommitted, Some(0..4));
    assert_eq!(sh.counters.cancelled.load(Ordering::Relaxed), 4);
    assert!(!d.stuck, "every cancelled handler yielded");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        p.effects.load(Ordering::SeqCst),
        0,
        "a cancelled handler applied its effect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_within_the_deadline_commits_everything() {
    let (p, sh, d) = four_slow_records_drained_within(Duration::from_secs(5)).await;
    assert_eq!(d.committable, Some(4));
    assert_eq!(d.uncommitted, None);
    assert_eq!(p.effects.load(Ordering::SeqCst), 4);
    assert_eq!(sh.counters.cancelled.load(Ordering::Relaxed), 0);
}

/// Blocks its thread without yielding: cancellation cannot reach it.
#[derive(Debug, Default)]
struct Blocking;

impl Processor for Blocking {
    async fn process(&self, _: &Record) -> Result<(), ProcessError> {
        std::thread::sleep(Duration::from_millis(3_000));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_yields_is_reported_stuck() {
    let sh = shared(cfg(), PerRecord(Arc::new(Blocking)));
    let d = one_partition(
        &sh,
        vec![rec(0, 0)],
        Duration::from_millis(50),
        Duration::from_millis(100),
    )
    .await;
    assert!(d.stuck, "released while its handler still ran: {d:?}");
    assert_eq!(d.committable, None);
}

/// Records every batch it gets.
#[derive(Debug, Default)]
struct Batches {
    seen: Mutex<Vec<Vec<(u8, i64)>>>,
}

impl BatchProcessor for Batches {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let batch = records
            .iter()
            .map(|r| (r.key().unwrap()[0], r.offset()))
            .collect();
        self.seen.lock().unwrap().push(batch);
        records.iter().map(|_| Ok(())).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_one_record_per_key_in_order() {
    // 13 keys in turn: eight records in a row never share one. 3 keys in turn: they always
    // do. Squares mod 23: 12 keys that repeat at uneven distances, so a batch takes queued
    // records of some keys and newer ones of others.
    batches_of("13 keys", |o| (o * 7 % 13) as u8).await;
    batches_of("3 keys", |o| (o % 3) as u8).await;
    batches_of("squares mod 23", |o| (o * o % 23) as u8).await;
}

async fn batches_of(name: &str, key: fn(i64) -> u8) {
    let p = Arc::new(Batches::default());
    let sh = shared(
        ConsumerConfig {
            max_batch_records: 8,
            ..cfg()
        },
        Batched(Arc::clone(&p)),
    );
    // Handed over in eight parts while batches run (each takes a millisecond or more), so
    // records also arrive for keys that a running batch or the scheduler's queue holds.
    let parts = (0..8)
        .map(|part| {
            (part * 25..(part + 1) * 25)
                .map(|offset| rec(offset, key(offset)))
                .collect()
        })
        .collect();
    let d = one_partition_of(
        part_ctx(),
        &sh,
        parts,
        // a drain drops queued records: give the 25 to 67 batches time to finish first
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(d.committable, Some(200));
    let seen = p.seen.lock().unwrap().clone();
    assert!(
        seen.len() > 1 && seen.iter().any(|b| b.len() > 1),
        "{name}, batched: {seen:?}"
    );
    let mut last: BTreeMap<u8, i64> = BTreeMap::new();
    let mut total = 0;
    for b in &seen {
        assert!(b.len() <= 8);
        let mut in_batch: Vec<u8> = b.iter().map(|(k, _)| *k).collect();
        in_batch.sort_unstable();
        in_batch.dedup();
        assert_eq!(
            in_batch.len(),
            b.len(),
            "{name}: one record per key in a batch: {b:?}"
        );
        assert!(
            b.windows(2).all(|w| w[0].1 < w[1].1),
            "{name}: offsets ascend in a batch: {b:?}"
        );
        for (k, o) in b {
            assert!(
                last.insert(*k, *o).is_none_or(|prev| prev < *o),
                "{name}: key {k} out of order"
            );
            total += 1;
        }
    }
    assert_eq!(total, 200);
    assert_eq!(sh.counters.processed.load(Ordering::Relaxed), 200);
}

/// Panics on offset 0 (a handler bug); records every other offset it handled.
#[derive(Debug, Default)]
struct PanicsOnFirst {
    done: Mutex<Vec<i64>>,
}

impl Processor for PanicsOnFirst {
    async fn process(&self, r: &Record) -> Result<(), ProcessError> {
        assert_ne!(r.offset(), 0, "a bug in the handler");
        self.done.lock().unwrap().push(r.offset());
        Ok(())
    }
}

impl BatchProcessor for PanicsOnFirst {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        let mut out = Vec::new();
        for r in records {
            out.push(Processor::process(self, r).await);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_record_not_the_partition() {
    for batched in [false, true] {
        let p = Arc::new(PanicsOnFirst::default());
        let records: Vec<Record> = (0..10).map(|o| rec(o, o as u8)).collect();
        let (run, drain) = (Duration::from_millis(300), Duration::from_millis(100));
        let d = if batched {
            let sh = shared(cfg(), Batched(Arc::clone(&p)));
            one_partition(&sh, records, run, drain).await
        } else {
            let sh = shared(cfg(), PerRecord(Arc::clone(&p)));
            one_partition(&sh, records, run, drain).await
        };
        let mut done = p.done.lock().unwrap().clone();
        done.sort_unstable();
        done.dedup();
        assert_eq!(done, (1..10).collect::<Vec<_>>(), "batched {batched}");
        // The record that panicked waits for its dead-letter copy (no broker here), so nothing
        // from its offset on may be committed.
        assert!(d.committable.unwrap_or(0) <= 0, "batched {batched}: {d:?}");
    }
}

/// The per-record future is built and copied once per record: retries, waits, parking and
/// dead-lettering stay out of it (boxed), or it grows to ~2 KB for paths a healthy record never
/// takes (with them inline, the owners spent about a tenth of their time copying them).
#[tokio::test]
async fn the_per_record_future_leaves_the_failure_paths_out() {
    struct Quick;
    impl Processor for Quick {
        async fn process(&self, _: &Record) -> Result<(), ProcessError> {
            Ok(())
        }
    }
    let sh = shared(cfg(), PerRecord(Arc::new(Quick)));
    let ctx = PartCtx::new("o".into(), 0, false, Arc::default());
    let size = owner::record_future_size(&sh, &ctx);
    assert!(size <= 640, "the per-record future is {size} bytes");
}

/// An owner runs handlers that finish without waiting inline, a budget at a time, then yields:
/// records left ready must be taken up again at once, not when the next batch or the gauge tick
/// (1 s) wakes the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_beyond_the_inline_budget_run_without_new_input() {
    #[derive(Default)]
    struct Counting(AtomicU64);
    impl Processor for Counting {
        async fn process(&self, _: &Record) -> Result<(), ProcessError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
    let p = Arc::new(Counting::default());
    let sh = shared(cfg(), PerRecord(Arc::clone(&p)));
    let n = 2000;
    let records = (0..n).map(|i| rec(i, (i % 200) as u8)).collect();
    let d = one_partition(
        &sh,
        records,
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        p.0.load(Ordering::Relaxed),
        n as u64,
        "every record handled"
    );
    assert_eq!(d.committable, Some(n), "committed to the end");
}

/// The first record stops the partition (a revoke arriving during its call) and fails
/// transiently, so its in-place retry is aborted at once; every other record records its
/// effect.
#[derive(Debug)]
struct StopsThenFails {
    stop: tokio_util::sync::CancellationToken,
    effects: Mutex<Vec<i64>>,
}

impl Processor for StopsThenFails {
    async fn process(&self, r: &Record) -> Result<(), ProcessError> {
        if r.offset() == 0 {
            self.stop.cancel();
            return Err(ProcessError::transient("the revoke came first"));
        }
        self.effects.lock().unwrap().push(r.offset());
        Ok(())
    }
}

/// A record aborted at its first call keeps its key busy: the key's next record, handed over
/// in the same batch, must not run in the same pass (it would be applied while its predecessor
/// stays uncommitted and comes back to the partition's next owner). Nor does any other record
/// start once the stop is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_aborted_at_once_keeps_its_key_from_the_next() {
    let ctx = part_ctx();
    let p = Arc::new(StopsThenFails {
        stop: ctx.stop.clone(),
        effects: Mutex::default(),
    });
    let sh = shared(cfg(), PerRecord(Arc::clone(&p)));
    // same key, then another key
    let records = vec![rec(0, 1), rec(1, 1), rec(2, 2)];
    let d = one_partition_of(
        ctx,
        &sh,
        vec![records],
        Duration::from_millis(100),
        Duration::from_secs(2),
    )
    .await;
    let effects = p.effects.lock().unwrap().clone();
    assert!(
        !effects.contains(&1),
        "the aborted record's key ran its next record: effects {effects:?}"
    );
    // nor does another key's record start once the stop is seen
    assert_eq!(effects, Vec::<i64>::new());
    assert!(
        d.committable.is_none_or(|c| c <= 0),
        "offset 0 is unfinished: nothing past it may be committed ({:?})",
        d.committable
    );
}
