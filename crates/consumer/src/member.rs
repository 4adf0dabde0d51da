//! The run loop of one group member. See the crate docs for the architecture.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::{ConsumerConfig, GroupProtocol};
use crate::forward_producer::ForwardProducer;
use crate::frontier::CommitFrontier;
use crate::headers as h;
use crate::metric as m;
use crate::scheduler::{KeyScheduler, Slot};
use crate::{ConfigError, ProcessError, Processor, Record};

/// (topic, partition)
type Tp = (String, i32);

/// Errors that stop a member from running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client operation failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The poll thread ended without a summary (it panicked).
    #[error("consumer poll thread failed: {0}")]
    PollThread(String),
}

/// What a member did during [`run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records processed successfully by the handler.
    pub processed: u64,
    /// In-place retries (handler re-invocations after a transient failure).
    pub retried_in_place: u64,
    /// Records parked in the retry topic because of their own failure.
    pub parked: u64,
    /// Records parked in the retry topic only to keep per-key order (followers).
    pub followed: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Commits issued (async and sync).
    pub commits: u64,
    /// Commits that failed.
    pub commit_failures: u64,
    /// Last offset (Kafka convention: next to consume) committed successfully per partition.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Synchronous commits on revoke that succeeded (including "nothing to commit").
    pub revoke_commits_ok: u64,
    /// Synchronous commits on revoke that failed.
    pub revoke_commits_failed: u64,
    /// Rebalance callbacks seen (assign + revoke + lost).
    pub rebalances: u64,
    /// Partitions lost (dropped without commit).
    pub partitions_lost: u64,
    /// Times a partition was paused because its in-flight window was full (backpressure).
    pub pauses: u64,
    /// Whether the shutdown drain or the close hit its deadline.
    pub forced_close: bool,
    /// Per partition, offsets dispatched but not committed at shutdown (will be redelivered).
    pub uncommitted: BTreeMap<(String, i32), Range<i64>>,
    /// Times the retry/dead-letter producer was rebuilt after a librdkafka fatal error.
    pub producer_rebuilds: u64,
}

#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    retried: AtomicU64,
    parked: AtomicU64,
    followed: AtomicU64,
    dead_lettered: AtomicU64,
    commits: AtomicU64,
    commit_failures: AtomicU64,
    revoke_ok: AtomicU64,
    revoke_failed: AtomicU64,
    rebalances: AtomicU64,
    lost: AtomicU64,
    pauses: AtomicU64,
}

/// Metric handles of one partition, registered once when it is assigned (not per record).
/// Install the metrics recorder before starting a member.
struct PartMetrics {
    in_flight: metrics::Gauge,
    lag_seconds: metrics::Gauge,
    processed: metrics::Counter,
    pauses: metrics::Counter,
    retries: metrics::Counter,
    handler_latency: metrics::Histogram,
}

impl PartMetrics {
    fn new(tp: &Tp) -> Self {
        let (t, p) = (tp.0.clone(), tp.1.to_string());
        Self {
            in_flight: metrics::gauge!(m::IN_FLIGHT, "topic" => t.clone(), "partition" => p.clone()),
            lag_seconds: metrics::gauge!(m::LAG_SECONDS, "topic" => t.clone(), "partition" => p.clone()),
            processed: metrics::counter!(m::PROCESSED, "topic" => t.clone(), "partition" => p.clone()),
            pauses: metrics::counter!(m::PAUSES, "topic" => t.clone(), "partition" => p),
            retries: metrics::counter!(m::RETRIES, "topic" => t.clone()),
            handler_latency: metrics::histogram!(m::HANDLER_LATENCY, "topic" => t),
        }
    }
}

/// The immutable part of one assignment of a partition, shared with its workers.
struct PartCtx {
    tp: Tp,
    generation: u64,
    /// Cancelled when the partition is revoked / lost / shut down: interrupts backoff sleeps,
    /// retry-topic delays and produce retries (the record then stays unfinished).
    cancel: CancellationToken,
    metrics: PartMetrics,
}

impl std::fmt::Debug for PartCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartCtx")
            .field("tp", &self.tp)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Part {
    ctx: Arc<PartCtx>,
    frontier: CommitFrontier,
    sched: KeyScheduler<Record>,
    /// Records taken by a worker and not finished.
    running: usize,
    paused: bool,
    /// Live worker tasks of this partition (a pool: a worker continues with the next ready slot).
    workers: usize,
    /// Workers currently sleeping / producing (backoff, retry delay, retry or dead-letter
    /// produce). They do not count against the pool bound, so a slow path never starves the
    /// other keys of the partition.
    blocked: usize,
}

#[derive(Debug, Default)]
struct State {
    parts: HashMap<Tp, Part>,
    /// (origin source partition, key) -> park ids of records parked in the retry topic and not
    /// yet final. Park ids grow with the source offset order. See the crate docs.
    parked: HashMap<(Tp, Vec<u8>), BTreeSet<u64>>,
    next_park_id: u64,
    completed_since_commit: usize,
    committed: BTreeMap<Tp, i64>,
    next_gen: u64,
    /// Threads waiting in [`Core::drain`]: workers only signal the condvar when this is > 0.
    drain_waiters: usize,
}

/// Shared, non-generic core: used by the poll thread, the rebalance callback and the handlers.
#[derive(Debug)]
struct Core {
    cfg: ConsumerConfig,
    state: Mutex<State>,
    cv: Condvar,
    counters: Counters,
    /// `State::parked.len()`, updated under the lock: lets the hot path skip the per-key
    /// parked lookup (and its lock) while nothing is parked.
    parked_keys: AtomicUsize,
}

enum Outcome {
    /// The record is done (processed, parked or dead-lettered): its offset may be committed.
    Done,
    /// Interrupted by revoke / loss / shutdown: the record stays unfinished.
    Aborted,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a record of `key` from `origin` must follow a parked predecessor: a fresh record
    /// (`park_id` None) follows if anything of its key is parked; a parked one only if a record
    /// parked *before it* (smaller id) is still pending.
    fn must_follow(&self, origin: &Tp, key: &[u8], park_id: Option<u64>) -> bool {
        let st = self.lock();
        if st.parked.is_empty() {
            return false;
        }
        let Some(set) = st.parked.get(&(origin.clone(), key.to_vec())) else {
            return false;
        };
        match park_id {
            None => !set.is_empty(),
            Some(id) => set.range(..id).next().is_some(),
        }
    }

    fn new_park_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_park_id += 1;
        st.next_park_id
    }

    fn park_add(&self, origin: &Tp, key: &[u8], id: u64) {
        let mut st = self.lock();
        // only tracked while we own the origin partition (cleared on revoke / loss)
        if st.parts.contains_key(origin) {
            st.parked
                .entry((origin.clone(), key.to_vec()))
                .or_default()
                .insert(id);
            self.parked_keys.store(st.parked.len(), Ordering::Release);
        }
    }

    /// Whether anything is parked (no lock). A `false` is as good as a locked read: the counter
    /// is updated under the lock in the same critical section as the map, and a worker taking a
    /// record synchronises with the finish of the key's previous record through the lock.
    fn any_parked(&self) -> bool {
        self.parked_keys.load(Ordering::Acquire) > 0
    }

    fn park_remove(&self, origin: &Tp, key: &[u8], id: u64) {
        let mut st = self.lock();
        let k = (origin.clone(), key.to_vec());
        if let Some(set) = st.parked.get_mut(&k) {
            set.remove(&id);
            if set.is_empty() {
                st.parked.remove(&k);
            }
        }
        self.parked_keys.store(st.parked.len(), Ordering::Release);
    }

    /// One worker step under one lock acquisition: finishes the worker's previous record
    /// (`done`), then takes its next one (same slot first, else the oldest ready slot of the
    /// partition). `None`: the worker must stop (nothing ready, or the partition is gone).
    fn step(&self, ctx: &PartCtx, done: Option<(Slot, i64, &Outcome)>) -> Option<(Slot, Record)> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let part = st
            .parts
            .get_mut(&ctx.tp)
            .filter(|p| p.ctx.generation == ctx.generation)?;
        let finished = done.is_some();
        let mut prev = None;
        if let Some((slot, offset, outcome)) = done {
            part.running = part.running.saturating_sub(1);
            if matches!(outcome, Outcome::Done) {
                if let Err(e) = part.frontier.completed(offset) {
                    error!(topic = %ctx.tp.0, partition = ctx.tp.1, offset, error = %e, "frontier bug");
                }
                st.completed_since_commit += 1;
            }
            prev = Some(slot);
        }
        let next = part.sched.take(prev);
        if next.is_some() {
            part.running += 1;
        } else {
            part.workers = part.workers.saturating_sub(1);
        }
        let notify = finished && st.drain_waiters > 0;
        drop(guard);
        if notify {
            self.cv.notify_all();
        }
        next
    }

    /// A worker is about to sleep or produce; `true` when it must start a replacement worker
    /// (ready slots wait and the pool has no free non-blocked worker).
    fn enter_blocked(&self, ctx: &PartCtx) -> bool {
        let mut st = self.lock();
        let Some(part) = st
            .parts
            .get_mut(&ctx.tp)
            .filter(|p| p.ctx.generation == ctx.generation)
        else {
            return false;
        };
        part.blocked += 1;
        let spawn = part.sched.has_ready()
            && part.workers.saturating_sub(part.blocked) < self.cfg.max_concurrency;
        if spawn {
            part.workers += 1;
        }
        spawn
    }

    fn exit_blocked(&self, ctx: &PartCtx) {
        let mut st = self.lock();
        if let Some(part) = st
            .parts
            .get_mut(&ctx.tp)
            .filter(|p| p.ctx.generation == ctx.generation)
        {
            part.blocked = part.blocked.saturating_sub(1);
        }
    }

    fn assign(&self, tps: &[Tp]) {
        let mut st = self.lock();
        for tp in tps {
            st.next_gen += 1;
            let generation = st.next_gen;
            let ctx = Arc::new(PartCtx {
                tp: tp.clone(),
                generation,
                cancel: CancellationToken::new(),
                metrics: PartMetrics::new(tp),
            });
            if let Some(old) = st.parts.insert(
                tp.clone(),
                Part {
                    ctx,
                    frontier: CommitFrontier::new(),
                    sched: KeyScheduler::default(),
                    running: 0,
                    paused: false,
                    workers: 0,
                    blocked: 0,
                },
            ) {
                old.ctx.cancel.cancel();
            }
        }
    }

    /// Stops dispatching `tps`, drops their queued records and interrupts their sleeps.
    fn stop(&self, st: &mut State, tps: &[Tp]) {
        for tp in tps {
            if let Some(p) = st.parts.get_mut(tp) {
                p.sched.clear_queued();
                p.ctx.cancel.cancel();
            }
        }
    }

    /// Waits (releasing the lock) until no handler of `tps` is running, or the deadline.
    fn drain<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        tps: &[Tp],
        deadline: Instant,
    ) -> (MutexGuard<'a, State>, bool) {
        loop {
            let busy = tps
                .iter()
                .any(|tp| st.parts.get(tp).is_some_and(|p| p.running > 0));
            if !busy {
                return (st, true);
            }
            st = match self.wait_for_completion(st, deadline) {
                Ok(st) => st,
                Err(st) => return (st, false),
            };
        }
    }

    /// Waits (releasing the lock) until a handler finishes or `deadline` passes; `Err` with the
    /// guard back once the deadline has passed.
    fn wait_for_completion<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> Result<MutexGuard<'a, State>, MutexGuard<'a, State>> {
        let now = Instant::now();
        if now >= deadline {
            return Err(st);
        }
        // finishing handlers signal the condvar only while someone waits
        st.drain_waiters += 1;
        st = self
            .cv
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        st.drain_waiters -= 1;
        Ok(st)
    }

    /// Removes `tps` and returns the offsets to commit for them.
    fn remove(&self, st: &mut State, tps: &[Tp]) -> Vec<(Tp, i64, Option<Range<i64>>)> {
        let mut out = Vec::new();
        for tp in tps {
            if let Some(p) = st.parts.remove(tp) {
                p.ctx.cancel.cancel();
                if let Some(c) = p.frontier.committable() {
                    out.push((tp.clone(), c, p.frontier.uncommitted_range()));
                }
                p.ctx.metrics.in_flight.set(0.0);
            }
        }
        st.parked.retain(|(tp, _), _| !tps.contains(tp));
        self.parked_keys.store(st.parked.len(), Ordering::Release);
        out
    }

    fn commit_sync<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &[(Tp, i64, Option<Range<i64>>)],
    ) -> bool {
        if offsets.is_empty() {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o, _) in offsets {
            if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
                error!(topic = %t, partition = *p, offset = *o, error = %e, "building commit list");
            }
        }
        let started = Instant::now();
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::COMMITS, "mode" => "sync").increment(1);
        let res = consumer.commit(&tpl, CommitMode::Sync);
        metrics::histogram!(m::COMMIT_LATENCY, "mode" => "sync")
            .record(started.elapsed().as_secs_f64());
        match res {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                let mut st = self.lock();
                for (tp, o, _) in offsets {
                    let e = st.committed.entry(tp.clone()).or_insert(*o);
                    *e = (*e).max(*o);
                }
                true
            }
            Err(e) => {
                self.counters
                    .commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::COMMIT_FAILURES).increment(1);
                warn!(error = %e, ?offsets, "synchronous commit failed");
                false
            }
        }
    }
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// The consumer context: rebalance callbacks (run on the poll thread, inside `poll`).
struct MemberContext {
    core: Arc<Core>,
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    metrics::gauge!(m::LAG_OFFSETS, "topic" => topic.clone(), "partition" => p.to_string())
                        .set(part.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let core = &self.core;
        core.counters.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tps = tps_of(tpl);
                info!(partitions = ?tps, "partitions assigned");
                metrics::counter!(m::REBALANCES, "kind" => "assign").increment(1);
                core.assign(&tps);
            }
            Rebalance::Revoke(tpl) => {
                let tps = tps_of(tpl);
                if consumer.assignment_lost() {
                    warn!(partitions = ?tps, "partitions lost: dropping state without commit");
                    metrics::counter!(m::REBALANCES, "kind" => "lost").increment(1);
                    core.counters
                        .lost
                        .fetch_add(tps.len() as u64, Ordering::Relaxed);
                    let mut st = core.lock();
                    core.stop(&mut st, &tps);
                    let _ = core.remove(&mut st, &tps);
                    return;
                }
                info!(partitions = ?tps, "partitions revoked: draining");
                metrics::counter!(m::REBALANCES, "kind" => "revoke").increment(1);
                let deadline = Instant::now() + core.cfg.revoke_drain_timeout;
                let mut st = core.lock();
                core.stop(&mut st, &tps);
                let (mut st, drained) = core.drain(st, &tps, deadline);
                if !drained {
                    warn!(partitions = ?tps, "revoke drain deadline hit: committing the frontier");
                }
                let offsets = core.remove(&mut st, &tps);
                drop(st);
                if core.commit_sync(consumer, &offsets) {
                    core.counters.revoke_ok.fetch_add(1, Ordering::Relaxed);
                    info!(?offsets, "revoke commit ok");
                } else {
                    core.counters.revoke_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Err(e) = consumer.resume(tpl)
        {
            debug!(error = %e, "resume after assign");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let mut st = self.core.lock();
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && e.error().is_ok()
                    {
                        let ent = st
                            .committed
                            .entry((e.topic().to_owned(), e.partition()))
                            .or_insert(o);
                        *ent = (*ent).max(o);
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                self.core
                    .counters
                    .commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::COMMIT_FAILURES).increment(1);
                warn!(error = %err, "async commit failed; will retry");
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && let Some(p) = st.parts.get_mut(&(e.topic().to_owned(), e.partition()))
                    {
                        p.frontier.commit_failed(o);
                    }
                }
            }
        }
    }
}

/// Everything a handler task needs.
struct Pipeline<P> {
    core: Arc<Core>,
    processor: Arc<P>,
    producer: Arc<ForwardProducer>,
    permits: Semaphore,
    rt: tokio::runtime::Handle,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn header_num<T: std::str::FromStr>(rec: &Record, name: &str) -> Option<T> {
    rec.header(name).and_then(h::parse_num)
}

fn key_display(key: Option<&[u8]>) -> String {
    key.map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

/// Sleeps unless cancelled; `false` when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = cancel.cancelled() => false,
    }
}

impl<P: Processor> Pipeline<P> {
    /// Starts a worker task of the partition's pool (the caller counted it in `Part::workers`).
    fn spawn_worker(self: &Arc<Self>, ctx: Arc<PartCtx>) {
        self.rt.spawn(Arc::clone(self).worker(ctx));
    }

    async fn worker(self: Arc<Self>, ctx: Arc<PartCtx>) {
        let mut next = self.core.step(&ctx, None);
        while let Some((slot, rec)) = next {
            let offset = rec.offset;
            let span = info_span!(
                "record",
                topic = %rec.topic,
                partition = rec.partition,
                offset = rec.offset,
                key = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                parent_span_id = tracing::field::Empty,
            );
            // the key rendering and the traceparent parse only when the span is recorded
            if !span.is_disabled() {
                span.record(
                    "key",
                    tracing::field::display(key_display(rec.key.as_deref())),
                );
                if let Some(tp) = rec
                    .header("traceparent")
                    .and_then(crate::trace_context::parse)
                {
                    span.record("trace_id", tp.trace_id);
                    span.record("parent_span_id", tp.parent_id);
                }
            }
            let outcome = self.handle(&ctx, rec).instrument(span).await;
            next = self.core.step(&ctx, Some((slot, offset, &outcome)));
        }
    }

    /// Awaits `fut` (a sleep or a produce) as a *blocked* worker: if ready slots of the
    /// partition would otherwise wait for a worker, a replacement worker is started first.
    async fn blocking<F: Future>(self: &Arc<Self>, ctx: &Arc<PartCtx>, fut: F) -> F::Output {
        if self.core.enter_blocked(ctx) {
            self.spawn_worker(Arc::clone(ctx));
        }
        let out = fut.await;
        self.core.exit_blocked(ctx);
        out
    }

    async fn handle(self: &Arc<Self>, ctx: &Arc<PartCtx>, mut rec: Record) -> Outcome {
        let cfg = &self.core.cfg;
        let cancel = &ctx.cancel;
        let from_retry = rec.topic == cfg.topics.retry;
        if from_retry && let Some(nb) = header_num::<i64>(&rec, h::RETRY_NOT_BEFORE) {
            let wait = nb - now_ms();
            if wait > 0
                && !self
                    .blocking(
                        ctx,
                        sleep_or_cancel(Duration::from_millis(wait as u64), cancel),
                    )
                    .await
            {
                return Outcome::Aborted;
            }
        }
        let base_attempts: u32 = header_num(&rec, h::RETRY_ATTEMPTS).unwrap_or(0);
        let round: u32 = header_num(&rec, h::RETRY_ROUND).unwrap_or(0);

        // Per-key order rule: follow a parked predecessor.
        let park_id: Option<u64> = if from_retry {
            header_num(&rec, h::RETRY_PARK_ID)
        } else {
            None
        };
        if let Some(key) = rec.key.as_deref()
            && self.core.any_parked()
            && self.core.must_follow(&Self::origin_of(&rec), key, park_id)
        {
            debug!("key has a parked predecessor: following it to the retry topic");
            let origin = Self::origin_of(&rec);
            let out = self
                .blocking(
                    ctx,
                    self.park(&rec, &origin, park_id, base_attempts, round, None, cancel),
                )
                .await;
            if matches!(out, Outcome::Done) {
                self.core.counters.followed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::PARKED, "reason" => "follow").increment(1);
            }
            return out;
        }

        let started = Instant::now();
        let mut in_place = 0u32;
        loop {
            in_place += 1;
            rec.attempt = base_attempts + in_place;
            if let Some(ts) = rec.timestamp_ms {
                ctx.metrics
                    .lag_seconds
                    .set(((now_ms() - ts).max(0) as f64) / 1000.0);
            }
            let res = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return Outcome::Aborted;
                };
                let t = Instant::now();
                let res = self.processor.process(&rec).await;
                ctx.metrics
                    .handler_latency
                    .record(t.elapsed().as_secs_f64());
                res
            };
            match res {
                Ok(()) => {
                    self.core.counters.processed.fetch_add(1, Ordering::Relaxed);
                    ctx.metrics.processed.increment(1);
                    self.release_parked(&rec, park_id);
                    return Outcome::Done;
                }
                Err(err @ ProcessError::Permanent { .. }) => {
                    let out = self
                        .blocking(ctx, self.dead_letter(&rec, &err, cancel))
                        .await;
                    if matches!(out, Outcome::Done) {
                        self.release_parked(&rec, park_id);
                    }
                    return out;
                }
                Err(err) => {
                    let b = &cfg.backoff;
                    if in_place < b.max_attempts {
                        let delay = b.delay(in_place);
                        if started.elapsed() + delay <= b.max_elapsed {
                            debug!(attempt = rec.attempt, ?delay, error = %err, "transient failure: retrying in place");
                            self.core.counters.retried.fetch_add(1, Ordering::Relaxed);
                            ctx.metrics.retries.increment(1);
                            if !self.blocking(ctx, sleep_or_cancel(delay, cancel)).await {
                                return Outcome::Aborted;
                            }
                            continue;
                        }
                    }
                    let park = cfg.retry_topic_enabled && round < cfg.max_retry_topic_attempts;
                    let out = if park {
                        let origin = Self::origin_of(&rec);
                        let o = self
                            .blocking(
                                ctx,
                                self.park(
                                    &rec,
                                    &origin,
                                    park_id,
                                    rec.attempt,
                                    round + 1,
                                    Some(&err),
                                    cancel,
                                ),
                            )
                            .await;
                        if matches!(o, Outcome::Done) {
                            self.core.counters.parked.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!(m::PARKED, "reason" => "failure").increment(1);
                        }
                        o
                    } else {
                        self.blocking(ctx, self.dead_letter(&rec, &err, cancel))
                            .await
                    };
                    if !park && matches!(out, Outcome::Done) {
                        self.release_parked(&rec, park_id);
                    }
                    return out;
                }
            }
        }
    }

    /// A parked record reached a final state (processed or dead-lettered): release its park id.
    fn release_parked(&self, rec: &Record, park_id: Option<u64>) {
        if let (Some(key), Some(id)) = (rec.key.as_deref(), park_id) {
            self.core.park_remove(&Self::origin_of(rec), key, id);
        }
    }

    /// (topic, partition) of the original source record.
    fn origin_of(rec: &Record) -> Tp {
        let (t, p, _, _) = Self::source_of(rec);
        (t, p)
    }

    /// Original headers (without our retry/dlq headers).
    fn original_headers(rec: &Record) -> impl Iterator<Item = &(String, Vec<u8>)> {
        rec.headers
            .iter()
            .filter(|(k, _)| !k.starts_with(h::RETRY_PREFIX) && !k.starts_with(h::DLQ_PREFIX))
    }

    /// (topic, partition, offset, timestamp) of the original source record.
    fn source_of(rec: &Record) -> (String, i32, i64, Option<i64>) {
        match (
            rec.header(h::RETRY_SOURCE_TOPIC),
            header_num::<i32>(rec, h::RETRY_SOURCE_PARTITION),
            header_num::<i64>(rec, h::RETRY_SOURCE_OFFSET),
        ) {
            (Some(t), Some(p), Some(o)) => (
                String::from_utf8_lossy(t).into_owned(),
                p,
                o,
                header_num(rec, h::RETRY_SOURCE_TIMESTAMP),
            ),
            _ => (
                rec.topic.clone(),
                rec.partition,
                rec.offset,
                rec.timestamp_ms,
            ),
        }
    }

    /// Parks `rec` in the retry topic (`err` = None: a follower keeping per-key order).
    #[allow(clippy::too_many_arguments)]
    async fn park(
        &self,
        rec: &Record,
        origin: &Tp,
        park_id: Option<u64>,
        attempts: u32,
        round: u32,
        err: Option<&ProcessError>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let cfg = &self.core.cfg;
        let (st, sp, so, sts) = Self::source_of(rec);
        let not_before = match err {
            Some(_) => now_ms() + cfg.retry_delay(round).as_millis() as i64,
            None => now_ms(),
        };
        let mut hs: Vec<(String, Vec<u8>)> = Self::original_headers(rec).cloned().collect();
        let mut add = |k: &str, v: String| hs.push((k.to_owned(), v.into_bytes()));
        add(h::RETRY_ATTEMPTS, attempts.to_string());
        add(h::RETRY_ROUND, round.to_string());
        add(h::RETRY_NOT_BEFORE, not_before.to_string());
        add(h::RETRY_SOURCE_TOPIC, st);
        add(h::RETRY_SOURCE_PARTITION, sp.to_string());
        add(h::RETRY_SOURCE_OFFSET, so.to_string());
        add(
            h::RETRY_SOURCE_TIMESTAMP,
            sts.map(|t| t.to_string()).unwrap_or_default(),
        );
        let id = park_id.unwrap_or_else(|| self.core.new_park_id());
        add(h::RETRY_PARK_ID, id.to_string());
        match err {
            Some(e) => {
                add(h::RETRY_ERROR_CLASS, e.class().to_owned());
                add(h::RETRY_ERROR_MESSAGE, e.message().to_owned());
            }
            None => add(h::RETRY_FOLLOWER, "1".to_owned()),
        }
        info!(
            round,
            attempts,
            follower = err.is_none(),
            "parking record in the retry topic"
        );
        let out = self
            .produce(
                &cfg.topics.retry,
                None,
                rec.key.as_deref(),
                rec.payload.as_deref(),
                &hs,
                cancel,
            )
            .await;
        if matches!(out, Outcome::Done)
            && let Some(k) = rec.key.as_deref()
        {
            self.core.park_add(origin, k, id);
        }
        out
    }

    async fn dead_letter(
        &self,
        rec: &Record,
        err: &ProcessError,
        cancel: &CancellationToken,
    ) -> Outcome {
        let cfg = &self.core.cfg;
        let (st, sp, so, sts) = Self::source_of(rec);
        let mut hs: Vec<(String, Vec<u8>)> = Self::original_headers(rec).cloned().collect();
        let mut add = |k: &str, v: String| hs.push((k.to_owned(), v.into_bytes()));
        add(h::DLQ_SOURCE_TOPIC, st);
        add(h::DLQ_SOURCE_PARTITION, sp.to_string());
        add(h::DLQ_SOURCE_OFFSET, so.to_string());
        add(
            h::DLQ_SOURCE_TIMESTAMP,
            sts.map(|t| t.to_string()).unwrap_or_default(),
        );
        add(h::DLQ_ERROR_CLASS, err.class().to_owned());
        add(h::DLQ_ERROR_MESSAGE, err.message().to_owned());
        add(h::DLQ_ATTEMPTS, rec.attempt.to_string());
        if let Some(id) = err.schema_id() {
            add(h::DLQ_SCHEMA_ID, id.to_string());
        }
        add(h::DLQ_GROUP, cfg.group_id.clone());
        warn!(class = err.class(), error = %err.message(), attempts = rec.attempt, schema_id = ?err.schema_id(), "dead-lettering record");
        let out = self
            .produce(
                &cfg.topics.dead_letter,
                None,
                rec.key.as_deref(),
                rec.payload.as_deref(),
                &hs,
                cancel,
            )
            .await;
        if matches!(out, Outcome::Done) {
            self.core
                .counters
                .dead_lettered
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::DEAD_LETTERS, "class" => err.class()).increment(1);
        }
        out
    }

    /// Produces until acknowledged (retrying with backoff) or cancelled. After a fatal error of
    /// the producer handle the send is retried at once on a rebuilt handle (with the backoff
    /// again if that fresh handle fails fatally too, so a broken cluster cannot spin rebuilds).
    async fn produce(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        hs: &[(String, Vec<u8>)],
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut attempt = 0u32;
        // the failed attempt was the immediate retry on a rebuilt handle (a fatal streak)
        let mut after_rebuild = false;
        loop {
            attempt += 1;
            let mut headers = OwnedHeaders::new_with_capacity(hs.len());
            for (k, v) in hs {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
            if let Some(k) = key {
                fr = fr.key(k);
            }
            if let Some(p) = payload {
                fr = fr.payload(p);
            }
            if let Some(p) = partition {
                fr = fr.partition(p);
            }
            let handle = self.producer.current();
            let res = tokio::select! {
                r = handle.producer().send(fr, Timeout::After(self.core.cfg.produce_timeout)) => r,
                () = cancel.cancelled() => return Outcome::Aborted,
            };
            match res {
                Ok(_) => return Outcome::Done,
                Err((e, _)) => {
                    warn!(topic, error = %e, attempt, generation = handle.generation(), "forward produce failed; retrying (the source offset stays uncommitted)");
                    let rebuilt = self.producer.recover(&handle, &e, topic);
                    // a replaced handle must not be kept alive by a sleeping task
                    drop(handle);
                    if !rebuilt {
                        after_rebuild = false;
                    } else if !after_rebuild {
                        after_rebuild = true;
                        continue;
                    }
                    let delay = self.core.cfg.backoff.delay(attempt.min(10));
                    if !sleep_or_cancel(delay, cancel).await {
                        return Outcome::Aborted;
                    }
                }
            }
        }
    }
}

fn record_from(msg: &BorrowedMessage<'_>) -> Record {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|hd| {
                    (
                        hd.key.to_owned(),
                        hd.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: msg.timestamp().to_millis(),
        attempt: 0,
    }
}

fn consumer_config(cfg: &ConsumerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set(
            "fetch.wait.max.ms",
            cfg.fetch_wait_max.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            cfg.max_poll_interval.as_millis().to_string(),
        );
    match &cfg.group_protocol {
        GroupProtocol::Classic {
            assignment_strategy,
        } => {
            c.set("partition.assignment.strategy", assignment_strategy)
                .set(
                    "session.timeout.ms",
                    cfg.session_timeout.as_millis().to_string(),
                )
                // ~1 s (bounded by session/3): under cooperative-sticky a joining member waits
                // for the others' next heartbeat to learn of the rebalance, so a long interval
                // (session/10 = 4.5 s with the default 45 s) becomes a processing gap.
                .set(
                    "heartbeat.interval.ms",
                    (cfg.session_timeout.as_millis() / 3)
                        .clamp(1, 1000)
                        .to_string(),
                );
        }
        GroupProtocol::Consumer => {
            // Range spreads each topic's partitions over the members. The broker's default
            // (uniform) balances only the total count and, sticking to what a member owns, can
            // hand a joining member nothing but retry-topic partitions: idle while the first
            // member keeps every orders partition. `extra_consumer` can still override it.
            c.set("group.protocol", "consumer")
                .set("group.remote.assignor", "range");
        }
    }
    if !cfg.statistics_interval.is_zero() {
        c.set(
            "statistics.interval.ms",
            cfg.statistics_interval.as_millis().to_string(),
        );
    }
    for (k, v) in &cfg.extra_consumer {
        c.set(k, v);
    }
    c
}

fn producer_config(cfg: &ConsumerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            cfg.produce_timeout.as_millis().to_string(),
        );
    for (k, v) in &cfg.extra_producer {
        c.set(k, v);
    }
    c
}

/// Runs one group member until `cancel` fires, then drains, commits and leaves the group.
///
/// Must be called inside a tokio runtime (any flavour): handlers run as tasks on it while the
/// Kafka consumer is polled on a dedicated thread.
pub async fn run<P: Processor>(
    config: ConsumerConfig,
    processor: Arc<P>,
    cancel: CancellationToken,
) -> Result<RunSummary, ConsumerError> {
    config.validate()?;
    let producer = Arc::new(
        ForwardProducer::new(producer_config(&config), config.produce_timeout).map_err(
            |source| ConsumerError::Kafka {
                context: "creating the retry/dead-letter producer",
                source,
            },
        )?,
    );
    let core = Arc::new(Core {
        cfg: config.clone(),
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
        counters: Counters::default(),
        parked_keys: AtomicUsize::new(0),
    });
    let consumer: BaseConsumer<MemberContext> = consumer_config(&config)
        .create_with_context(MemberContext {
            core: Arc::clone(&core),
        })
        .map_err(|source| ConsumerError::Kafka {
            context: "creating the consumer",
            source,
        })?;
    let mut topics = vec![config.topics.source.as_str()];
    if config.consume_retry_topic && config.retry_topic_enabled {
        topics.push(config.topics.retry.as_str());
    }
    consumer
        .subscribe(&topics)
        .map_err(|source| ConsumerError::Kafka {
            context: "subscribing",
            source,
        })?;
    info!(group = %config.group_id, ?topics, "consumer member started");

    let pipeline = Arc::new(Pipeline {
        core: Arc::clone(&core),
        processor,
        producer: Arc::clone(&producer),
        permits: Semaphore::new(config.max_concurrency),
        rt: tokio::runtime::Handle::current(),
    });
    // dropping the run future stops the poll thread too
    let stop = cancel.child_token();
    let _guard = stop.clone().drop_guard();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_core = Arc::clone(&core);
    std::thread::Builder::new()
        .name(format!("orderstream-poll-{}", config.group_id))
        .spawn(move || {
            let summary = poll_loop(consumer, &thread_core, &pipeline, &stop);
            let _ = tx.send(summary);
        })
        .map_err(|e| ConsumerError::PollThread(e.to_string()))?;
    let summary = rx
        .await
        .map_err(|_| ConsumerError::PollThread("poll thread panicked".to_owned()))?;
    let producer_rebuilds = producer.rebuilds();
    // flush anything the producer still holds (all produce calls were awaited, so normally none)
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    Ok(RunSummary {
        producer_rebuilds,
        ..summary
    })
}

fn poll_loop<P: Processor>(
    consumer: BaseConsumer<MemberContext>,
    core: &Arc<Core>,
    pipeline: &Arc<Pipeline<P>>,
    stop: &CancellationToken,
) -> RunSummary {
    let cfg = &core.cfg;
    let mut last_commit = Instant::now();
    let mut last_housekeeping = Instant::now();
    // While a partition is paused (window full) the poll thread checks for its resume often:
    // otherwise a poll that blocks (every fetchable partition paused) delays the resume by the
    // poll timeout and the handlers run dry.
    let mut any_paused = false;
    while !stop.is_cancelled() {
        let (timeout, housekeeping) = if any_paused {
            (Duration::from_millis(2), Duration::from_millis(2))
        } else {
            (Duration::from_millis(50), Duration::from_millis(20))
        };
        match consumer.poll(timeout) {
            Some(Ok(msg)) => any_paused |= dispatch(&consumer, core, pipeline, &msg),
            Some(Err(e)) => warn!(error = %e, "consumer error"),
            None => {}
        }
        if last_housekeeping.elapsed() >= housekeeping {
            last_housekeeping = Instant::now();
            any_paused = resume_drained(&consumer, core);
            let due = {
                let st = core.lock();
                st.completed_since_commit >= cfg.commit_every
                    || (last_commit.elapsed() >= cfg.commit_interval
                        && st.completed_since_commit > 0)
            };
            if due {
                commit_async(&consumer, core);
                last_commit = Instant::now();
            }
        }
    }
    shutdown(consumer, core)
}

fn dispatch<P: Processor>(
    consumer: &BaseConsumer<MemberContext>,
    core: &Arc<Core>,
    pipeline: &Arc<Pipeline<P>>,
    msg: &BorrowedMessage<'_>,
) -> bool {
    let rec = record_from(msg);
    let tp: Tp = (rec.topic.clone(), rec.partition);
    let mut st = core.lock();
    let Some(part) = st.parts.get_mut(&tp) else {
        debug!(topic = %tp.0, partition = tp.1, offset = rec.offset, "record of an unowned partition ignored");
        return false;
    };
    if let Err(e) = part.frontier.dispatched(rec.offset) {
        warn!(topic = %tp.0, partition = tp.1, error = %e, "redelivered offset ignored");
        return false;
    }
    let slot = Slot::for_record(core.cfg.ordering, rec.key.as_deref(), rec.offset);
    part.sched.push(slot, rec);
    // the partition's worker pool: a new worker only when a slot waits and fewer than
    // max_concurrency workers are active (not blocked); busy workers pick ready slots up
    let spawn = part.sched.has_ready()
        && part.workers.saturating_sub(part.blocked) < core.cfg.max_concurrency;
    if spawn {
        part.workers += 1;
    }
    let in_flight = part.frontier.in_flight();
    part.ctx.metrics.in_flight.set(in_flight as f64);
    let full = !part.paused && in_flight >= core.cfg.max_in_flight_per_partition;
    let ctx = (spawn || full).then(|| Arc::clone(&part.ctx));
    drop(st);
    if spawn && let Some(ctx) = &ctx {
        pipeline.spawn_worker(Arc::clone(ctx));
    }
    // The window is full: first give the handlers a moment to make room (the poll thread does
    // not poll meanwhile, so nothing more is dispatched); pause only if they do not.
    let pause = full
        && ctx
            .as_deref()
            .is_some_and(|ctx| wait_for_room(core, ctx) && mark_paused(core, ctx));
    if pause {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        debug!(topic = %tp.0, partition = tp.1, in_flight, "window full: pausing partition");
        core.counters.pauses.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = consumer.pause(&tpl) {
            warn!(topic = %tp.0, partition = tp.1, error = %e, "pause failed");
        }
    }
    pause
}

/// How long the poll thread waits for a full window to make room before pausing the partition.
const ROOM_WAIT: Duration = Duration::from_millis(20);

/// Called when a partition's window is full, before pausing it: a pause makes librdkafka
/// discard the partition's prefetched messages and fetch them again on resume, which dominated
/// the drain cost while the handlers kept up on average. Waits (at most [`ROOM_WAIT`]; the
/// poll thread dispatches nothing meanwhile, so the window bound holds) until a quarter of the
/// window is free. Returns whether the window is still full (the caller pauses).
fn wait_for_room(core: &Core, ctx: &PartCtx) -> bool {
    let max = core.cfg.max_in_flight_per_partition;
    let room = max - (max / 4).max(1);
    let deadline = Instant::now() + ROOM_WAIT;
    let mut st = core.lock();
    loop {
        let Some(in_flight) = st
            .parts
            .get(&ctx.tp)
            .filter(|p| p.ctx.generation == ctx.generation)
            .map(|p| p.frontier.in_flight())
        else {
            return false;
        };
        if in_flight <= room {
            return false;
        }
        st = match core.wait_for_completion(st, deadline) {
            Ok(st) => st,
            Err(_) => return in_flight >= max,
        };
    }
}

/// Marks the partition paused (for [`resume_drained`]); `false` if it is gone.
fn mark_paused(core: &Core, ctx: &PartCtx) -> bool {
    let mut st = core.lock();
    match st
        .parts
        .get_mut(&ctx.tp)
        .filter(|p| p.ctx.generation == ctx.generation && !p.paused)
    {
        Some(part) => {
            part.paused = true;
            part.ctx.metrics.pauses.increment(1);
            true
        }
        None => false,
    }
}

/// Resumes paused partitions whose window drained to half; returns whether any stays paused.
fn resume_drained(consumer: &BaseConsumer<MemberContext>, core: &Core) -> bool {
    let low = core.cfg.max_in_flight_per_partition / 2;
    let mut tpl = TopicPartitionList::new();
    let mut still_paused = false;
    {
        let mut st = core.lock();
        for (tp, part) in &mut st.parts {
            part.ctx
                .metrics
                .in_flight
                .set(part.frontier.in_flight() as f64);
            if part.paused && part.frontier.in_flight() <= low {
                part.paused = false;
                tpl.add_partition(&tp.0, tp.1);
            }
            still_paused |= part.paused;
        }
    }
    if tpl.count() > 0 {
        debug!(partitions = ?tps_of(&tpl), "window drained: resuming");
        if let Err(e) = consumer.resume(&tpl) {
            warn!(error = %e, "resume failed");
        }
    }
    still_paused
}

fn commit_async(consumer: &BaseConsumer<MemberContext>, core: &Core) {
    let mut tpl = TopicPartitionList::new();
    {
        let mut st = core.lock();
        st.completed_since_commit = 0;
        for (tp, part) in &mut st.parts {
            if let Some(o) = part.frontier.pending_commit() {
                part.frontier.mark_committed(o);
                if let Err(e) = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(o)) {
                    error!(topic = %tp.0, partition = tp.1, error = %e, "building commit list");
                }
            }
        }
    }
    if tpl.count() == 0 {
        return;
    }
    core.counters.commits.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::COMMITS, "mode" => "async").increment(1);
    let started = Instant::now();
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        core.counters
            .commit_failures
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::COMMIT_FAILURES).increment(1);
        warn!(error = %e, "async commit could not be issued; will retry");
        let mut st = core.lock();
        for e in tpl.elements() {
            if let (Offset::Offset(o), Some(p)) = (
                e.offset(),
                st.parts.get_mut(&(e.topic().to_owned(), e.partition())),
            ) {
                p.frontier.commit_failed(o);
            }
        }
    }
    metrics::histogram!(m::COMMIT_LATENCY, "mode" => "async")
        .record(started.elapsed().as_secs_f64());
}

fn shutdown(consumer: BaseConsumer<MemberContext>, core: &Arc<Core>) -> RunSummary {
    let cfg = &core.cfg;
    info!("shutdown: stop fetching, drain, commit, leave");
    if let Ok(assignment) = consumer.assignment()
        && let Err(e) = consumer.pause(&assignment)
    {
        debug!(error = %e, "pause on shutdown");
    }
    let deadline = Instant::now() + cfg.shutdown_timeout;
    let mut drained = false;
    {
        let mut st = core.lock();
        let all: Vec<Tp> = st.parts.keys().cloned().collect();
        core.stop(&mut st, &all);
    }
    // Drain while still serving callbacks (a rebalance may happen meanwhile).
    loop {
        {
            let st = core.lock();
            let all: Vec<Tp> = st.parts.keys().cloned().collect();
            let wait_until = (Instant::now() + Duration::from_millis(50)).min(deadline);
            let (_st, ok) = core.drain(st, &all, wait_until);
            if ok {
                drained = true;
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        // messages that still arrive are not dispatched (never committed): ignore them
        let _ = consumer.poll(Duration::ZERO);
    }
    if !drained {
        warn!("shutdown drain deadline hit: committing the frontier, in-flight work is abandoned");
    }
    let offsets = {
        let mut st = core.lock();
        let all: Vec<Tp> = st.parts.keys().cloned().collect();
        core.stop(&mut st, &all);
        core.remove(&mut st, &all)
    };
    let committed_ok = core.commit_sync(&consumer, &offsets);
    let mut uncommitted = BTreeMap::new();
    for (tp, _, range) in &offsets {
        if let Some(r) = range {
            uncommitted.insert(tp.clone(), r.clone());
        }
    }
    if !committed_ok {
        for (tp, o, range) in &offsets {
            let end = range.as_ref().map_or(*o, |r| r.end);
            uncommitted.insert(tp.clone(), *o..end);
        }
    }
    if !uncommitted.is_empty() {
        warn!(
            ?uncommitted,
            "uncommitted ranges at shutdown (will be redelivered)"
        );
    }
    consumer.unsubscribe();
    let mut forced = !drained;
    let summary = {
        let c = &core.counters;
        let st = core.lock();
        RunSummary {
            processed: c.processed.load(Ordering::Relaxed),
            retried_in_place: c.retried.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            followed: c.followed.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            commit_failures: c.commit_failures.load(Ordering::Relaxed),
            committed: st.committed.clone(),
            revoke_commits_ok: c.revoke_ok.load(Ordering::Relaxed),
            revoke_commits_failed: c.revoke_failed.load(Ordering::Relaxed),
            rebalances: c.rebalances.load(Ordering::Relaxed),
            partitions_lost: c.lost.load(Ordering::Relaxed),
            pauses: c.pauses.load(Ordering::Relaxed),
            forced_close: false,
            uncommitted,
            // filled in by `run`, which owns the producer
            producer_rebuilds: 0,
        }
    };
    // Leave the group: rdkafka's drop closes the consumer queue and polls until closed, which
    // can hang on a broken cluster, so it runs on a helper thread with a deadline.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("orderstream-close".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(cfg.close_timeout).is_err() {
                forced = true;
                warn!(timeout = ?cfg.close_timeout, "consumer did not close in time: abandoned (forced close)");
            }
        }
        Err(e) => {
            forced = true;
            warn!(error = %e, "could not spawn the close thread");
        }
    }
    RunSummary {
        forced_close: forced,
        ..summary
    }
}
