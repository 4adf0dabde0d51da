//! A transactional consume → transform → produce stage: Kafka's exactly-once processing
//! (EOS v2, KIP-447) for pipelines whose effects are records in other topics.
//!
//! Each member polls a batch of its partitions' records, then, without polling in between,
//! begins a transaction, produces every record's outputs (and dead letters), adds the batch's
//! next offsets to the transaction with the consumer's group metadata, and commits. Output
//! and offsets become visible together or not at all; readers use `isolation.level=
//! read_committed`.
//!
//! Why it is safe under faults:
//! * A crash before the commit leaves an open transaction that the coordinator aborts (at the
//!   member's restart with the same `transactional.id`, or after `transaction.timeout.ms`); the
//!   records are polled again from the committed offsets.
//! * Rebalances run inside `poll`, never during a transaction; records in hand from partitions
//!   revoked meanwhile are dropped before the transaction begins (their new owner starts from
//!   the committed offsets).
//! * A member that was paused past its session (a zombie) still holds its old group
//!   generation: the coordinator refuses its offsets, so its transaction aborts and its output
//!   never becomes visible.
//! * A transient transform failure aborts the whole transaction and retries the batch after a
//!   backoff: it never dead-letters. A permanent failure dead-letters the record inside the
//!   transaction.

mod batch;
mod config;
mod outcome;
mod run;

use std::future::Future;

pub use config::{StageConfig, StageConfigError};
pub use run::run_transactional;

use crate::{ProcessError, Record};

/// One record the transform emits to the stage's output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Kafka key (decides the output partition; compaction keeps the latest per key).
    pub key: Vec<u8>,
    /// Value bytes.
    pub payload: Vec<u8>,
}

/// The transform of a transactional stage.
pub trait Transform: Send + Sync + 'static {
    /// The outputs of one source record (zero or more). `attempt` counts earlier tries of the
    /// same record (its transaction was aborted), from 0. A [`ProcessError::Transient`] aborts
    /// the transaction and retries the batch later; a [`ProcessError::Permanent`] sends the
    /// record to the dead-letter topic in the same transaction.
    fn transform(
        &self,
        record: &Record,
        attempt: u32,
    ) -> impl Future<Output = Result<Vec<Output>, ProcessError>> + Send;
}

/// What a stage member did, counted from committed transactions only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageSummary {
    /// Transactions committed.
    pub transactions: u64,
    /// Source records whose offsets were committed.
    pub records: u64,
    /// Output records committed.
    pub outputs: u64,
    /// Source records dead-lettered (committed).
    pub dead_lettered: u64,
    /// Transactions aborted (their records were processed again).
    pub aborted: u64,
    /// Producers replaced after a fatal error.
    pub producer_replacements: u64,
    /// Records in hand dropped because their partition was revoked before their transaction.
    pub dropped_on_revoke: u64,
    /// Rebalance events seen.
    pub rebalances: u64,
    /// Source records of transactions whose commit was sent but never confirmed (not counted
    /// in `records`): the broker committed or aborted each of them, and only the output topic
    /// and the committed offsets tell which. Their records were positioned from the committed
    /// offsets afterwards, so none is lost or committed twice either way.
    pub undecided: u64,
}

/// Why a stage member stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The settings are invalid.
    #[error("invalid stage settings")]
    Config(#[from] StageConfigError),
    /// A Kafka client could not be created or did not start.
    #[error("{client} of stage member `{transactional_id}`")]
    Client {
        /// `consumer` or `producer`.
        client: &'static str,
        /// The member's transactional id.
        transactional_id: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Another live producer uses this member's transactional id: two members share it.
    #[error(
        "transactional id `{transactional_id}` was taken over by another producer (two live members share it: give each its own)"
    )]
    Fenced {
        /// The shared transactional id.
        transactional_id: String,
    },
    /// The partitions of an aborted transaction could not be moved back within
    /// `transaction_timeout`: the member stops with the batch uncommitted rather than commit
    /// past it (its partitions' next owner starts from the committed offsets).
    #[error("stage member `{transactional_id}` could not rewind after an aborted transaction")]
    Rewind {
        /// The member's transactional id.
        transactional_id: String,
        /// librdkafka's error of the last try.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The stage's thread ended abnormally.
    #[error("stage thread: {0}")]
    Thread(String),
}
