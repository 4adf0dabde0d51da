//! Metric names (the `metrics` crate; export them with any recorder, e.g. Prometheus), with
//! their HELP text and unit in [`describe`]. Labels: `topic`, `partition` unless stated.
//! Per-partition gauges are set to 0 when the partition is revoked.

use metrics::Unit;

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
/// Counter: failed commits (refused, or not held by the coordinator when read back).
pub const COMMIT_FAILURES: &str = "orderstream_consumer_commit_failures_total";
/// Histogram: synchronous commit duration in seconds (label `mode`).
pub const COMMIT_LATENCY: &str = "orderstream_consumer_commit_duration_seconds";
/// Counter: rebalance events (label `kind` = `assign` | `revoke` | `lost`).
pub const REBALANCES: &str = "orderstream_consumer_rebalances_total";
/// Gauge: lag in records (from librdkafka statistics).
pub const LAG_OFFSETS: &str = "orderstream_consumer_lag_records";
/// Gauge: lag in seconds (now minus the timestamp of the record being processed).
pub const LAG_SECONDS: &str = "orderstream_consumer_lag_seconds";
/// Gauge: records handed to the partition's owner and not finished.
pub const IN_FLIGHT: &str = "orderstream_consumer_in_flight_records";
/// Histogram: handler duration in seconds (label `topic`).
pub const HANDLER_LATENCY: &str = "orderstream_consumer_handler_duration_seconds";
/// Counter: duplicate events skipped by a [`crate::Dedup`] user (label `processor`).
pub const DUPLICATES: &str = "orderstream_consumer_duplicates_skipped_total";
/// Counter: partition pauses for backpressure.
pub const PAUSES: &str = "orderstream_consumer_pauses_total";
/// Counter: the retry/dead-letter (or replay) producer was rebuilt after a librdkafka fatal
/// error (label `topic`: the topic whose send hit it).
pub const PRODUCER_REBUILDS: &str = "orderstream_consumer_producer_rebuilds_total";

/// Every metric above.
pub const NAMES: &[&str] = &[
    PROCESSED,
    RETRIES,
    PARKED,
    DEAD_LETTERS,
    COMMITS,
    COMMIT_FAILURES,
    COMMIT_LATENCY,
    REBALANCES,
    LAG_OFFSETS,
    LAG_SECONDS,
    IN_FLIGHT,
    HANDLER_LATENCY,
    DUPLICATES,
    PAUSES,
    PRODUCER_REBUILDS,
];

/// Registers HELP text and units with the installed recorder (call after installing it, e.g.
/// the Prometheus exporter).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PROCESSED, Unit::Count, "Records processed successfully.");
    describe_counter!(
        RETRIES,
        Unit::Count,
        "In-place retries of transient failures."
    );
    describe_counter!(
        PARKED,
        Unit::Count,
        "Records parked in the retry topic, by reason."
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Records sent to the dead-letter topic, by error class."
    );
    describe_counter!(COMMITS, Unit::Count, "Offset commits issued, by mode.");
    describe_counter!(
        COMMIT_FAILURES,
        Unit::Count,
        "Offset commits refused or not held by the coordinator."
    );
    describe_histogram!(
        COMMIT_LATENCY,
        Unit::Seconds,
        "Duration of synchronous offset commits."
    );
    describe_counter!(REBALANCES, Unit::Count, "Rebalance events, by kind.");
    describe_gauge!(
        LAG_OFFSETS,
        Unit::Count,
        "Records between the partition's end and the consumer position."
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the record being processed."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Records handed to the partition's owner and not finished."
    );
    describe_histogram!(HANDLER_LATENCY, Unit::Seconds, "Duration of handler calls.");
    describe_counter!(DUPLICATES, Unit::Count, "Duplicate events skipped.");
    describe_counter!(PAUSES, Unit::Count, "Partition pauses for backpressure.");
    describe_counter!(
        PRODUCER_REBUILDS,
        Unit::Count,
        "Retry/dead-letter producer rebuilds after a fatal error."
    );
}
