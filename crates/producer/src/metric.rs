//! Metric names (the `metrics` crate), all labelled `topic`, with their HELP text and unit in
//! [`describe`].

use metrics::Unit;

/// Counter: records handed to librdkafka.
pub const SENT: &str = "orderstream_producer_sent_total";
/// Counter: records the brokers acknowledged.
pub const ACKED: &str = "orderstream_producer_acked_total";
/// Counter: records that failed (label `retriable` = `true` | `false`).
pub const FAILED: &str = "orderstream_producer_failed_total";
/// Counter: records whose outcome is unknown (timed out in flight): possibly persisted.
pub const POSSIBLY_PERSISTED: &str = "orderstream_producer_possibly_persisted_total";
/// Counter: records never handed to a broker (refused locally, or shutting down).
pub const NOT_SENT: &str = "orderstream_producer_not_sent_total";
/// Counter: producer handles rebuilt after a librdkafka fatal error.
pub const REBUILDS: &str = "orderstream_producer_rebuilds_total";
/// Histogram: seconds from send to acknowledgement.
pub const ACK_LATENCY: &str = "orderstream_producer_ack_latency_seconds";
/// Gauge: records sent and not yet acknowledged or failed.
pub const IN_FLIGHT: &str = "orderstream_producer_in_flight_records";

/// Every metric above.
pub const NAMES: &[&str] = &[
    SENT,
    ACKED,
    FAILED,
    POSSIBLY_PERSISTED,
    NOT_SENT,
    REBUILDS,
    ACK_LATENCY,
    IN_FLIGHT,
];

/// Registers HELP text and units with the installed recorder (call after installing it, e.g.
/// the Prometheus exporter).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SENT, Unit::Count, "Records handed to librdkafka.");
    describe_counter!(ACKED, Unit::Count, "Records the brokers acknowledged.");
    describe_counter!(FAILED, Unit::Count, "Records that failed, by retriable.");
    describe_counter!(
        POSSIBLY_PERSISTED,
        Unit::Count,
        "Records whose outcome is unknown (timed out in flight)."
    );
    describe_counter!(NOT_SENT, Unit::Count, "Records never handed to a broker.");
    describe_counter!(
        REBUILDS,
        Unit::Count,
        "Producer handles rebuilt after a fatal error."
    );
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "Time from send to acknowledgement."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Records sent and not yet acknowledged or failed."
    );
}
