//! One of a member's consumers (the source topic, or the retry topic in its own group): its
//! context and the poll thread's loop. Its rebalance callbacks are in `rebalance.rs`, its
//! commits in `commits.rs`, its end in `shutdown.rs`.
//!
//! librdkafka runs rebalance and commit callbacks inside `poll`, on the poll thread, so the
//! partition table is only ever touched by that thread; its mutex is uncontended and exists
//! because the context must be `Sync`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::handler::{Handler, Shared};
use super::partitions::Table;
use super::shutdown::shutdown;
use super::summary::bump;
use crate::Record;
use crate::budget::MemoryBudget;

/// Records taken from librdkafka per poll burst before they are handed to the owners.
const BURST: usize = 2048;
/// How long the poll thread waits for a full window to make room before pausing the partition,
/// while another partition waits for records (see `Owned::hungry`).
const ROOM_WAIT: Duration = Duration::from_millis(20);
/// The same wait while no other partition needs records: then a pause only buys a refetch.
const STALL_WAIT: Duration = Duration::from_millis(200);
/// How often it looks while waiting.
const ROOM_POLL: Duration = Duration::from_micros(500);

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
    pub(super) table: Mutex<Table>,
    pub(super) window: AtomicUsize,
    pub(super) completed: Arc<AtomicUsize>,
    /// Offsets the coordinator confirmed: synchronous commits, and what [`Side::confirm`] read
    /// back. (librdkafka reports the outcome of a commit the application issued only to an
    /// `offset_commit_cb`, which rust-rdkafka never registers: it enables the offset-commit
    /// event instead, which librdkafka raises for automatic commits only. So the context's
    /// [`commit_callback`](rdkafka::consumer::ConsumerContext::commit_callback) is not called
    /// for these commits, synchronous or asynchronous.)
    pub(super) committed: Mutex<BTreeMap<i32, i64>>,
    /// Asynchronous commits sent whose outcome is not known yet, each with its offsets
    /// (partition, offset): counted when the coordinator is seen holding them, or holding less
    /// after a quiet interval (see [`Side::resolve_async`]).
    pub(super) pending_async: Mutex<Vec<Vec<(i32, i64)>>>,
    /// Asynchronous commits were sent since the last confirmed one: their outcome is unknown.
    pub(super) unconfirmed: AtomicBool,
    /// When the last asynchronous commit was handed to librdkafka: until `session_timeout`
    /// after it, librdkafka may still be holding it (parked while no coordinator is known, or
    /// retrying), and it may land after a newer one and move the committed offset back.
    pub(super) last_async: Mutex<Option<Instant>>,
}

impl<H> std::fmt::Debug for Side<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("topic", &self.topic)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    pub(super) fn tps(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == &*self.topic)
            .map(|e| e.partition())
            .collect()
    }

    pub(super) fn source_tps(&self, parts: &[i32]) -> Vec<(String, i32)> {
        parts.iter().map(|p| (self.topic.to_string(), *p)).collect()
    }

    pub(super) fn tpl(
        &self,
        parts: impl IntoIterator<Item = (i32, Option<i64>)>,
    ) -> TopicPartitionList {
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
    fn flush(&self, consumer: &BaseConsumer<Self>, stop: &CancellationToken) -> bool {
        let max_span = self.shared.cfg.max_in_flight_per_partition;
        let window = self.window.load(Ordering::Relaxed);
        let mut full = Vec::new();
        let mut any_paused = false;
        let start = Instant::now();
        {
            let mut table = lock(&self.table);
            for o in table.iter_mut() {
                o.note_fed(start);
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
        // a full partition is never hungry (over and under its window at once)
        let hungry_now =
            |table: &mut Table| table.iter_mut().any(|o| o.hungry(max_span, window, start));
        let mut hungry = hungry_now(&mut lock(&self.table));
        // A pause makes librdkafka drop the partition's prefetched records and fetch them again
        // on resume, which costs more than it saves while the owner keeps up on average: first
        // give the owners a moment to make room (nothing more is polled meanwhile, so the
        // windows hold), and pause only the partitions that stay full (e.g. a stuck record).
        // The moment is short while another partition waits for records, longer while none
        // does: a uniformly slow handler then frees room before the wait ends, and its
        // partitions are never dropped and refetched (each refetch churns up to the prefetch
        // share of the budget through the allocator).
        loop {
            let waited = start.elapsed();
            if stop.is_cancelled() {
                return any_paused;
            }
            if full.is_empty() || waited >= STALL_WAIT || (hungry && waited >= ROOM_WAIT) {
                break;
            }
            std::thread::sleep(ROOM_POLL);
            let mut table = lock(&self.table);
            full.retain(|p| {
                table.get_mut(*p).is_some_and(|o| {
                    o.flush();
                    o.over(max_span, window)
                })
            });
            hungry = hungry || hungry_now(&mut table);
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
        any_paused = side.flush(&consumer, stop);
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
