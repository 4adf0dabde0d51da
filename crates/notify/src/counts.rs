//! What a sink did, as counters of this process (also exported as `metrics` counters).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counter names (the `metrics` crate); label `sink` = `rabbitmq` | `nats`.
pub mod metric {
    /// Counter: notifications handed to the broker (each attempt, so a republish counts again).
    pub const PUBLISHED: &str = "orderstream_notify_published_total";
    /// Counter: notifications the broker confirmed (RabbitMQ ack, JetStream publish ack).
    pub const CONFIRMED: &str = "orderstream_notify_confirmed_total";
    /// Counter: notifications JetStream recognised as duplicates of a stored message id.
    pub const DUPLICATES: &str = "orderstream_notify_broker_duplicates_total";
    /// Counter: notifications returned unroutable (`basic.return`).
    pub const RETURNED: &str = "orderstream_notify_returned_total";
    /// Counter: notifications refused (`basic.nack`).
    pub const NACKED: &str = "orderstream_notify_nacked_total";
    /// Counter: connections re-established after a failure.
    pub const RECONNECTS: &str = "orderstream_notify_reconnects_total";

    /// Every metric above.
    pub const NAMES: &[&str] = &[
        PUBLISHED, CONFIRMED, DUPLICATES, RETURNED, NACKED, RECONNECTS,
    ];

    /// Registers HELP text with the installed recorder (call after installing it).
    pub fn describe() {
        use metrics::{Unit, describe_counter};
        describe_counter!(
            PUBLISHED,
            Unit::Count,
            "Notifications handed to the broker (each attempt)."
        );
        describe_counter!(
            CONFIRMED,
            Unit::Count,
            "Notifications the broker confirmed."
        );
        describe_counter!(
            DUPLICATES,
            Unit::Count,
            "Notifications JetStream recognised as duplicates."
        );
        describe_counter!(RETURNED, Unit::Count, "Notifications returned unroutable.");
        describe_counter!(NACKED, Unit::Count, "Notifications the broker refused.");
        describe_counter!(
            RECONNECTS,
            Unit::Count,
            "Connections re-established after a failure."
        );
    }
}

/// A snapshot of what a sink counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyCounts {
    /// Publish attempts.
    pub published: u64,
    /// Confirmed by the broker.
    pub confirmed: u64,
    /// Confirmed as a duplicate of an already stored message id (JetStream only).
    pub broker_duplicates: u64,
    /// Returned unroutable.
    pub returned: u64,
    /// Refused by the broker.
    pub nacked: u64,
    /// Reconnections after a failure.
    pub reconnects: u64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    sink: &'static str,
    published: AtomicU64,
    confirmed: AtomicU64,
    broker_duplicates: AtomicU64,
    returned: AtomicU64,
    nacked: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn new(sink: &'static str) -> Self {
        Counters {
            sink,
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            broker_duplicates: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    fn add(&self, counter: &AtomicU64, name: &'static str, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(name, "sink" => self.sink).increment(n);
        }
    }

    pub(crate) fn published(&self, n: u64) {
        self.add(&self.published, metric::PUBLISHED, n);
    }
    pub(crate) fn confirmed(&self, n: u64) {
        self.add(&self.confirmed, metric::CONFIRMED, n);
    }
    pub(crate) fn broker_duplicate(&self) {
        self.add(&self.broker_duplicates, metric::DUPLICATES, 1);
    }
    pub(crate) fn returned(&self) {
        self.add(&self.returned, metric::RETURNED, 1);
    }
    pub(crate) fn nacked(&self) {
        self.add(&self.nacked, metric::NACKED, 1);
    }
    pub(crate) fn reconnected(&self) {
        self.add(&self.reconnects, metric::RECONNECTS, 1);
    }

    pub(crate) fn snapshot(&self) -> NotifyCounts {
        NotifyCounts {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            broker_duplicates: self.broker_duplicates.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}
