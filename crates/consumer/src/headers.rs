//! Header names written by the consumer (values are ASCII decimal / UTF-8 text).

/// Prefix of every dead-letter header.
pub const DLQ_PREFIX: &str = "orderstream.dlq.";
/// Prefix of every retry-topic header.
pub const RETRY_PREFIX: &str = "orderstream.retry.";

/// Dead letter: source topic.
pub const DLQ_SOURCE_TOPIC: &str = "orderstream.dlq.source.topic";
/// Dead letter: source partition.
pub const DLQ_SOURCE_PARTITION: &str = "orderstream.dlq.source.partition";
/// Dead letter: source offset.
pub const DLQ_SOURCE_OFFSET: &str = "orderstream.dlq.source.offset";
/// Dead letter: source record timestamp (ms since epoch; empty if none).
pub const DLQ_SOURCE_TIMESTAMP: &str = "orderstream.dlq.source.timestamp";
/// Dead letter: error class.
pub const DLQ_ERROR_CLASS: &str = "orderstream.dlq.error.class";
/// Dead letter: error message.
pub const DLQ_ERROR_MESSAGE: &str = "orderstream.dlq.error.message";
/// Dead letter: total processing attempts.
pub const DLQ_ATTEMPTS: &str = "orderstream.dlq.attempts";
/// Dead letter: schema id (only when known).
pub const DLQ_SCHEMA_ID: &str = "orderstream.dlq.schema_id";
/// Dead letter: consumer group that gave up.
pub const DLQ_GROUP: &str = "orderstream.dlq.group";

/// Retry: processing attempts made so far.
pub const RETRY_ATTEMPTS: &str = "orderstream.retry.attempts";
/// Retry: how many times the record was parked because of its own failure.
pub const RETRY_ROUND: &str = "orderstream.retry.round";
/// Retry: do not process before this time (ms since epoch).
pub const RETRY_NOT_BEFORE: &str = "orderstream.retry.not_before";
/// Retry: original source topic.
pub const RETRY_SOURCE_TOPIC: &str = "orderstream.retry.source.topic";
/// Retry: original source partition.
pub const RETRY_SOURCE_PARTITION: &str = "orderstream.retry.source.partition";
/// Retry: original source offset.
pub const RETRY_SOURCE_OFFSET: &str = "orderstream.retry.source.offset";
/// Retry: original source timestamp.
pub const RETRY_SOURCE_TIMESTAMP: &str = "orderstream.retry.source.timestamp";
/// Retry: park id (per member, grows with source order; kept across re-parks) for the per-key
/// order rule.
pub const RETRY_PARK_ID: &str = "orderstream.retry.park_id";
/// Retry: last error class.
pub const RETRY_ERROR_CLASS: &str = "orderstream.retry.error.class";
/// Retry: last error message.
pub const RETRY_ERROR_MESSAGE: &str = "orderstream.retry.error.message";
/// Retry: `1` when the record was parked only to keep per-key order behind a parked predecessor.
pub const RETRY_FOLLOWER: &str = "orderstream.retry.follower";
/// Retry: consumer group that parked the record. Groups share the retry topic; the members of
/// other groups pass over the record (their own copy of the source record was handled by them).
pub const RETRY_GROUP: &str = "orderstream.retry.group";

/// Parses an ASCII decimal header value.
pub fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}
