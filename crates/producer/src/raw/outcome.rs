//! What happened to a record, to a flush, and to librdkafka's retries.

use std::time::Duration;

use crate::error::ProducerError;

/// What happened to one record. Exactly one per record sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// Acknowledged by the cluster (acks=all): in the topic at `partition`/`offset`.
    Delivered {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// From enqueue to acknowledgement.
        latency: Duration,
    },
    /// Definitely failed; `retriable` says whether sending it again may succeed.
    Failed {
        /// Why (carries topic and key).
        error: ProducerError,
        /// Whether a retry may succeed.
        retriable: bool,
    },
    /// No ack was seen but the record may be in the topic: delivery timed out (`MsgTimedOut`),
    /// or the producer hit a fatal error while it was in flight. Never report these as lost or
    /// as delivered; downstream dedup by event id settles them.
    PossiblyPersisted {
        /// Why (carries topic and key).
        error: ProducerError,
        /// From enqueue to the report.
        latency: Duration,
    },
    /// Nothing was handed to Kafka (encoding or registry failure, shutting down).
    NotSent {
        /// Why (carries topic and key).
        error: ProducerError,
        /// Whether a retry may succeed (e.g. the registry was unreachable).
        retriable: bool,
    },
}

impl DeliveryOutcome {
    /// `true` for [`DeliveryOutcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }

    /// The error, unless delivered.
    pub fn error(&self) -> Option<&ProducerError> {
        match self {
            DeliveryOutcome::Delivered { .. } => None,
            DeliveryOutcome::Failed { error, .. }
            | DeliveryOutcome::PossiblyPersisted { error, .. }
            | DeliveryOutcome::NotSent { error, .. } => Some(error),
        }
    }

    /// `(partition, offset)` when delivered.
    pub fn position(&self) -> Option<(i32, i64)> {
        match self {
            DeliveryOutcome::Delivered {
                partition, offset, ..
            } => Some((*partition, *offset)),
            _ => None,
        }
    }
}

/// librdkafka's request-level retry counters (summed over brokers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Requests retried (`txretries`).
    pub request_retries: u64,
    /// Requests that timed out client-side (`req_timeouts`).
    pub request_timeouts: u64,
    /// Transmission errors (`txerrs`).
    pub transmit_errors: u64,
    /// Records transmitted to brokers, re-sends included (`txmsgs`): above the acked count
    /// when records were retried.
    pub records_transmitted: u64,
}

/// What a flush left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Everything handed to librdkafka was acknowledged or failed before the deadline.
    pub complete: bool,
    /// Records still in librdkafka's queues (not yet acknowledged) when the flush returned.
    pub unflushed: usize,
    /// Sends still awaiting their delivery report (this process's view).
    pub in_flight: usize,
    /// How long the flush took.
    pub elapsed: Duration,
}
