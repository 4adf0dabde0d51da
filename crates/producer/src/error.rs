//! Typed errors of the producer crate.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::Acks;

/// A configuration refused by [`crate::ProducerConfig::validate`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `bootstrap_servers` is empty.
    #[error("invalid producer config: bootstrap_servers is empty")]
    EmptyBootstrap,
    /// Idempotence requires `acks=all`.
    #[error(
        "invalid producer config: acks={acks:?} with enable_idempotence=true (idempotence requires acks=All)"
    )]
    IdempotenceNeedsAcksAll {
        /// The refused setting.
        acks: Acks,
    },
    /// Idempotence allows at most 5 in-flight requests per connection.
    #[error(
        "invalid producer config: max_in_flight={max_in_flight} with enable_idempotence=true (at most 5)"
    )]
    IdempotenceMaxInFlight {
        /// The refused setting.
        max_in_flight: u32,
    },
    /// A timeout or backoff of zero.
    #[error("invalid producer config: {field} must be greater than zero")]
    ZeroDuration {
        /// The field.
        field: &'static str,
    },
    /// librdkafka's rule: `delivery.timeout.ms >= linger.ms + request.timeout.ms`.
    #[error(
        "invalid producer config: delivery_timeout {delivery_timeout:?} is shorter than linger {linger:?} + request_timeout {request_timeout:?}"
    )]
    DeliveryTimeoutTooShort {
        /// `delivery_timeout`.
        delivery_timeout: Duration,
        /// `linger`.
        linger: Duration,
        /// `request_timeout`.
        request_timeout: Duration,
    },
    /// An `extra` key that a typed field (or a fixed setting) owns.
    #[error(
        "invalid producer config: extra property `{key}` conflicts with the typed field {field}; set the typed field instead"
    )]
    ExtraConflict {
        /// The conflicting key, as given.
        key: String,
        /// The typed field that owns it.
        field: &'static str,
    },
    /// Any other out-of-range value.
    #[error("invalid producer config: {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Boxed source error (codec errors from `orderstream-schema`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything the producer can report. Each variant carries the context it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The configuration was refused at start-up.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused to create the client.
    #[error("cannot create the Kafka producer")]
    Client {
        /// The librdkafka error.
        #[source]
        source: KafkaError,
    },
    /// No broker answered within the start-up bound.
    #[error(
        "Kafka bootstrap servers `{bootstrap}` unreachable: no metadata for topic `{topic}` within {timeout:?}{}",
        .last_error.as_deref().map(|e| format!(" (last broker error: {e})")).unwrap_or_default()
    )]
    Unreachable {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// What librdkafka last reported about the connection, if anything.
        last_error: Option<String>,
        /// The topic whose metadata was requested.
        topic: String,
        /// The bound that expired.
        timeout: Duration,
        /// The librdkafka error.
        #[source]
        source: KafkaError,
    },
    /// A broker refused the client: wrong credentials, an untrusted certificate, or TLS
    /// settings that do not match the listener. Retrying with the same settings cannot help.
    #[error("Kafka at `{bootstrap}` {}: {reason}", crate::diagnosis::refusal_verb(*.code))]
    Refused {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// `Authentication` or `SSL`.
        code: RDKafkaErrorCode,
        /// librdkafka's explanation, naming the broker.
        reason: String,
    },
    /// The topic does not exist (the producer never auto-creates topics).
    #[error("topic `{topic}` does not exist on the cluster (create it from topology.toml first)")]
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// The live partition count differs from the layout: keys would land on other partitions.
    #[error(
        "topic `{topic}` has {actual} partitions on the cluster but the layout expects {expected}: refusing to start (per-key order would break)"
    )]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// From the layout.
        expected: i32,
        /// From the cluster.
        actual: i32,
    },
    /// Encoding or the registry lookup failed before anything was sent.
    #[error("cannot encode record for topic `{topic}` key `{}`", key.as_deref().unwrap_or("<none>"))]
    Encode {
        /// The topic.
        topic: String,
        /// The record key (lossy UTF-8).
        key: Option<String>,
        /// Whether trying again may succeed (registry unreachable) or not (bad event).
        retriable: bool,
        /// The codec error.
        #[source]
        source: BoxError,
    },
    /// The record was refused before or after it was sent; `code` says why.
    #[error("delivery to topic `{topic}` key `{}` failed: {code:?}", key.as_deref().unwrap_or("<none>"))]
    Delivery {
        /// The topic.
        topic: String,
        /// The record key (lossy UTF-8).
        key: Option<String>,
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
        /// The librdkafka error.
        #[source]
        source: KafkaError,
    },
    /// The producer handle hit a fatal error (idempotence state lost) while this record was in
    /// flight; the handle was rebuilt. The record may or may not be in the topic.
    #[error("producer fatal error while sending to topic `{topic}` key `{}`: {code:?}: {reason}", key.as_deref().unwrap_or("<none>"))]
    Fatal {
        /// The topic.
        topic: String,
        /// The record key (lossy UTF-8).
        key: Option<String>,
        /// The underlying fatal error code from `rd_kafka_fatal_error`.
        code: RDKafkaErrorCode,
        /// librdkafka's reason string.
        reason: String,
    },
    /// The producer is shutting down and accepts no new records.
    #[error("producer is shutting down: record for topic `{topic}` not sent")]
    ShuttingDown {
        /// The topic.
        topic: String,
    },
    /// More records were given to a [`crate::SendBatch`] than the length it was made for.
    #[error("batch of {len} records to topic `{topic}` is full: record not sent")]
    BatchFull {
        /// The topic.
        topic: String,
        /// The batch's length.
        len: usize,
    },
}

impl ProducerError {
    /// Whether trying the same record again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ProducerError::Encode { retriable, .. } => *retriable,
            ProducerError::Delivery { code, .. } => is_retriable_code(*code),
            ProducerError::Fatal { .. } | ProducerError::Unreachable { .. } => true,
            _ => false,
        }
    }

    /// The librdkafka error code, when there is one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            ProducerError::Delivery { code, .. }
            | ProducerError::Fatal { code, .. }
            | ProducerError::Refused { code, .. } => Some(*code),
            ProducerError::Client { source } | ProducerError::Unreachable { source, .. } => {
                source.rdkafka_error_code()
            }
            _ => None,
        }
    }
}

/// Codes after which sending the same record again can succeed.
pub(crate) fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageTimedOut
            | C::RequestTimedOut
            | C::QueueFull
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NetworkException
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::KafkaStorageError
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::UnknownTopicOrPartition
            | C::OutOfOrderSequenceNumber
            | C::UnknownProducerId
            | C::InvalidProducerEpoch
            | C::PurgeQueue
            | C::PurgeInflight
            | C::Fatal
            | C::Resolve
            | C::InvalidMessage
            | C::ThrottlingQuotaExceeded
            | C::PreferredLeaderNotAvailable
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OperationTimedOut
    )
}

/// Codes after which the record may be in the topic although no ack was seen.
pub(crate) fn is_possibly_persisted_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageTimedOut
            | C::RequestTimedOut
            | C::PurgeInflight
            | C::Fatal
            | C::NotEnoughReplicasAfterAppend
            | C::NetworkException
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(is_retriable_code(RDKafkaErrorCode::NotEnoughReplicas));
        assert!(!is_retriable_code(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(!is_retriable_code(
            RDKafkaErrorCode::TopicAuthorizationFailed
        ));
        assert!(is_possibly_persisted_code(
            RDKafkaErrorCode::MessageTimedOut
        ));
        assert!(!is_possibly_persisted_code(
            RDKafkaErrorCode::MessageSizeTooLarge
        ));
        assert!(!is_possibly_persisted_code(
            RDKafkaErrorCode::NotEnoughReplicas
        ));
    }
}
