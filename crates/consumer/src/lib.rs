//! orderstream consumer: a Kafka consumer-group member with manual, frontier-based commits,
//! rebalance-safe draining, key-ordered parallelism, in-place retries, a retry topic and a
//! dead-letter topic.
//!
//! # Architecture
//! * One `BaseConsumer` per member, polled on a **dedicated std thread** (the "poll thread").
//!   librdkafka runs the rebalance callback inside `poll`, i.e. on that thread.
//! * Handlers run on tokio tasks: each partition has a pool of worker tasks (at most
//!   [`ConsumerConfig::max_concurrency`] not sleeping/producing, started on demand). A worker
//!   drains its ordering slot (see [`OrderingMode`]), then continues with the oldest ready slot of
//!   the partition instead of exiting; handler calls are bounded by a semaphore of
//!   [`ConsumerConfig::max_concurrency`] permits. Metric handles are registered once per
//!   assigned partition, so install the metrics recorder before starting a member.
//! * Shared per-partition state (commit frontier, key queues, running count) lives behind a
//!   `std::sync::Mutex` + `Condvar`. Handler tasks only take the mutex briefly; the revoke
//!   callback waits on the condvar (releasing the mutex) with a deadline. Because the poll thread
//!   is not a tokio worker, blocking it never starves the handlers: no deadlock.
//! * Commits: only [`CommitFrontier::committable`] offsets are ever committed; asynchronously on
//!   an interval / count in steady state, synchronously on revoke and on shutdown.
//!
//! # Failure handling
//! A [`ProcessError::Transient`] is retried in place ([`BackoffConfig`]); after that budget the
//! record is *parked* in the retry topic (non-blocking), and after
//! [`ConsumerConfig::max_retry_topic_attempts`] parkings it goes to the dead-letter topic.
//! A [`ProcessError::Permanent`] goes straight to the dead-letter topic. A record's offset only
//! counts as completed once its retry/dead-letter copy is acknowledged by the broker. The
//! (idempotent) retry/dead-letter producer is rebuilt when librdkafka raises a fatal error on it,
//! and the send is retried on the new handle.
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

mod config;
mod dedup;
mod forward_producer;
mod frontier;
pub mod headers;
mod member;
pub mod metric;
mod replay;
mod scheduler;
pub mod trace_context;

pub mod sample;

pub use config::{BackoffConfig, ConfigError, ConsumerConfig, GroupProtocol, OrderingMode, Topics};
pub use dedup::Dedup;
pub use frontier::{CommitFrontier, FrontierError};
pub use member::{ConsumerError, RunSummary, run};
pub use replay::{
    DeadLetter, ReplayError, ReplaySelection, ReplaySummary, read_dead_letters, replay,
};

use std::future::Future;

/// One consumed record handed to a [`Processor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic the record was consumed from (the retry topic for a retried record).
    pub topic: String,
    /// Partition it was consumed from.
    pub partition: i32,
    /// Offset it was consumed from.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
    /// Headers (a null header value is given as empty bytes).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record timestamp in ms since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// 1-based attempt number across in-place retries and retry-topic rounds.
    pub attempt: u32,
}

impl Record {
    /// The first header value with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A record handler. Must be idempotent or dedup (delivery is at least once).
pub trait Processor: Send + Sync + 'static {
    /// Processes one record.
    fn process(&self, record: &Record) -> impl Future<Output = Result<(), ProcessError>> + Send;
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
