//! Metric names (the `metrics` crate; export them with any recorder, e.g. Prometheus).
//! Labels: `topic`, `partition` unless stated.

/// Counter: records processed successfully.
pub const PROCESSED: &str = "orderstream_consumer_processed_total";
/// Counter: in-place retries (label `topic`).
pub const RETRIES: &str = "orderstream_consumer_retries_total";
/// Counter: records parked in the retry topic (label `reason` = `failure` | `follow`).
pub const PARKED: &str = "orderstream_consumer_parked_total";
/// Counter: records sent to the dead-letter topic (label `class`).
pub const DEAD_LETTERS: &str = "orderstream_consumer_dead_letters_total";
/// Counter: commits issued (label `mode` = `async` | `sync`).
pub const COMMITS: &str = "orderstream_consumer_commits_total";
/// Counter: failed commits.
pub const COMMIT_FAILURES: &str = "orderstream_consumer_commit_failures_total";
/// Histogram: commit latency in seconds (label `mode`).
pub const COMMIT_LATENCY: &str = "orderstream_consumer_commit_latency_seconds";
/// Counter: rebalance events (label `kind` = `assign` | `revoke` | `lost`).
pub const REBALANCES: &str = "orderstream_consumer_rebalances_total";
/// Gauge: lag in offsets (from librdkafka statistics).
pub const LAG_OFFSETS: &str = "orderstream_consumer_lag_offsets";
/// Gauge: lag in seconds (now minus the timestamp of the record being processed).
pub const LAG_SECONDS: &str = "orderstream_consumer_lag_seconds";
/// Gauge: in-flight records per partition.
pub const IN_FLIGHT: &str = "orderstream_consumer_in_flight";
/// Histogram: handler latency in seconds (label `topic`).
pub const HANDLER_LATENCY: &str = "orderstream_consumer_handler_seconds";
/// Counter: duplicate events skipped by a [`crate::Dedup`] user (label `processor`).
pub const DUPLICATES: &str = "orderstream_consumer_duplicates_skipped_total";
/// Counter: partition pauses for backpressure.
pub const PAUSES: &str = "orderstream_consumer_pauses_total";
/// Counter: the retry/dead-letter producer was rebuilt after a librdkafka fatal error (label
/// `topic`: the retry or dead-letter topic whose send hit it).
pub const PRODUCER_REBUILDS: &str = "orderstream_consumer_producer_rebuilds_total";
