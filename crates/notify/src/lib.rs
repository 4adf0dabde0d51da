//! Notifications of processed order events to the brokers people run beside Kafka: RabbitMQ and
//! NATS JetStream.
//!
//! * [`Notification`]: the small, versioned JSON body (order id, event id, state, amount,
//!   occurred-at, W3C trace context); the event id is the message id receivers deduplicate by.
//! * [`RabbitSink`]: one long-lived connection and confirm-mode channel, persistent messages
//!   into a durable quorum queue bound to a topic exchange, `mandatory` publishing with an
//!   alternate exchange for unroutable messages and a dead-letter exchange for rejected ones;
//!   topology declared as code ([`RabbitConfig::declare`]).
//! * [`NatsSink`]: a JetStream stream with a duplicate window; `Nats-Msg-Id` = event id; the
//!   publish acknowledgement is awaited.
//! * [`NotifyProcessor`]: the consumer's [`BatchProcessor`](orderstream_consumer::BatchProcessor):
//!   a partition's batch is published in one pipelined round and each record is done only when
//!   its message is confirmed, so the Kafka offset is never committed ahead of the broker.
//!
//! Delivery is at least once end to end: a crash between confirm and offset commit republishes
//! with the same message id (JetStream drops it within its window; RabbitMQ receivers compare
//! `message_id`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod counts;
mod error;
mod nats;
mod notification;
mod processor;
mod rabbit;
mod retry;

use std::future::Future;

pub use counts::{NotifyCounts, metric};
pub use error::{NotifyError, endpoint};
pub use nats::{NatsConfig, NatsSink};
pub use notification::{BODY_VERSION, Notification, NotifyOn};
pub use processor::{NotifyProcessor, ProcessorCounts, classify};
pub use rabbit::{RabbitConfig, RabbitSink};

/// A broker notifications are published to.
pub trait Sink: Send + Sync + 'static {
    /// `rabbitmq` or `nats`: the `sink` label of the metrics.
    fn name(&self) -> &'static str;

    /// What this sink did so far.
    fn counts(&self) -> NotifyCounts;

    /// Publishes `notes` and waits for the broker to confirm them, reconnecting and
    /// republishing (same message ids) until the sink's publish timeout. One result per
    /// notification, in order: `Ok` only when confirmed.
    fn publish(
        &self,
        notes: &[Notification],
    ) -> impl Future<Output = Vec<Result<(), NotifyError>>> + Send;
}

/// Every result of a publish round, an unsettled one (which a sink should never leave) counted
/// as not confirmed rather than as done.
fn settled(
    results: Vec<Option<Result<(), NotifyError>>>,
    sink: &'static str,
    endpoint: &str,
    notes: &[Notification],
) -> Vec<Result<(), NotifyError>> {
    results
        .into_iter()
        .zip(notes)
        .map(|(r, n)| {
            r.unwrap_or_else(|| {
                Err(NotifyError::Unavailable {
                    sink,
                    endpoint: endpoint.to_owned(),
                    event_id: n.event_id.clone(),
                    reason: "no outcome recorded".to_owned(),
                })
            })
        })
        .collect()
}
