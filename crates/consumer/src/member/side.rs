//! One of a member's consumers (the source topic, or the retry topic in its own group): the
//! poll thread's loop, rebalance callbacks, commits and shutdown.
//!
//! librdkafka runs rebalance and commit callbacks inside `poll`, on the poll thread, so the
//! partition table is only ever touched by that thread; its mutex is uncontended and exists
//! because the context must be `Sync`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::commit_outcome::settle;
use super::handler::{Handler, PartCtx, Shared};
use super::owner;
use super::partitions::{Drained, Owned, Table, drain};
use super::summary::bump;
use crate::Record;
use crate::budget::MemoryBudget;
use crate::metric as m;

/// Records taken from librdkafka per poll burst before they are handed to the owners.
const BURST: usize = 2048;
/// How long the poll thread waits for a full window to make room before pausing the partition.
const ROOM_WAIT: Duration = Duration::from_millis(20);
/// How often it looks while waiting.
const ROOM_POLL: Duration = Duration::from_micros(500);
/// A member whose records keep completing confirms its commits every this many commit
/// intervals (a quiet one after one interval).
const CONFIRM_EVERY: u32 = 10;
/// How long a confirmation may hold up the poll thread (a coordinator that is there answers in
/// milliseconds; one that is not is asked again an interval later).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// What one consumer of the member leaves behind.
#[derive(Debug, Default)]
pub(crate) struct SideSummary {
    pub(crate) committed: BTreeMap<(String, i32), i64>,
    pub(crate) uncommitted: BTreeMap<(String, i32), Range<i64>>,
    pub(crate) forced_close: bool,
    pub(crate) shutdown_commit_failed: bool,
    /// Set when the brokers refused the member (it stopped because of it).
    pub(crate) refused: Option<(RDKafkaErrorCode, String)>,
}

/// Errors that no retry heals: the member stops instead of polling into them forever.
fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
    )
}

/// The consumer context: the partition table and everything the callbacks need.
pub(crate) struct Side<H> {
    pub(crate) shared: Arc<Shared<H>>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) topic: Arc<str>,
    pub(crate) from_retry: bool,
    pub(crate) budget: MemoryBudget,
    table: Mutex<Table>,
    window: AtomicUsize,
    completed: Arc<AtomicUsize>,
    /// Offsets the coordinator confirmed: synchronous commits, and what [`Side::confirm`] read
    /// back. (librdkafka reports the outcome of a commit the application issued only to an
    /// `offset_commit_cb`, which rust-rdkafka never registers: it enables the offset-commit
    /// event instead, which librdkafka raises for automatic commits only. So
    /// [`ConsumerContext::commit_callback`] is not called for these commits, synchronous or
    /// asynchronous.)
    committed: Mutex<BTreeMap<i32, i64>>,
    /// Asynchronous commits sent whose outcome is not known yet, each with its offsets
    /// (partition, offset): counted when the coordinator is seen holding them, or holding less
    /// after a quiet interval (see [`Side::resolve_async`]).
    pending_async: Mutex<Vec<Vec<(i32, i64)>>>,
    /// Asynchronous commits were sent since the last confirmed one: their outcome is unknown.
    unconfirmed: AtomicBool,
    /// When the last asynchronous commit was handed to librdkafka: until `session_timeout`
    /// after it, librdkafka may still be holding it (parked while no coordinator is known, or
    /// retrying), and it may land after a newer one and move the committed offset back.
    last_async: Mutex<Option<Instant>>,
}

impl<H> std::fmt::Debug for Side<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("topic", &self.topic)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<H: Handler> Side<H> {
    pub(crate) fn new(
        shared: Arc<Shared<H>>,
        rt: tokio::runtime::Handle,
        topic: &str,
        from_retry: bool,
        budget: MemoryBudget,
    ) -> Self {
        Self {
            shared,
            rt,
            topic: Arc::from(topic),
            from_retry,
            budget,
            table: Mutex::new(Table::default()),
            window: AtomicUsize::new(budget.window_bytes),
            completed: Arc::new(AtomicUsize::new(0)),
            committed: Mutex::new(BTreeMap::new()),
            pending_async: Mutex::new(Vec::new()),
            unconfirmed: AtomicBool::new(false),
            last_async: Mutex::new(None),
        }
    }

    fn tps(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == &*self.topic)
            .map(|e| e.partition())
            .collect()
    }

    fn source_tps(&self, parts: &[i32]) -> Vec<(String, i32)> {
        parts.iter().map(|p| (self.topic.to_string(), *p)).collect()
    }

    fn tpl(&self, parts: impl IntoIterator<Item = (i32, Option<i64>)>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in parts {
            let res = match o {
                Some(o) => tpl.add_partition_offset(&self.topic, p, Offset::Offset(o)),
                None => {
                    tpl.add_partition(&self.topic, p);
                    Ok(())
                }
            };
            if let Err(e) = res {
                error!(topic = %self.topic, partition = p, error = %e, "building a partition list");
            }
        }
        tpl
    }

    fn assign(&self, parts: &[i32]) {
        let mut table = lock(&self.table);
        for &p in parts {
            let ctx = Arc::new(PartCtx::new(
                Arc::clone(&self.topic),
                p,
                self.from_retry,
                Arc::clone(&self.completed),
            ));
            let link = owner::spawn(&self.rt, Arc::clone(&self.shared), ctx);
            if let Some(old) = table.insert(p, Owned::new(link)) {
                old.link.kill.cancel();
            }
        }
        self.window.store(
            self.budget.window_per_partition(table.len()),
            Ordering::Relaxed,
        );
        drop(table);
        if !self.from_retry {
            self.shared.parked.own(&self.source_tps(parts));
        }
    }

    /// Removes `parts` from the table and drains their owners until `deadline`.
    fn release(&self, parts: &[i32], deadline: Instant) -> Vec<Drained> {
        let owners: Vec<Owned> = {
            let mut table = lock(&self.table);
            let o = parts.iter().filter_map(|p| table.remove(*p)).collect();
            self.window.store(
                self.budget.window_per_partition(table.len()),
                Ordering::Relaxed,
            );
            o
        };
        let drained = drain(owners, deadline);
        // Nothing sets the released partitions' gauges any more: they leave the scrape after
        // the recorder's idle timeout (metric::GAUGE_IDLE_TIMEOUT), and the new owner reports
        // the partitions.
        if !self.from_retry {
            self.shared.parked.disown(&self.source_tps(parts));
        }
        drained
    }

    /// Commits what drained owners finished. Every partition's frontier is stated again, even
    /// one sent before: an earlier asynchronous commit still held by librdkafka may have landed
    /// after it and moved the committed offset back. Returns `None` when there was nothing to
    /// commit, else whether the commit succeeded.
    fn commit_drained(&self, consumer: &BaseConsumer<Self>, drained: &[Drained]) -> Option<bool> {
        let offsets: Vec<(i32, i64)> = drained
            .iter()
            .filter_map(|d| Some((d.partition, d.committable?)))
            .collect();
        self.commit_sync(consumer, &offsets)
    }

    /// Commits `offsets` and waits for the brokers' answer; `None` when there is nothing to
    /// commit, else whether the commit succeeded.
    fn commit_sync(&self, consumer: &BaseConsumer<Self>, offsets: &[(i32, i64)]) -> Option<bool> {
        if offsets.is_empty() {
            return None;
        }
        let tpl = self.tpl(offsets.iter().map(|(p, o)| (*p, Some(*o))));
        let started = Instant::now();
        let res = consumer.commit(&tpl, CommitMode::Sync);
        metrics::histogram!(m::COMMIT_LATENCY, "mode" => "sync")
            .record(started.elapsed().as_secs_f64());
        // The brokers' answer is this commit's outcome: counted here and nowhere else.
        match res {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                self.count_commit("sync", true);
                {
                    let mut c = lock(&self.committed);
                    for (p, o) in offsets {
                        let e = c.entry(*p).or_insert(*o);
                        *e = (*e).max(*o);
                    }
                }
                if res.is_ok() {
                    // the coordinator now holds these offsets: earlier asynchronous commits
                    // at or below them are settled
                    self.resolve_async(&offsets.iter().copied().collect(), false);
                }
                info!(topic = %self.topic, ?offsets, "synchronous commit ok");
                Some(true)
            }
            Err(e) => {
                self.count_commit("sync", false);
                warn!(topic = %self.topic, error = %e, ?offsets, "synchronous commit failed");
                Some(false)
            }
        }
    }

    /// Counts one commit whose outcome is known, in the metric and the run summary alike.
    fn count_commit(&self, mode: &'static str, ok: bool) {
        let counters = &self.shared.counters;
        bump(&counters.commits);
        if !ok {
            bump(&counters.commit_failures);
        }
        let result = if ok { "ok" } else { "failed" };
        metrics::counter!(m::COMMITS, "mode" => mode, "result" => result).increment(1);
    }

    /// Settles pending asynchronous commits against `held` (partition → offset the coordinator
    /// holds, `-1` for none; partitions not in it were not answered): a commit whose every
    /// offset is held, or passed, counts `ok`; with `quiet` (no commit sent for an interval, so
    /// each one sent has had its answer) a commit with an answered partition held below its
    /// offset counts `failed` (refused, lost, or overtaken by an older commit that landed
    /// later; its offsets are sent again). The rest stay pending.
    fn resolve_async(&self, held: &BTreeMap<i32, i64>, quiet: bool) {
        let (ok, failed) = settle(&mut lock(&self.pending_async), held, quiet);
        for _ in 0..ok {
            self.count_commit("async", true);
        }
        for _ in 0..failed {
            self.count_commit("async", false);
        }
    }

    /// Asks the coordinator what it holds for the partitions of pending asynchronous commits
    /// and settles them as after a quiet interval: the member is stopping, no commit is sent
    /// after this. A commit whose partitions cannot be read back stays uncounted.
    fn resolve_async_at_stop(&self, consumer: &BaseConsumer<Self>) {
        let parts: std::collections::BTreeSet<i32> = lock(&self.pending_async)
            .iter()
            .flatten()
            .map(|(p, _)| *p)
            .collect();
        if parts.is_empty() {
            return;
        }
        let tpl = self.tpl(parts.into_iter().map(|p| (p, None)));
        match consumer.committed_offsets(tpl, CONFIRM_TIMEOUT) {
            Ok(held) => self.resolve_async(&self.held(&held), true),
            Err(e) => {
                let n = lock(&self.pending_async).len();
                warn!(topic = %self.topic, error = %e, commits = n, "could not read back the committed offsets at shutdown: the outcome of the last asynchronous commits is unknown (not counted)");
            }
        }
    }

    /// The answered partitions of a read-back: partition → offset held (`-1` for none).
    fn held(&self, tpl: &TopicPartitionList) -> BTreeMap<i32, i64> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == &*self.topic && e.error().is_ok())
            .map(|e| {
                let have = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                };
                (e.partition(), have)
            })
            .collect()
    }

    /// Takes a polled record; `true` when its partition's window is now full (the burst ends
    /// there, so a window is overshot by one record at most).
    fn dispatch(&self, msg: &BorrowedMessage<'_>) -> bool {
        let mut table = lock(&self.table);
        let Some(owned) = table.get_mut(msg.partition()) else {
            debug!(topic = %self.topic, partition = msg.partition(), offset = msg.offset(), "record of an unowned partition ignored");
            return false;
        };
        owned.push(Record::from_message(&self.topic, msg));
        owned.full(
            self.shared.cfg.max_in_flight_per_partition,
            self.window.load(Ordering::Relaxed),
        )
    }

    /// Hands polled records to the owners and pauses partitions whose windows are full.
    /// Returns whether any partition is paused.
    fn flush(&self, consumer: &BaseConsumer<Self>) -> bool {
        let max_span = self.shared.cfg.max_in_flight_per_partition;
        let window = self.window.load(Ordering::Relaxed);
        let mut full = Vec::new();
        let mut any_paused = false;
        {
            let mut table = lock(&self.table);
            for o in table.iter_mut() {
                o.flush();
                if !o.paused && o.over(max_span, window) {
                    full.push(o.link.ctx.partition);
                }
                any_paused |= o.paused;
            }
        }
        if full.is_empty() {
            return any_paused;
        }
        // A pause makes librdkafka drop the partition's prefetched records and fetch them again
        // on resume, which costs more than it saves while the owner keeps up on average: first
        // give the owners a moment to make room (nothing more is polled meanwhile, so the
        // windows hold), and pause only the partitions that stay full (e.g. a stuck record).
        let deadline = Instant::now() + ROOM_WAIT;
        while !full.is_empty() && Instant::now() < deadline {
            std::thread::sleep(ROOM_POLL);
            let mut table = lock(&self.table);
            full.retain(|p| {
                table.get_mut(*p).is_some_and(|o| {
                    o.flush();
                    o.over(max_span, window)
                })
            });
        }
        if full.is_empty() {
            return any_paused;
        }
        {
            let mut table = lock(&self.table);
            for p in &full {
                if let Some(o) = table.get_mut(*p) {
                    o.paused = true;
                    o.link.ctx.metrics.pauses.increment(1);
                    bump(&self.shared.counters.pauses);
                }
            }
        }
        debug!(topic = %self.topic, partitions = ?full, "window full: pausing");
        if let Err(e) = consumer.pause(&self.tpl(full.into_iter().map(|p| (p, None)))) {
            warn!(topic = %self.topic, error = %e, "pause failed");
        }
        true
    }

    /// Resumes paused partitions whose windows drained to half. Returns whether any stays paused.
    fn resume_drained(&self, consumer: &BaseConsumer<Self>) -> bool {
        let max_span = self.shared.cfg.max_in_flight_per_partition;
        let window = self.window.load(Ordering::Relaxed);
        let mut resume = Vec::new();
        let mut still = false;
        {
            let mut table = lock(&self.table);
            for o in table.iter_mut().filter(|o| o.paused) {
                o.flush();
                if o.under(max_span, window) {
                    o.paused = false;
                    resume.push(o.link.ctx.partition);
                } else {
                    still = true;
                }
            }
        }
        if !resume.is_empty() {
            debug!(topic = %self.topic, partitions = ?resume, "window drained: resuming");
            if let Err(e) = consumer.resume(&self.tpl(resume.into_iter().map(|p| (p, None)))) {
                warn!(topic = %self.topic, error = %e, "resume failed");
            }
        }
        still
    }

    /// Whether an asynchronous commit is due: enough records completed, or the interval passed
    /// with at least one completed.
    fn commit_due(&self, since_commit: Duration) -> bool {
        let cfg = &self.shared.cfg;
        let n = self.completed.load(Ordering::Acquire);
        n >= cfg.commit_every || (n > 0 && since_commit >= cfg.commit_interval)
    }

    /// Whether to ask the coordinator what it holds: asynchronous commits were sent since the
    /// last confirmation, and the member went quiet for an interval or has not confirmed for
    /// [`CONFIRM_EVERY`] intervals.
    fn confirm_due(&self, since_commit: Duration, since_confirm: Duration) -> bool {
        let interval = self.shared.cfg.commit_interval;
        self.unconfirmed.load(Ordering::Acquire)
            && since_confirm >= interval
            && ((self.completed.load(Ordering::Acquire) == 0 && since_commit >= interval)
                || since_confirm >= interval * CONFIRM_EVERY)
    }

    /// Asks the coordinator for the committed offsets of every owned partition with a
    /// committable offset, records what it holds, and commits again where it holds less: a
    /// commit refused (e.g. by a rebalance's generation change) or overtaken by an older one
    /// that librdkafka retried later is sent again instead of waiting for the partition's next
    /// record, which an idle partition may never get. Confirmations go on until every commit
    /// sent has had `session_timeout` to land (librdkafka holds one that long while no
    /// coordinator is known); a commit the coordinator does not hold after a quiet interval
    /// was refused, lost or overtaken: that is counted and logged.
    fn confirm(&self, consumer: &BaseConsumer<Self>, quiet: bool) {
        // (partition, committable, last sent)
        let wanted: Vec<(i32, i64, i64)> = {
            let mut table = lock(&self.table);
            table
                .iter_mut()
                .filter_map(|o| Some((o.link.ctx.partition, o.committable()?, o.sent_commit)))
                .collect()
        };
        // also the partitions of pending asynchronous commits, owned or not any more
        let asked: std::collections::BTreeSet<i32> = wanted
            .iter()
            .map(|(p, ..)| *p)
            .chain(lock(&self.pending_async).iter().flatten().map(|(p, _)| *p))
            .collect();
        if asked.is_empty() {
            self.unconfirmed.store(false, Ordering::Release);
            return;
        }
        let unanswered_before = asked.len();
        let tpl = self.tpl(asked.into_iter().map(|p| (p, None)));
        let held = match consumer.committed_offsets(tpl, CONFIRM_TIMEOUT) {
            Ok(held) => self.held(&held),
            Err(e) => {
                warn!(topic = %self.topic, error = %e, "could not ask the coordinator for the committed offsets; asking again in an interval");
                return;
            }
        };
        // partitions not answered are asked again next time
        let unanswered = held.len() < unanswered_before;
        let mut refused = Vec::new();
        let mut again = Vec::new();
        {
            let mut c = lock(&self.committed);
            for (p, want, sent) in wanted {
                let Some(&have) = held.get(&p) else {
                    continue;
                };
                // what the coordinator holds now, even below an earlier read: a late older
                // commit moves it back
                if have >= 0 {
                    c.insert(p, have);
                }
                if quiet && have < sent {
                    refused.push((p, sent, have));
                }
                if have < want {
                    again.push((p, want));
                }
            }
        }
        self.resolve_async(&held, quiet);
        if !refused.is_empty() {
            warn!(topic = %self.topic, ?refused, "commits the coordinator does not hold (partition, sent, held): sending them again");
        }
        if again.is_empty() {
            let settle = self.shared.cfg.session_timeout + CONFIRM_TIMEOUT;
            let settled = lock(&self.last_async).is_none_or(|t| t.elapsed() >= settle);
            let pending = !lock(&self.pending_async).is_empty();
            self.unconfirmed
                .store(unanswered || !settled || pending, Ordering::Release);
            return;
        }
        {
            let mut table = lock(&self.table);
            for (p, want) in &again {
                if let Some(o) = table.get_mut(*p) {
                    o.sent_commit = o.sent_commit.max(*want);
                }
            }
        }
        self.send_async(consumer, again);
    }

    /// Commits every owned partition's committable offset above the last one sent.
    fn commit_async(&self, consumer: &BaseConsumer<Self>) {
        // Acquire pairs with the owners' Release increments: every completion counted here
        // has its committable offset visible below; later ones stay counted for next time.
        self.completed.swap(0, Ordering::AcqRel);
        let mut offsets = Vec::new();
        {
            let mut table = lock(&self.table);
            for o in table.iter_mut() {
                if let Some(c) = o.committable()
                    && c > o.sent_commit
                {
                    o.sent_commit = c;
                    offsets.push((o.link.ctx.partition, c));
                }
            }
        }
        self.send_async(consumer, offsets);
    }

    fn send_async(&self, consumer: &BaseConsumer<Self>, offsets: Vec<(i32, i64)>) {
        if offsets.is_empty() {
            return;
        }
        self.unconfirmed.store(true, Ordering::Release);
        *lock(&self.last_async) = Some(Instant::now());
        let tpl = self.tpl(offsets.iter().map(|(p, o)| (*p, Some(*o))));
        match consumer.commit(&tpl, CommitMode::Async) {
            // its outcome comes with a later read-back (or the next successful sync commit)
            Ok(()) => lock(&self.pending_async).push(offsets),
            Err(e) => {
                // not sent: that is its outcome
                self.count_commit("async", false);
                warn!(topic = %self.topic, error = %e, "async commit could not be issued; the next commit or confirmation sends its offsets again");
            }
        }
    }
}

impl<H: Handler> ClientContext for Side<H> {
    fn stats(&self, statistics: Statistics) {
        let Some(t) = statistics.topics.get(&*self.topic) else {
            return;
        };
        // stored for the partition's owner, which sets the gauge on its tick
        let mut table = lock(&self.table);
        for (p, part) in &t.partitions {
            if let Some(o) = table.get_mut(*p)
                && part.consumer_lag >= 0
            {
                o.link
                    .ctx
                    .lag_records
                    .store(part.consumer_lag, Ordering::Relaxed);
            }
        }
    }
}

impl<H: Handler> ConsumerContext for Side<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let counters = &self.shared.counters;
        bump(&counters.rebalances);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = self.tps(tpl);
                info!(topic = %self.topic, partitions = ?parts, "partitions assigned");
                metrics::counter!(m::REBALANCES, "kind" => "assign").increment(1);
                self.assign(&parts);
            }
            Rebalance::Revoke(tpl) => {
                let parts = self.tps(tpl);
                if consumer.assignment_lost() {
                    warn!(topic = %self.topic, partitions = ?parts, "partitions lost: cancelling their work without commit");
                    metrics::counter!(m::REBALANCES, "kind" => "lost").increment(1);
                    counters
                        .lost
                        .fetch_add(parts.len() as u64, Ordering::Relaxed);
                    let _ = self.release(&parts, Instant::now());
                    return;
                }
                info!(topic = %self.topic, partitions = ?parts, "partitions revoked: draining");
                metrics::counter!(m::REBALANCES, "kind" => "revoke").increment(1);
                let deadline = Instant::now() + self.shared.cfg.revoke_drain_timeout;
                let drained = self.release(&parts, deadline);
                match self.commit_drained(consumer, &drained) {
                    Some(true) => bump(&counters.revoke_ok),
                    Some(false) => bump(&counters.revoke_failed),
                    None => debug!(topic = %self.topic, "revoke: nothing new to commit"),
                }
            }
            Rebalance::Error(e) => warn!(topic = %self.topic, error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // a partition paused before it was revoked may come back paused
        if let Rebalance::Assign(tpl) = rebalance
            && let Err(e) = consumer.resume(tpl)
        {
            debug!(error = %e, "resume after assign");
        }
    }

    /// Not called for the commits this member issues (see [`Side::committed`]); it would be
    /// for synchronous ones too, so it counts nothing: each commit is counted where its outcome
    /// is known ([`Side::commit_sync`], [`Side::resolve_async`]).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let mut c = lock(&self.committed);
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && e.error().is_ok()
                    {
                        let ent = c.entry(e.partition()).or_insert(o);
                        *ent = (*ent).max(o);
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                warn!(topic = %self.topic, error = %err, "commit failed; the next commit carries its offsets");
                self.unconfirmed.store(true, Ordering::Release);
            }
        }
    }
}

/// Polls until `stop`, then drains, commits and leaves the group.
pub(crate) fn poll_loop<H: Handler>(
    consumer: BaseConsumer<Side<H>>,
    stop: &CancellationToken,
) -> SideSummary {
    let side = consumer.context();
    let mut last_commit = Instant::now();
    let mut last_confirm = Instant::now();
    let mut last_housekeeping = Instant::now();
    // While a partition is paused the loop comes back often to resume it: a poll that blocks
    // (every fetchable partition paused) would otherwise let the owners run dry.
    let mut any_paused = false;
    let mut refused = None;
    // A refusal before the first assignment is a configuration error: stop and say so. Once
    // the member has worked, the same error may be ACLs being changed: log it, keep polling.
    let mut ever_assigned = false;
    while !stop.is_cancelled() {
        ever_assigned = ever_assigned || lock(&side.table).len() > 0;
        let (timeout, housekeeping) = if any_paused {
            (Duration::from_millis(2), Duration::from_millis(2))
        } else {
            (Duration::from_millis(50), Duration::from_millis(20))
        };
        let mut next = consumer.poll(timeout);
        let mut n = 0;
        while let Some(res) = next {
            let full = match res {
                Ok(msg) => side.dispatch(&msg),
                Err(e) => {
                    match e.rdkafka_error_code().filter(|c| is_refusal(*c)) {
                        Some(_) if ever_assigned => {
                            error!(topic = %side.topic, error = %e, "refused by Kafka after working: ACLs or credentials changed? still polling");
                        }
                        Some(code) => {
                            error!(topic = %side.topic, error = %e, "refused by Kafka: stopping the member");
                            refused = Some((code, e.to_string()));
                            // Both consumers of the member stop: drain, commit, leave.
                            stop.cancel();
                        }
                        None => warn!(topic = %side.topic, error = %e, "consumer error"),
                    }
                    false
                }
            };
            n += 1;
            if full || n >= BURST {
                break;
            }
            next = consumer.poll(Duration::ZERO);
        }
        any_paused = side.flush(&consumer);
        if last_housekeeping.elapsed() >= housekeeping {
            last_housekeeping = Instant::now();
            if any_paused {
                any_paused = side.resume_drained(&consumer);
            }
            if side.commit_due(last_commit.elapsed()) {
                side.commit_async(&consumer);
                last_commit = Instant::now();
            } else if side.confirm_due(last_commit.elapsed(), last_confirm.elapsed()) {
                // no commit sent for an interval: each one sent has had its answer
                let quiet = last_commit.elapsed() >= side.shared.cfg.commit_interval;
                side.confirm(&consumer, quiet);
                last_confirm = Instant::now();
            }
        }
    }
    SideSummary {
        refused,
        ..shutdown(consumer)
    }
}

fn shutdown<H: Handler>(consumer: BaseConsumer<Side<H>>) -> SideSummary {
    let side = consumer.context();
    let cfg = &side.shared.cfg;
    info!(topic = %side.topic, "shutdown: stop fetching, drain, commit, leave");
    if let Ok(assignment) = consumer.assignment()
        && let Err(e) = consumer.pause(&assignment)
    {
        debug!(error = %e, "pause on shutdown");
    }
    let parts: Vec<i32> = {
        let mut table = lock(&side.table);
        table.iter_mut().map(|o| o.link.ctx.partition).collect()
    };
    let deadline = Instant::now() + cfg.shutdown_timeout;
    let counters = &side.shared.counters;
    let cancelled_before = counters.cancelled.load(Ordering::Relaxed);
    let abandoned_before = counters.forwards_abandoned.load(Ordering::Relaxed);
    let drained = side.release(&parts, deadline);
    // Work cut short: a handler cancelled or still running at the deadline, or a retry /
    // dead-letter copy whose send was interrupted (it may exist; its record comes again).
    let mut forced = counters.cancelled.load(Ordering::Relaxed) > cancelled_before
        || counters.forwards_abandoned.load(Ordering::Relaxed) > abandoned_before
        || drained.iter().any(|d| d.stuck);
    if forced {
        warn!(topic = %side.topic, "shutdown drain deadline hit: committing the frontier, in-flight work is abandoned");
    }
    let ok = side.commit_drained(&consumer, &drained) != Some(false);
    side.resolve_async_at_stop(&consumer);
    let committed = lock(&side.committed).clone();
    let mut uncommitted = BTreeMap::new();
    for d in &drained {
        let range = if ok {
            d.uncommitted.clone()
        } else {
            // the commit failed: everything after the last confirmed commit comes again
            let from = committed.get(&d.partition).copied();
            match (from, &d.uncommitted, d.committable) {
                (Some(f), Some(r), _) => Some(f.min(r.start)..r.end),
                (Some(f), None, Some(c)) if f < c => Some(f..c),
                (None, r, _) => r.clone(),
                _ => None,
            }
        };
        if let Some(r) = range {
            uncommitted.insert((side.topic.to_string(), d.partition), r);
        }
    }
    if !uncommitted.is_empty() {
        warn!(topic = %side.topic, ?uncommitted, "uncommitted ranges at shutdown (will be redelivered)");
    }
    consumer.unsubscribe();
    let topic = side.topic.to_string();
    let close_timeout = cfg.close_timeout;
    // rdkafka's drop closes the consumer queue and polls until closed, which can hang on a
    // broken cluster: it runs on a helper thread with a deadline.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("orderstream-close".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(close_timeout).is_err() {
                forced = true;
                warn!(timeout = ?close_timeout, "consumer did not close in time: abandoned (forced close)");
            }
        }
        Err(e) => {
            forced = true;
            warn!(error = %e, "could not spawn the close thread");
        }
    }
    SideSummary {
        committed: committed
            .into_iter()
            .map(|(p, o)| ((topic.clone(), p), o))
            .collect(),
        uncommitted,
        forced_close: forced,
        shutdown_commit_failed: !ok,
        refused: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};

    use super::super::handler::{PerRecord, Shared};
    use super::super::{client, parked, summary};
    use super::Side;
    use crate::budget::MemoryBudget;
    use crate::forward_producer::ForwardProducer;
    use crate::{ConsumerConfig, ProcessError, Processor, Record, Topics};

    #[derive(Debug)]
    struct Nothing;

    impl Processor for Nothing {
        async fn process(&self, _: &Record) -> Result<(), ProcessError> {
            Ok(())
        }
    }

    /// An asynchronous commit is counted when its outcome is known, not when it is issued,
    /// and once: in the run summary's counters, bumped with the metric.
    #[test]
    fn async_commits_are_counted_at_their_outcome_not_at_issue() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        // no broker: librdkafka queues the commit and never answers
        let cfg = ConsumerConfig::new("127.0.0.1:1", "g", Topics::new("o", "o.retry", "o.dlq"));
        let producer =
            ForwardProducer::new(client::producer_config(&cfg), Duration::from_secs(1)).unwrap();
        let budget = MemoryBudget::split(cfg.memory_budget);
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            handler: PerRecord(Arc::new(Nothing)),
            producer,
            parked: parked::Parked::default(),
            counters: summary::Counters::default(),
        });
        let side = Side::new(Arc::clone(&shared), rt.handle().clone(), "o", false, budget);
        let consumer: BaseConsumer<Side<PerRecord<Nothing>>> =
            client::consumer_config(&cfg, "g", &budget)
                .create_with_context(side)
                .unwrap();
        let side = consumer.context();
        let counted = || {
            let c = &shared.counters;
            (
                c.commits.load(Ordering::Relaxed),
                c.commit_failures.load(Ordering::Relaxed),
            )
        };
        side.send_async(&consumer, vec![(0, 5), (1, 3)]);
        side.send_async(&consumer, vec![(0, 9)]);
        assert_eq!(counted(), (0, 0), "counted before the outcome is known");
        side.resolve_async(&[(0, 5), (1, 3)].into_iter().collect(), false);
        assert_eq!(counted(), (1, 0));
        side.resolve_async(&[(0, 5), (1, 3)].into_iter().collect(), true);
        assert_eq!(
            counted(),
            (2, 1),
            "held below after a quiet interval: failed"
        );
        side.resolve_async(&[(0, 20), (1, 20)].into_iter().collect(), true);
        assert_eq!(counted(), (2, 1), "a settled commit is not counted again");
        // closing needs a broker
        std::mem::forget(consumer);
    }
}
