//! A consumer's commits: synchronous on revoke and shutdown, asynchronous on an interval or a
//! count in steady state, and the read-backs that settle asynchronous ones (librdkafka reports
//! nothing for the commits an application issues; see [`Side`]'s `committed`). Each commit is
//! counted once, where its outcome is known.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::commit_outcome::settle;
use super::handler::Handler;
use super::partitions::Drained;
use super::side::{Side, lock};
use super::summary::bump;
use crate::metric as m;

/// A member whose records keep completing confirms its commits every this many commit
/// intervals (a quiet one after one interval).
const CONFIRM_EVERY: u32 = 10;
/// How long a confirmation may hold up the poll thread (a coordinator that is there answers in
/// milliseconds; one that is not is asked again an interval later).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

impl<H: Handler> Side<H> {
    /// Commits what drained owners finished. Every partition's frontier is stated again, even
    /// one sent before: an earlier asynchronous commit still held by librdkafka may have landed
    /// after it and moved the committed offset back. Returns `None` when there was nothing to
    /// commit, else whether the commit succeeded.
    pub(super) fn commit_drained(
        &self,
        consumer: &BaseConsumer<Self>,
        drained: &[Drained],
    ) -> Option<bool> {
        let offsets: Vec<(i32, i64)> = drained
            .iter()
            .filter_map(|d| Some((d.partition, d.committable?)))
            .collect();
        self.commit_sync(consumer, &offsets)
    }

    /// Commits `offsets` and waits for the brokers' answer; `None` when there is nothing to
    /// commit, else whether the commit succeeded.
    pub(super) fn commit_sync(
        &self,
        consumer: &BaseConsumer<Self>,
        offsets: &[(i32, i64)],
    ) -> Option<bool> {
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
    pub(super) fn count_commit(&self, mode: &'static str, ok: bool) {
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
    pub(super) fn resolve_async(&self, held: &BTreeMap<i32, i64>, quiet: bool) {
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
    pub(super) fn resolve_async_at_stop(&self, consumer: &BaseConsumer<Self>) {
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
    pub(super) fn held(&self, tpl: &TopicPartitionList) -> BTreeMap<i32, i64> {
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

    /// Whether an asynchronous commit is due: enough records completed, or the interval passed
    /// with at least one completed.
    pub(super) fn commit_due(&self, since_commit: Duration) -> bool {
        let cfg = &self.shared.cfg;
        let n = self.completed.load(Ordering::Acquire);
        n >= cfg.commit_every || (n > 0 && since_commit >= cfg.commit_interval)
    }

    /// Whether to ask the coordinator what it holds: asynchronous commits were sent since the
    /// last confirmation, and the member went quiet for an interval or has not confirmed for
    /// [`CONFIRM_EVERY`] intervals.
    pub(super) fn confirm_due(&self, since_commit: Duration, since_confirm: Duration) -> bool {
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
    pub(super) fn confirm(&self, consumer: &BaseConsumer<Self>, quiet: bool) {
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
    pub(super) fn commit_async(&self, consumer: &BaseConsumer<Self>) {
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

    pub(super) fn send_async(&self, consumer: &BaseConsumer<Self>, offsets: Vec<(i32, i64)>) {
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
