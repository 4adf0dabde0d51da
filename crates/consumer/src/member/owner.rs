//! The owner of one assigned partition: a long-lived task that holds the partition's commit
//! frontier and key scheduler and runs its records. No member-wide lock, no task per record.
//!
//! The poll thread hands records over in batches through a bounded channel and reads the
//! committable offset and the unfinished bytes from atomics in [`PartCtx`]. Handler calls run
//! as futures inside the owner task, at most [`ConsumerConfig::max_concurrency`] at once, so
//! dropping the owner (after the drain deadline) cancels them at their next await point.
//!
//! [`ConsumerConfig::max_concurrency`]: crate::ConsumerConfig::max_concurrency

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::future::{Either, join_all};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, field, info_span, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::handler::{
    BATCH_PANICKED, GaugeValues, Handler, Outcome, PartCtx, Shared, now_ms, result_count_error,
};
use super::lifecycle::Phase;
use super::summary::bump;
use crate::frontier::CommitFrontier;
use crate::metric::GAUGE_TICK;
use crate::scheduler::{KeyScheduler, Slot};
use crate::{ProcessError, Record, trace_context};

/// Batches the channel to an owner holds; the byte and offset windows are the real bound.
/// The target of the per-record and per-batch spans, so a filter can turn them off alone (each
/// costs about 1.5 µs per record under a log subscriber, see docs/operations.md, "Tracing").
pub const SPAN_TARGET: &str = "orderstream_consumer::spans";

const CHANNEL_BATCHES: usize = 8;

/// Records an owner runs to their end inline before it yields to the runtime (revokes,
/// shutdowns and other partitions' owners wait meanwhile).
const INLINE_BUDGET: usize = 256;

/// What the poll thread keeps of an owner.
#[derive(Debug)]
pub(crate) struct OwnerLink {
    pub(crate) ctx: Arc<PartCtx>,
    pub(crate) tx: mpsc::Sender<Vec<Record>>,
    /// Disconnected when the owner task has ended (also if it panicked).
    pub(crate) done: std::sync::mpsc::Receiver<()>,
    /// Cancels whatever still runs (after the drain deadline).
    pub(crate) kill: CancellationToken,
}

/// Starts the owner of `ctx`'s partition on `rt`.
pub(crate) fn spawn<H: Handler>(
    rt: &tokio::runtime::Handle,
    shared: Arc<Shared<H>>,
    ctx: Arc<PartCtx>,
) -> OwnerLink {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let (done_tx, done) = std::sync::mpsc::channel();
    let kill = CancellationToken::new();
    rt.spawn(run(shared, Arc::clone(&ctx), rx, kill.clone(), done_tx));
    OwnerLink {
        ctx,
        tx,
        done,
        kill,
    }
}

/// Records finished by one future: one for a single record, several for a batch.
enum Finishes {
    One(Finished),
    Many(Vec<Finished>),
}

impl IntoIterator for Finishes {
    type Item = Finished;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Finished>, std::vec::IntoIter<Finished>>;

    fn into_iter(self) -> Self::IntoIter {
        // an empty Vec does not allocate
        let (one, many) = match self {
            Finishes::One(f) => (Some(f), Vec::new()),
            Finishes::Many(v) => (None, v),
        };
        one.into_iter().chain(many)
    }
}

/// A record's work finished (or was interrupted).
struct Finished {
    slot: Slot,
    offset: i64,
    bytes: usize,
    outcome: Outcome,
}

async fn run<H: Handler>(
    sh: Arc<Shared<H>>,
    ctx: Arc<PartCtx>,
    mut rx: mpsc::Receiver<Vec<Record>>,
    kill: CancellationToken,
    _done: std::sync::mpsc::Sender<()>,
) {
    let (sh, ctx) = (&*sh, &*ctx);
    let batched = H::BATCHED && !ctx.from_retry;
    let max_running = if batched { 1 } else { sh.cfg.max_concurrency };
    let mut frontier = CommitFrontier::new();
    let mut sched: KeyScheduler<Record> = KeyScheduler::default();
    let slot_of = |rec: &Record| Slot::for_record(sh.cfg.ordering, rec.key(), rec.offset());
    // Records handed over and not yet started or queued, in offset order. A record whose key
    // has nothing before it runs, or joins a batch, straight from here (queueing and taking it
    // in the scheduler costs more than the rest of the owner's work per record); only a record
    // of a busy key is queued in the scheduler, and a call that waits, or a batch, owns its
    // keys there.
    let mut arrivals: VecDeque<Record> = VecDeque::new();
    // (offset, timestamp) of dispatched records, for the lag gauge
    let mut times: VecDeque<(i64, i64)> = VecDeque::new();
    let mut running = FuturesUnordered::new();
    let mut phase = Phase::Consuming;
    // The gauges are set every tick while the partition is owned, changed or not: a recorder
    // drops gauges left unset (metric::GAUGE_IDLE_TIMEOUT), which is how a revoked partition's
    // leave. The timer wakes an idle owner; the check after the select below also runs them
    // when completions keep the select busy.
    let mut tick = tokio::time::interval(GAUGE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut gauges_at = Instant::now();
    gauges(ctx, &frontier, &mut times);
    // Records were left ready when the inline budget ran out: yield, then take them up again.
    let mut more_ready = false;
    // The box of the last record call that finished inline, for the next one.
    let mut spare = None;
    loop {
        if more_ready {
            tokio::task::yield_now().await;
        }
        tokio::select! {
            biased;
            () = kill.cancelled() => {
                phase = phase.kill(running.len());
                if let Phase::Complete { abandoned: true } = phase {
                    let n = running.len() as u64;
                    sh.counters.cancelled.fetch_add(n, Ordering::Relaxed);
                    warn!(topic = %ctx.topic, partition = ctx.partition, handlers = n, "drain deadline passed: cancelling running handlers (their records stay uncommitted)");
                }
                break;
            }
            Some(done) = running.next(), if !running.is_empty() => {
                let mut freed = finish(done, &mut frontier, &mut sched, ctx);
                // everything else already finished, in one pass
                while let Some(Some(done)) = running.next().now_or_never() {
                    freed += finish(done, &mut frontier, &mut sched, ctx);
                }
                publish(ctx, &frontier, freed);
            }
            () = ctx.stop.cancelled(), if phase.takes_records() => {
                phase = phase.stop();
            }
            batch = rx.recv(), if phase.takes_records() => match batch {
                Some(batch) => {
                    accept(batch, ctx, &mut frontier, &mut arrivals, &mut times);
                    while let Ok(batch) = rx.try_recv() {
                        accept(batch, ctx, &mut frontier, &mut arrivals, &mut times);
                    }
                }
                None => phase = phase.stop(),
            },
            _ = tick.tick() => {}
            () = std::future::ready(()), if more_ready => {}
        }
        if gauges_at.elapsed() >= GAUGE_TICK {
            gauges_at = Instant::now();
            gauges(ctx, &frontier, &mut times);
        }
        // (a stop not yet seen by the select above already ends new work)
        more_ready = false;
        if phase.takes_records() && !ctx.stop.is_cancelled() {
            // (records run inline, what those that finished freed)
            let (mut inline, mut finished) = (0, Freed::default());
            while running.len() < max_running {
                if batched {
                    let max = sh.cfg.max_batch_records;
                    let mut items: Vec<(Slot, Record)> = Vec::new();
                    // Queued records first: they are older than every arrival.
                    while items.len() < max {
                        match sched.take() {
                            Some(item) => items.push(item),
                            None => break,
                        }
                    }
                    // An arrival whose key is idle joins the batch and owns its key until its
                    // record is done; one whose key is busy (running, queued, or already in
                    // this batch) waits for a later batch.
                    while items.len() < max {
                        let Some((slot, rec)) = idle_arrival(&mut arrivals, &mut sched, slot_of)
                        else {
                            break;
                        };
                        sched.own(slot);
                        items.push((slot, rec));
                    }
                    if items.is_empty() {
                        break;
                    }
                    // boxed: the set's entries are as large as the larger variant, and the
                    // per-record one is moved in once per record
                    running.push(Either::Right(Box::pin(run_batch(sh, ctx, items))));
                } else {
                    if inline == INLINE_BUDGET {
                        more_ready = true;
                        break;
                    }
                    // A stop (revoke) seen by a call that ran inline: nothing more starts, or
                    // its effect would be applied here and again by the partition's next owner.
                    if ctx.stop.is_cancelled() {
                        break;
                    }
                    // Queued records first: they are older than every arrival.
                    let (slot, rec, queued) = if let Some((slot, rec)) = sched.take() {
                        (slot, rec, true)
                    } else if let Some((slot, rec)) =
                        idle_arrival(&mut arrivals, &mut sched, slot_of)
                    {
                        (slot, rec, false)
                    } else {
                        break;
                    };
                    // Polled once here: a handler that finishes without waiting (most calls
                    // of most handlers) never becomes a task of the set, with its wake-ups.
                    // The box of a call that finished is reused for the next record (an
                    // allocation and a free of ~512 B per record otherwise).
                    let call = run_one(sh, ctx, slot, rec);
                    let mut one = match spare.take() {
                        Some(mut boxed) => {
                            Pin::set(&mut boxed, call);
                            boxed
                        }
                        None => Box::pin(call),
                    };
                    match one.as_mut().now_or_never() {
                        Some(done) => {
                            inline += 1;
                            spare = Some(one);
                            finished += finish(done, &mut frontier, &mut sched, ctx);
                        }
                        None => {
                            if !queued {
                                sched.own(slot);
                            }
                            running.push(Either::Left(one));
                        }
                    }
                }
            }
            if finished != Freed::default() {
                publish(ctx, &frontier, finished);
            }
        }
        phase = phase.settle(running.len());
        if phase.is_complete() {
            break;
        }
    }
    // The gauges are not set to 0 here: left unset, they leave the scrape after the idle
    // timeout, and the partition's next owner reports it.
}

/// The oldest arrival whose key is idle; the arrivals of busy keys before it are queued behind
/// their keys' older records.
fn idle_arrival(
    arrivals: &mut VecDeque<Record>,
    sched: &mut KeyScheduler<Record>,
    slot_of: impl Fn(&Record) -> Slot,
) -> Option<(Slot, Record)> {
    while let Some(rec) = arrivals.pop_front() {
        let slot = slot_of(&rec);
        if !sched.holds(slot) {
            return Some((slot, rec));
        }
        sched.push(slot, rec.offset(), rec);
    }
    None
}

/// Takes records handed over by the poll thread.
fn accept(
    batch: Vec<Record>,
    ctx: &PartCtx,
    frontier: &mut CommitFrontier,
    arrivals: &mut VecDeque<Record>,
    times: &mut VecDeque<(i64, i64)>,
) {
    for rec in batch {
        if frontier.dispatched(rec.offset()).is_err() {
            // redelivered after a pause/resume: already handled here
            ctx.unfinished_bytes
                .fetch_sub(rec.size(), Ordering::Relaxed);
            continue;
        }
        if let Some(ts) = rec.timestamp_ms() {
            times.push_back((rec.offset(), ts));
        }
        arrivals.push_back(rec);
    }
}

/// What finished records give back: how many completed, and the bytes of all of them
/// (completed or aborted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Freed {
    completed: usize,
    bytes: usize,
}

impl std::ops::AddAssign for Freed {
    fn add_assign(&mut self, other: Freed) {
        self.completed += other.completed;
        self.bytes += other.bytes;
    }
}

/// Makes finished records, their bytes and the committable offset visible to the poll thread:
/// once per pass over finished records, not per record (the counters are shared with the poll
/// thread's core).
fn publish(ctx: &PartCtx, frontier: &CommitFrontier, freed: Freed) {
    if freed.bytes > 0 {
        ctx.unfinished_bytes
            .fetch_sub(freed.bytes, Ordering::Relaxed);
    }
    if let Some(c) = frontier.committable() {
        ctx.committable.store(c, Ordering::Release);
    }
    // Release: the poll thread that counts these sees the committable offset above
    ctx.completed.fetch_add(freed.completed, Ordering::Release);
}

/// Books finished records and releases their slots.
fn finish(
    done: Finishes,
    frontier: &mut CommitFrontier,
    sched: &mut KeyScheduler<Record>,
    ctx: &PartCtx,
) -> Freed {
    let mut freed = Freed::default();
    for f in done {
        freed.bytes += f.bytes;
        // An aborted record (stop under way) keeps its slot: the key's next record must not
        // start after it, or it would be applied before its predecessor is redelivered.
        if f.outcome == Outcome::Done {
            freed.completed += 1;
            if let Err(e) = frontier.completed(f.offset) {
                error!(topic = %ctx.topic, partition = ctx.partition, offset = f.offset, error = %e, "frontier bug");
            }
            sched.release(f.slot);
        } else {
            // (a record started straight from the arrivals that was aborted at its first poll
            // has its slot owned only from here)
            sched.own(f.slot);
        }
    }
    freed
}

/// Sets the partition's gauges: lag in records as the latest statistics said, lag in seconds
/// from the oldest unfinished record (now minus its timestamp, so it grows while that record
/// is stuck; 0 when none), and the in-flight count.
fn gauges(ctx: &PartCtx, frontier: &CommitFrontier, times: &mut VecDeque<(i64, i64)>) {
    let done_below = frontier.committable().unwrap_or(i64::MIN);
    while times.front().is_some_and(|(o, _)| *o < done_below) {
        times.pop_front();
    }
    let lag_seconds = times.front().map_or(0.0, |(_, ts)| {
        (now_ms().saturating_sub(*ts)).max(0) as f64 / 1000.0
    });
    let lag_records = ctx.lag_records.load(Ordering::Relaxed);
    ctx.metrics.gauges(GaugeValues {
        lag_records: (lag_records >= 0).then_some(lag_records),
        lag_seconds,
        in_flight: frontier.in_flight(),
    });
}

/// The span of one record's work (handler calls, retries in place, its retry or dead-letter
/// copy), continuing the trace of its `traceparent` header (see [`crate::trace_context`]).
fn record_span(ctx: &PartCtx, rec: &Record) -> Span {
    let span = info_span!(
        target: SPAN_TARGET,
        "record",
        otel.kind = "consumer",
        topic = %ctx.topic,
        partition = ctx.partition,
        offset = rec.offset(),
        trace_id = field::Empty,
    );
    trace_context::set_parent_from(&span, rec);
    span
}

/// `sh.handle` in the record's span (not entered when disabled: entering a disabled span on
/// every poll is measurable per record).
///
/// This and [`run_one`] build their futures instead of being `async fn`s: each `async fn`
/// level keeps its own copy of the record beside the inner future, and these futures are
/// moved into the owner's set once per record.
fn handle_in_span<'a, H: Handler>(
    sh: &'a Shared<H>,
    ctx: &'a PartCtx,
    rec: Record,
    first: Option<Result<(), ProcessError>>,
) -> impl Future<Output = Outcome> + 'a {
    let span = record_span(ctx, &rec);
    if span.is_disabled() {
        Either::Left(sh.handle(ctx, rec, first))
    } else {
        Either::Right(sh.handle(ctx, rec, first).instrument(span))
    }
}

fn run_one<'a, H: Handler>(
    sh: &'a Shared<H>,
    ctx: &'a PartCtx,
    slot: Slot,
    rec: Record,
) -> impl Future<Output = Finishes> + 'a {
    let (offset, bytes) = (rec.offset(), rec.size());
    handle_in_span(sh, ctx, rec, None).map(move |outcome| {
        Finishes::One(Finished {
            slot,
            offset,
            bytes,
            outcome,
        })
    })
}

/// One call of the batch handler for ready records (one per key); records that fail, and
/// records that must follow a parked predecessor, continue one by one.
async fn run_batch<H: Handler>(
    sh: &Shared<H>,
    ctx: &PartCtx,
    items: Vec<(Slot, Record)>,
) -> Finishes {
    let mut out = Vec::with_capacity(items.len());
    let mut batch = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    let mut singles = Vec::new();
    for (slot, rec) in items {
        let follows = !sh.parked.is_empty()
            && rec.key().is_some_and(|k| {
                sh.parked
                    .must_follow((rec.topic(), rec.partition()), k, None)
            });
        if follows {
            singles.push(run_one(sh, ctx, slot, rec));
        } else {
            slots.push(slot);
            batch.push(rec);
        }
    }
    let span = info_span!(
        target: SPAN_TARGET,
        "batch",
        otel.kind = "consumer",
        topic = %ctx.topic,
        partition = ctx.partition,
        records = batch.len(),
    );
    if !span.is_disabled() {
        // one batch serves several traces: linked to each record's producer-side span
        for rec in &batch {
            if let Some(tp) = rec
                .header(trace_context::TRACEPARENT)
                .and_then(trace_context::parse)
            {
                span.add_link(tp.span_context());
            }
        }
    }
    let t = std::time::Instant::now();
    let mut results = if batch.is_empty() {
        Vec::new()
    } else {
        sh.handler.many(&batch).instrument(span).await
    };
    ctx.metrics
        .handler_latency
        .record(t.elapsed().as_secs_f64());
    if results.len() != batch.len() {
        let e = result_count_error(batch.len());
        results = vec![Err(e); batch.len()];
    }
    let mut failed = Vec::new();
    for ((slot, rec), res) in slots.into_iter().zip(batch).zip(results) {
        let (offset, bytes) = (rec.offset(), rec.size());
        match res {
            Ok(()) => {
                bump(&sh.counters.processed);
                ctx.metrics.processed.increment(1);
                out.push(Finished {
                    slot,
                    offset,
                    bytes,
                    outcome: Outcome::Done,
                });
            }
            Err(e) => failed.push(async move {
                // A batch that panicked says nothing about this record: it gets a first
                // attempt of its own (else `max_attempts = 1` would fail the whole batch).
                let first = (e.class() != BATCH_PANICKED).then_some(Err(e));
                let outcome = handle_in_span(sh, ctx, rec, first).await;
                Finished {
                    slot,
                    offset,
                    bytes,
                    outcome,
                }
            }),
        }
    }
    out.extend(join_all(failed).await);
    for s in join_all(singles).await {
        out.extend(s);
    }
    Finishes::Many(out)
}

/// Bytes of the future [`run_one`] builds for one record (its state is copied into a fresh
/// allocation for every record).
#[cfg(test)]
pub(crate) fn record_future_size<H: Handler>(sh: &Shared<H>, ctx: &PartCtx) -> usize {
    let rec = Record::from_parts("o", 0, 0, None, None, [], None);
    let slot = Slot::for_record(crate::OrderingMode::Key, None, 0);
    std::mem::size_of_val(&run_one(sh, ctx, slot, rec))
}
