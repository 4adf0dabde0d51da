//! Metric names (the `metrics` crate; export them with any recorder, e.g. Prometheus), with
//! their HELP text and unit in [`describe`]. Labels: `topic`, `partition` unless stated.
//!
//! Per-partition gauges ([`LAG_OFFSETS`], [`LAG_SECONDS`], [`IN_FLIGHT`]) describe a partition
//! the member owns. Each owner sets all three every [`GAUGE_TICK`], whether or not anything
//! changed; once the partition is revoked or lost nothing sets them any more. The `metrics`
//! crate cannot remove a series, so a recorder should drop gauges left unset for
//! [`GAUGE_IDLE_TIMEOUT`] (the Prometheus exporter of the CLI does): a revoked partition's
//! gauges then leave the scrape within that time instead of staying behind with a stale value
//! next to those of the partition's new owner.
//!
//! [`COMMITS`] counts each commit once, when its outcome is known (label `result`): a
//! synchronous commit when the brokers answer it; an asynchronous one when it could not be
//! issued (`failed`), or when the coordinator is asked for the committed offsets (see
//! `commit_interval`): `ok` when it holds the commit's offsets (or later ones), `failed` when a
//! commit interval without commits has passed and it holds less (refused, lost or overtaken by
//! an older commit; the offsets are sent again as a new commit). librdkafka reports nothing
//! else about an asynchronous commit to this client. An asynchronous commit whose outcome is
//! still unknown when the member stops (the coordinator could not be asked) is not counted.

use std::time::Duration;

use metrics::Unit;

/// How often a partition's owner sets its gauges.
pub const GAUGE_TICK: Duration = Duration::from_secs(1);
/// How long a gauge left unset stays exported: well above [`GAUGE_TICK`], so a busy owner that
/// runs late never loses its gauges, and short enough that a revoked partition's gauges are gone
/// a few scrapes after the revoke.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counter: records processed successfully.
pub const PROCESSED: &str = "orderstream_consumer_processed_total";
/// Counter: in-place retries (label `topic`).
pub const RETRIES: &str = "orderstream_consumer_retries_total";
/// Counter: records parked in the retry topic (label `reason` = `failure` | `follow`).
pub const PARKED: &str = "orderstream_consumer_parked_total";
/// Counter: retry-topic records another consumer group parked, passed over (label `topic`:
/// the retry topic). Groups share the retry topic; each handles only what it parked.
pub const RETRY_OTHER_GROUP: &str = "orderstream_consumer_retry_other_group_total";
/// Counter: records sent to the dead-letter topic (label `class`).
pub const DEAD_LETTERS: &str = "orderstream_consumer_dead_letters_total";
/// Counter: offset commits by outcome (labels `mode` = `async` | `sync`, `result` = `ok` |
/// `failed`), each counted once when its outcome is known (see the module docs).
pub const COMMITS: &str = "orderstream_consumer_commits_total";
/// Histogram: synchronous commit duration in seconds (label `mode`).
pub const COMMIT_LATENCY: &str = "orderstream_consumer_commit_duration_seconds";
/// Counter: rebalance callbacks that moved partitions of the member (label `kind` = `assign` |
/// `revoke` | `lost`).
pub const REBALANCES: &str = "orderstream_consumer_rebalances_total";
/// Gauge: lag in records: the partition's end minus the committed offset, from the latest
/// librdkafka statistics (`statistics_interval`), set again every [`GAUGE_TICK`].
pub const LAG_OFFSETS: &str = "orderstream_consumer_lag_records";
/// Gauge: lag in seconds: now minus the timestamp of the partition's oldest record the member
/// holds unfinished, computed every [`GAUGE_TICK`] (so it keeps growing while that record is
/// stuck); 0 when the member holds no unfinished record (records not yet fetched are counted
/// by [`LAG_OFFSETS`] only).
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
    RETRY_OTHER_GROUP,
    DEAD_LETTERS,
    COMMITS,
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
    describe_counter!(
        COMMITS,
        Unit::Count,
        "Offset commits by mode and result, counted once when the result is known."
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
        "Records between the partition's end and the committed offset."
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Age of the partition's oldest unfinished record (0 when none)."
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
        RETRY_OTHER_GROUP,
        Unit::Count,
        "Retry-topic records parked by another consumer group, passed over."
    );
    describe_counter!(
        PRODUCER_REBUILDS,
        Unit::Count,
        "Retry/dead-letter producer rebuilds after a fatal error."
    );
}
