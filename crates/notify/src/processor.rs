//! [`NotifyProcessor`]: the consumer's batch handler whose effect is a confirmed notification.
//! The consumer commits a record's offset only after `process_batch` returned it as done, i.e.
//! after the broker confirmed its notification; a crash before that redelivers the record and
//! republishes with the same message id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use orderstream_consumer::{BatchProcessor, ProcessError, Record};
use orderstream_orders::classify_decode_error;
use orderstream_schema::OrderCodec;

use crate::{Notification, NotifyError, NotifyOn, Sink};

/// What a [`NotifyProcessor`] saw in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorCounts {
    /// Records whose notification the broker confirmed.
    pub notified: u64,
    /// Records of a kind not selected (e.g. `PAID` with [`NotifyOn::Created`]): done, no message.
    pub not_selected: u64,
    /// Records whose notification failed (retried or dead-lettered by the consumer).
    pub failed: u64,
}

/// Decodes a partition's batch, turns the selected events into notifications and publishes
/// them through the sink in one pipelined round.
#[derive(Debug)]
pub struct NotifyProcessor<S> {
    codec: OrderCodec,
    sink: Arc<S>,
    on: NotifyOn,
    unknown_schema_max_attempts: u32,
    notified: AtomicU64,
    not_selected: AtomicU64,
    failed: AtomicU64,
}

impl<S: Sink> NotifyProcessor<S> {
    /// A processor decoding with `codec` and notifying through `sink`.
    pub fn new(codec: OrderCodec, sink: Arc<S>, on: NotifyOn) -> Self {
        NotifyProcessor {
            codec,
            sink,
            on,
            unknown_schema_max_attempts: 5,
            notified: AtomicU64::new(0),
            not_selected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Counts of this process.
    pub fn counts(&self) -> ProcessorCounts {
        ProcessorCounts {
            notified: self.notified.load(Ordering::Relaxed),
            not_selected: self.not_selected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// How the consumer treats a notification failure: an unroutable message is dead-lettered in
/// Kafka with its reason (retrying cannot route it); everything else is retried.
pub fn classify(error: &NotifyError) -> ProcessError {
    match error {
        NotifyError::Unroutable { .. } => {
            ProcessError::permanent("notification_unroutable", error.to_string())
        }
        NotifyError::Nacked { .. } => ProcessError::Transient {
            class: "notification_nacked",
            message: error.to_string(),
            schema_id: None,
        },
        _ => ProcessError::Transient {
            class: "notification_unavailable",
            message: error.to_string(),
            schema_id: None,
        },
    }
}

impl<S: Sink> BatchProcessor for NotifyProcessor<S> {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        let mut results: Vec<Result<(), ProcessError>> = vec![Ok(()); records.len()];
        let mut notes = Vec::with_capacity(records.len());
        let mut of_record = Vec::with_capacity(records.len());
        for (i, rec) in records.iter().enumerate() {
            let Some(bytes) = rec.payload() else {
                results[i] = Err(ProcessError::permanent("empty", "null value"));
                continue;
            };
            match self.codec.decode(bytes).await {
                Ok(d) if self.on.selects(d.event.event_type) => {
                    notes.push(Notification::of(&d.event, rec.header("traceparent")));
                    of_record.push(i);
                }
                Ok(_) => {
                    self.not_selected.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    results[i] = Err(classify_decode_error(
                        &e,
                        rec.attempt(),
                        self.unknown_schema_max_attempts,
                    ));
                }
            }
        }
        if notes.is_empty() {
            return results;
        }
        let published = self.sink.publish(&notes).await;
        if published.len() != notes.len() {
            // A sink breaking its contract must not let records count as notified.
            self.failed.fetch_add(notes.len() as u64, Ordering::Relaxed);
            for i in of_record {
                results[i] = Err(ProcessError::transient(format!(
                    "{} sink returned {} results for {} notifications",
                    self.sink.name(),
                    published.len(),
                    notes.len()
                )));
            }
            return results;
        }
        for (i, outcome) in of_record.into_iter().zip(published) {
            match outcome {
                Ok(()) => {
                    self.notified.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    results[i] = Err(classify(&e));
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unroutable_is_dead_lettered_and_the_rest_retried() {
        let unroutable = NotifyError::Unroutable {
            sink: "rabbitmq",
            endpoint: "amqp://h/%2f".to_owned(),
            event_id: "e".to_owned(),
            route: "exchange x, routing key order.created".to_owned(),
            reply: "312 NO_ROUTE".to_owned(),
        };
        let p = classify(&unroutable);
        assert_eq!(p.class(), "notification_unroutable");
        assert!(matches!(p, ProcessError::Permanent { .. }));
        assert!(p.message().contains("order.created"));
        let nacked = NotifyError::Nacked {
            sink: "rabbitmq",
            endpoint: "amqp://h/%2f".to_owned(),
            event_id: "e".to_owned(),
        };
        assert!(matches!(
            classify(&nacked),
            ProcessError::Transient {
                class: "notification_nacked",
                ..
            }
        ));
        let down = NotifyError::Unavailable {
            sink: "nats",
            endpoint: "nats://h".to_owned(),
            event_id: "e".to_owned(),
            reason: "timed out".to_owned(),
        };
        assert!(matches!(
            classify(&down),
            ProcessError::Transient {
                class: "notification_unavailable",
                ..
            }
        ));
    }
}
