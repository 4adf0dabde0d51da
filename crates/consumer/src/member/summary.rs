//! What a member reports: the error that stops it, the summary of a run, and the counters behind it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::error::KafkaError;

use crate::ConfigError;

/// Errors that stop a member from running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client operation failed.
    #[error("kafka {context}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The brokers refused this member: no permission on the group or topic (ACLs), or
    /// credentials / certificates they do not accept. Retrying cannot help; the member drained,
    /// committed what it finished, and stopped.
    #[error("Kafka refused consumer group `{group}` on topic `{topic}` ({code:?}): {reason}")]
    Refused {
        /// The group.
        group: String,
        /// The topic the member subscribed to.
        topic: String,
        /// e.g. `GroupAuthorizationFailed`, `TopicAuthorizationFailed`, `Authentication`.
        code: rdkafka::error::RDKafkaErrorCode,
        /// librdkafka's explanation.
        reason: String,
    },
    /// A poll thread ended without a summary (it panicked).
    #[error("consumer poll thread failed: {0}")]
    PollThread(String),
}

/// What a member did during [`run`](crate::run).
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
    /// Commits with at least one offset whose outcome is known (async and sync), each counted
    /// once as in the `orderstream_consumer_commits_total` metric (see [`crate::metric`]).
    pub commits: u64,
    /// Of [`commits`](Self::commits), those that failed (`result="failed"`).
    pub commit_failures: u64,
    /// Last offset (Kafka convention: next to consume) committed successfully per partition.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Synchronous commits on revoke that committed at least one offset and succeeded (a
    /// revoke with nothing new to commit is not counted).
    pub revoke_commits_ok: u64,
    /// Synchronous commits on revoke that failed.
    pub revoke_commits_failed: u64,
    /// Rebalance callbacks that moved partitions of this member (assign, revoke or lost of at
    /// least one partition), over both consumers of the member.
    pub rebalances: u64,
    /// Partitions lost (dropped without commit).
    pub partitions_lost: u64,
    /// Times a partition was paused for backpressure (offset window or byte window full).
    pub pauses: u64,
    /// Handlers cancelled because they were still running at a revoke or shutdown deadline.
    pub handlers_cancelled: u64,
    /// Retry or dead-letter copies whose send a stop or revoke cut short (the copy may exist;
    /// its source record stays uncommitted and comes again).
    pub forwards_abandoned: u64,
    /// Retry or dead-letter sends that failed or timed out and were sent again. A timed-out
    /// send may have been written all the same, so the retry or dead-letter topic can hold up
    /// to this many extra copies.
    pub forwards_resent: u64,
    /// Whether the shutdown drain or the close hit its deadline.
    pub forced_close: bool,
    /// Whether the commit of what the shutdown drain finished failed.
    pub shutdown_commit_failed: bool,
    /// Per partition, offsets dispatched but not committed at shutdown (will be redelivered).
    pub uncommitted: BTreeMap<(String, i32), Range<i64>>,
    /// Times the retry/dead-letter producer was rebuilt after a librdkafka fatal error.
    pub producer_rebuilds: u64,
}

/// Member-wide counters (relaxed atomics: they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) followed: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) commit_failures: AtomicU64,
    pub(crate) revoke_ok: AtomicU64,
    pub(crate) revoke_failed: AtomicU64,
    pub(crate) rebalances: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) pauses: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) forwards_abandoned: AtomicU64,
    pub(crate) forwards_resent: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn summary(&self) -> RunSummary {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RunSummary {
            processed: g(&self.processed),
            retried_in_place: g(&self.retried),
            parked: g(&self.parked),
            followed: g(&self.followed),
            dead_lettered: g(&self.dead_lettered),
            commits: g(&self.commits),
            commit_failures: g(&self.commit_failures),
            revoke_commits_ok: g(&self.revoke_ok),
            revoke_commits_failed: g(&self.revoke_failed),
            rebalances: g(&self.rebalances),
            partitions_lost: g(&self.lost),
            pauses: g(&self.pauses),
            handlers_cancelled: g(&self.cancelled),
            forwards_abandoned: g(&self.forwards_abandoned),
            forwards_resent: g(&self.forwards_resent),
            ..RunSummary::default()
        }
    }
}

impl RunSummary {
    /// Whether the member stopped without abandoning work: every started handler and every
    /// retry / dead-letter send finished within the drain deadline, the offsets of what
    /// finished were committed and the consumer closed in time. Records above the first
    /// unfinished one stay in [`uncommitted`](Self::uncommitted) and go to the partition's next
    /// owner, at least once: queued records it never started, and under key ordering records
    /// of other keys it finished above one it never started (their effects come again, for
    /// an idempotent sink such as the store's inbox to recognise).
    pub fn stopped_cleanly(&self) -> bool {
        !self.forced_close && !self.shutdown_commit_failed
    }
}
