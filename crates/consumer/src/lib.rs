//! orderstream consumer: a Kafka consumer-group member with manual, frontier-based commits,
//! rebalance-safe draining, key-ordered parallelism, in-place retries, a retry topic and a
//! dead-letter topic.
//!
//! # Architecture
//! * Two `BaseConsumer`s per member, each polled on a **dedicated std thread** (the "poll
//!   thread"): one for the source topic in the member's group, one for the retry topic in the
//!   group [`ConsumerConfig::retry_group`], so each topic is balanced over the members on its
//!   own. librdkafka runs rebalance and commit callbacks inside `poll`, on that thread.
//! * Every assigned partition has one long-lived **owner** task that holds the partition's
//!   [`CommitFrontier`] and key scheduler: no member-wide lock, no task per record. The poll
//!   thread hands records to owners in batches over a bounded channel; owners run handler calls
//!   as futures, at most [`ConsumerConfig::max_concurrency`] per partition, one key at a time
//!   (see [`OrderingMode`]). A handler call is polled once where the owner starts it: one that
//!   finishes without waiting completes there, and only one that waits joins the owner's set of
//!   running calls. A [`BatchProcessor`] gets a partition's ready records in one call.
//! * A [`Record`] costs one allocation: key, value and headers share one buffer.
//! * Memory is bounded by [`ConsumerConfig::memory_budget`], split between librdkafka's
//!   prefetch and the records handed to owners ([`MemoryBudget`]); a partition whose byte window
//!   or offset window ([`ConsumerConfig::max_in_flight_per_partition`], counted from the lowest
//!   unfinished record, so one stuck record fills it) is full is paused until both are half empty.
//! * Commits: only [`CommitFrontier::committable`] offsets, published by each owner through an
//!   atomic, are ever committed; asynchronously on an interval / count in steady state,
//!   synchronously on revoke and on shutdown, after the partition's owner has ended. An owner
//!   still running handlers at the drain deadline cancels them (they are futures inside the
//!   owner), so no handler of a revoked partition keeps running beside its new owner (a handler
//!   that blocks its thread instead of awaiting cannot be cancelled).

//! # Failure handling
//! A [`ProcessError::Transient`] is retried in place ([`BackoffConfig`]); after that budget the
//! record is *parked* in the retry topic (non-blocking), and after
//! [`ConsumerConfig::max_retry_topic_attempts`] parkings it goes to the dead-letter topic.
//! A [`ProcessError::Permanent`] goes straight to the dead-letter topic. A record's offset only
//! counts as completed once its retry/dead-letter copy is acknowledged by the broker. The
//! (idempotent) retry/dead-letter producer is rebuilt when librdkafka raises a fatal error on it,
//! and the send is retried on the new handle.
//!
//! # Tracing
//! Each record is handled in an info-level `record` span (`topic`, `partition`, `offset`,
//! `trace_id`) that continues the record's W3C `traceparent`: with a `tracing-opentelemetry`
//! layer installed it is the OpenTelemetry child of the producer-side span, and the record's
//! retry and dead-letter copies, and [`replay`]ed records, carry the context of the span that
//! sent them, so one trace follows a record through every hop. See [`trace_context`].
//!
//! # Per-key order rule with the retry topic
//! Rule: **while this member owns a source partition, a record with key `K` of that partition
//! is never processed before an earlier record with key `K` of that partition that is parked in
//! the retry topic.** Mechanics:
//! * When a source record is parked (its in-place budget is exhausted) it gets a *park id*
//!   (per-member counter, so ids grow in source order) carried in the
//!   `orderstream.retry.park_id` header, and the id is recorded as pending under
//!   (source partition, `K`).
//! * A later source record of `K` from that partition, seeing pending ids, is parked too without
//!   being processed (a *follower*, header `orderstream.retry.follower=1`, its own park id).
//! * A record consumed from the retry topic follows again if a record with a *smaller* park id
//!   of the same origin and key is still pending (e.g. its leader failed again and was re-parked
//!   behind it); it keeps its park id across re-parks, so order is by original source order.
//! * The id is released when the record reaches a final state: processed, or dead-lettered.
//!
//! The retry topic is keyed like the source, so a key's parked records share a retry partition,
//! which is processed key-ordered as well. Limits: pending ids are in memory. They are dropped
//! when the source partition is revoked or lost, and after a restart, so order between records
//! still parked and new source records is then not guaranteed. When another member owns the
//! retry partition, our pending ids for that key are never released while we own the source
//! partition: later records of `K` keep following (order kept, latency paid). A record that ends
//! in the dead-letter topic is, by definition, out of order.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod budget;
mod config;
mod dedup;
mod forward_producer;
mod frontier;
pub mod headers;
mod member;
pub mod metric;
mod record;
mod replay;
mod scheduler;
mod stage;
pub mod trace_context;

pub use budget::MemoryBudget;
pub use config::{
    BackoffConfig, ConfigError, ConsumerConfig, GroupProtocol, MIN_MEMORY_BUDGET, OrderingMode,
    Topics,
};
pub use dedup::Dedup;
pub use frontier::{CommitFrontier, FrontierError};
pub use member::{ConsumerError, RunSummary, SPAN_TARGET, run, run_batched};
pub use record::{HeaderIter, Record};
pub use replay::{
    DeadLetter, ReplayError, ReplaySelection, ReplaySummary, read_dead_letters, replay,
};
pub use stage::{
    Output, StageConfig, StageConfigError, StageError, StageSummary, Transform, run_transactional,
};

use std::future::Future;

/// A record handler. Must be idempotent or dedup (delivery is at least once).
pub trait Processor: Send + Sync + 'static {
    /// Processes one record.
    fn process(&self, record: &Record) -> impl Future<Output = Result<(), ProcessError>> + Send;
}

/// A handler of batches, for sinks that apply a batch at once (e.g. one database transaction).
/// Must be idempotent or dedup (delivery is at least once). Run it with [`run_batched`].
pub trait BatchProcessor: Send + Sync + 'static {
    /// Processes ready records of **one partition**, in offset order, **at most one per key**
    /// (records of a key arrive in order across batches: a key's next record comes only in a
    /// later batch, after this call returned). Returns one result per record, in the same
    /// order; a failed record goes through the usual in-place retries, retry topic and
    /// dead-letter topic on its own, and its key's later records wait for it. Returning a
    /// different number of results counts as a transient failure of every record.
    fn process_batch(
        &self,
        records: &[Record],
    ) -> impl Future<Output = Vec<Result<(), ProcessError>>> + Send;
}

/// A classified handler failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// May succeed later: retried in place, then via the retry topic, then dead-lettered.
    #[error("transient failure ({class}): {message}")]
    Transient {
        /// Error class recorded if the record is eventually dead-lettered.
        class: &'static str,
        /// Human-readable message.
        message: String,
        /// Schema id when known.
        schema_id: Option<u32>,
    },
    /// Will never succeed: dead-lettered at once.
    #[error("permanent failure ({class}): {message}")]
    Permanent {
        /// Error class, e.g. `bad_magic`, `unknown_schema_id`, `illegal_transition`.
        class: &'static str,
        /// Human-readable message.
        message: String,
        /// Schema id when known.
        schema_id: Option<u32>,
    },
}

impl ProcessError {
    /// A transient failure of class `transient`.
    pub fn transient(message: impl Into<String>) -> Self {
        ProcessError::Transient {
            class: "transient",
            message: message.into(),
            schema_id: None,
        }
    }

    /// A permanent failure of class `class`.
    pub fn permanent(class: &'static str, message: impl Into<String>) -> Self {
        ProcessError::Permanent {
            class,
            message: message.into(),
            schema_id: None,
        }
    }

    /// Attaches a schema id.
    #[must_use]
    pub fn with_schema_id(mut self, id: u32) -> Self {
        match &mut self {
            ProcessError::Transient { schema_id, .. }
            | ProcessError::Permanent { schema_id, .. } => {
                *schema_id = Some(id);
            }
        }
        self
    }

    /// The error class.
    pub fn class(&self) -> &'static str {
        match self {
            ProcessError::Transient { class, .. } | ProcessError::Permanent { class, .. } => class,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            ProcessError::Transient { message, .. } | ProcessError::Permanent { message, .. } => {
                message
            }
        }
    }

    /// The schema id, when known.
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            ProcessError::Transient { schema_id, .. }
            | ProcessError::Permanent { schema_id, .. } => *schema_id,
        }
    }
}
