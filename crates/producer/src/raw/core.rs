//! The state every clone of a producer shares: the live handle (rebuilt after a fatal error),
//! hand-over to librdkafka with backpressure, and the classification of delivery reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::completion::{Report, Slot};
use crate::config::ProducerConfig;
use crate::error::{ProducerError, is_possibly_persisted_code, is_retriable_code};

use super::handle::{Client, Handle};
use super::pending::{Pending, Sent, Waiting, lossy_key};
use super::trace::{TRACEPARENT_LEN, produce_span, traceparent};
use super::{DeliveryOutcome, ProducerTopic};
use crate::generations::{Generations, Replaced};

pub(super) struct Metrics {
    pub(super) sent: Counter,
    pub(super) acked: Counter,
    pub(super) failed_retriable: Counter,
    pub(super) failed_permanent: Counter,
    pub(super) possibly_persisted: Counter,
    pub(super) not_sent: Counter,
    pub(super) rebuilds: Counter,
    pub(super) ack_latency: Histogram,
    pub(super) in_flight: Gauge,
}

impl Metrics {
    pub(super) fn new(topic: &str) -> Self {
        let t = topic.to_owned();
        Self {
            sent: metrics::counter!(crate::metric::SENT, "topic" => t.clone()),
            acked: metrics::counter!(crate::metric::ACKED, "topic" => t.clone()),
            failed_retriable: metrics::counter!(crate::metric::FAILED, "topic" => t.clone(), "retriable" => "true"),
            failed_permanent: metrics::counter!(crate::metric::FAILED, "topic" => t.clone(), "retriable" => "false"),
            possibly_persisted: metrics::counter!(crate::metric::POSSIBLY_PERSISTED, "topic" => t.clone()),
            not_sent: metrics::counter!(crate::metric::NOT_SENT, "topic" => t.clone()),
            rebuilds: metrics::counter!(crate::metric::REBUILDS, "topic" => t.clone()),
            ack_latency: metrics::histogram!(crate::metric::ACK_LATENCY, "topic" => t.clone()),
            in_flight: metrics::gauge!(crate::metric::IN_FLIGHT, "topic" => t),
        }
    }
}

pub(crate) struct Core {
    pub(super) topic: ProducerTopic,
    pub(super) config: ProducerConfig,
    pub(super) handles: Generations<Client>,
    pub(super) in_flight: AtomicUsize,
    pub(super) closed: AtomicBool,
    pub(super) trace_salt: u128,
    pub(super) metrics: Metrics,
    pub(super) fatal_notify: Arc<tokio::sync::Notify>,
}

impl Drop for Core {
    fn drop(&mut self) {
        // Lets the fatal-error watcher task see the producer is gone and exit.
        self.fatal_notify.notify_one();
    }
}

impl Core {
    /// The live handle, replaced first if it went fatal.
    pub(super) fn current(self: &Arc<Self>) -> Arc<Handle> {
        let handle = self.handles.current();
        if handle.is_fatal() {
            self.rebuild(&handle);
            return self.handles.current();
        }
        handle
    }

    /// Replaces `handle` (if it is still current) with a fresh one.
    pub(super) fn rebuild(&self, handle: &Handle) {
        let generation = handle.number();
        match self.handles.replace(generation) {
            Ok(Replaced::Now) => {
                self.metrics.rebuilds.increment(1);
                let reason = handle.fatal_error();
                tracing::warn!(topic = %self.topic.name, generation = generation + 1, ?reason, "producer handle rebuilt after fatal error");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(topic = %self.topic.name, error = %e, "cannot rebuild producer handle; will retry on next send");
            }
        }
    }

    pub(super) fn classify(
        &self,
        handle: &Handle,
        report: Option<&Report>,
        started: Instant,
        key: Option<&[u8]>,
    ) -> DeliveryOutcome {
        let topic = &self.topic.name;
        match report {
            Some(&Report::Delivered {
                partition,
                offset,
                at,
            }) => {
                let latency = at.saturating_duration_since(started);
                self.metrics.acked.increment(1);
                self.metrics.ack_latency.record(latency.as_secs_f64());
                DeliveryOutcome::Delivered {
                    partition,
                    offset,
                    latency,
                }
            }
            Some(Report::Failed { error, at }) => {
                let latency = at.saturating_duration_since(started);
                let error = KafkaError::clone(error);
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                // rd_kafka_fatal_error() is set before the failed delivery reports are queued,
                // so it is checked here even if the error event has not been polled yet.
                let fatal = handle.fatal_error();
                if fatal.is_some() || handle.is_fatal() || code == RDKafkaErrorCode::Fatal {
                    handle.state.fatal.store(true, Ordering::SeqCst);
                    let (fatal_code, reason) = fatal.unwrap_or((code, error.to_string()));
                    // Replace the handle now (once per generation): this also purges what the
                    // poisoned handle still holds, so its other sends resolve promptly.
                    self.rebuild(handle);
                    self.metrics.possibly_persisted.increment(1);
                    return DeliveryOutcome::PossiblyPersisted {
                        error: ProducerError::Fatal {
                            topic: topic.clone(),
                            key: lossy_key(key),
                            code: fatal_code,
                            reason,
                        },
                        latency,
                    };
                }
                let err = ProducerError::Delivery {
                    topic: topic.clone(),
                    key: lossy_key(key),
                    code,
                    source: error,
                };
                if is_possibly_persisted_code(code) {
                    self.metrics.possibly_persisted.increment(1);
                    DeliveryOutcome::PossiblyPersisted {
                        error: err,
                        latency,
                    }
                } else {
                    let retriable = is_retriable_code(code);
                    self.failed(retriable);
                    DeliveryOutcome::Failed {
                        error: err,
                        retriable,
                    }
                }
            }
            None => {
                let latency = started.elapsed();
                self.metrics.possibly_persisted.increment(1);
                DeliveryOutcome::PossiblyPersisted {
                    error: ProducerError::Fatal {
                        topic: topic.clone(),
                        key: lossy_key(key),
                        code: RDKafkaErrorCode::BrokerDestroy,
                        reason: "producer handle dropped before the delivery report".to_owned(),
                    },
                    latency,
                }
            }
        }
    }

    pub(super) fn track_in_flight(&self, n: usize) {
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        // increment/decrement, not set: sets from two threads can land out of order and leave
        // the gauge stale when the producer goes idle
        self.metrics.in_flight.increment(n as f64);
    }

    pub(super) fn untrack_in_flight(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        self.metrics.in_flight.decrement(n as f64);
    }

    /// [`Core::hand_over`] for a record awaited on its own.
    pub(super) async fn enqueue(
        self: &Arc<Self>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
        slot: Box<Slot>,
    ) -> Pending {
        let position = slot.position();
        let handle = self.current();
        match self
            .hand_over(key, payload, headers, schema_id, slot, &handle)
            .await
        {
            Ok(sent) => {
                let took = sent.other_handle.as_ref().unwrap_or(&handle);
                took.producer.poll_now();
                Pending::Waiting(Waiting::new(self, sent, handle, position, key))
            }
            Err(outcome) => Pending::Done(outcome),
        }
    }

    pub(super) fn failed(&self, retriable: bool) {
        if retriable {
            self.metrics.failed_retriable.increment(1);
        } else {
            self.metrics.failed_permanent.increment(1);
        }
    }

    /// Hands one record to librdkafka, waiting while its queue is full (backpressure); the
    /// outcome when it never got there. `slot` travels with the record as librdkafka's delivery
    /// opaque; dropping it on any path that does not hand the record over completes it.
    ///
    /// `handle` is the one the caller last used (a batch keeps it from record to record: taking
    /// the live one from [`Generations`] per record is a lock and two reference counts that the
    /// sending threads share); a fatal or replaced one is swapped for the live one here.
    pub(super) async fn hand_over(
        self: &Arc<Self>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
        slot: Box<Slot>,
        handle: &Arc<Handle>,
    ) -> Result<Sent, DeliveryOutcome> {
        let topic = &self.topic.name;
        if self.closed.load(Ordering::SeqCst) {
            self.metrics.not_sent.increment(1);
            return Err(DeliveryOutcome::NotSent {
                error: ProducerError::ShuttingDown {
                    topic: topic.clone(),
                },
                retriable: false,
            });
        }
        let span = produce_span(topic, key, schema_id);
        let mut record: BaseRecord<'_, [u8], [u8], Box<Slot>> =
            BaseRecord::with_opaque_to(topic, slot).payload(payload);
        if let Some(owned) = record_headers(headers, || traceparent(self.trace_salt, &span)) {
            record = record.headers(owned);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        let started = Instant::now();
        match self.send_waiting(record, handle).await {
            Ok(other) => {
                self.metrics.sent.increment(1);
                Ok(Sent {
                    other_handle: other,
                    started,
                    span,
                })
            }
            Err(e) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                let retriable = is_retriable_code(code);
                span.in_scope(|| tracing::debug!(error = %e, "enqueue refused"));
                self.failed(retriable);
                Err(DeliveryOutcome::Failed {
                    error: ProducerError::Delivery {
                        topic: topic.clone(),
                        key: lossy_key(key),
                        code,
                        source: e,
                    },
                    retriable,
                })
            }
        }
    }

    /// Gives `record` to `given` (the live handle, unless it went fatal or was replaced): waits
    /// while librdkafka's queue is full, and hands it to a fresh handle when the live one went
    /// fatal before taking it. `None` when `given` took it, else the handle that did; or the
    /// error that refused it.
    async fn send_waiting<'a>(
        self: &Arc<Self>,
        mut record: BaseRecord<'a, [u8], [u8], Box<Slot>>,
        given: &Arc<Handle>,
    ) -> Result<Option<Arc<Handle>>, KafkaError> {
        let mut other = given.is_fatal().then(|| self.current());
        let mut pauses = None;
        let mut fatal_attempts = 0;
        loop {
            let handle = other.as_ref().unwrap_or(given);
            match handle.producer.send(record) {
                Ok(()) => return Ok(other),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Backpressure: wait for librdkafka to drain, never surface QueueFull.
                    handle.producer.poll_now();
                    let step = pauses.get_or_insert_with(queue_full_backoff).next();
                    tokio::time::sleep(step.unwrap_or(QUEUE_FULL_MAX_PAUSE)).await;
                    let live = self.current();
                    other = (!Arc::ptr_eq(&live, given)).then_some(live);
                }
                Err((e, back))
                    if fatal_attempts < 3
                        && (e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
                            || handle.fatal_error().is_some()) =>
                {
                    // The handle went fatal before librdkafka took the record: nothing was
                    // sent, so rebuild and hand it to the fresh handle.
                    record = back;
                    fatal_attempts += 1;
                    handle.state.fatal.store(true, Ordering::SeqCst);
                    self.rebuild(handle);
                    other = Some(self.current());
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// librdkafka takes ownership of a record's headers, so they are built per record: `headers` and
/// a `traceparent` from `traceparent()` unless the caller gave one; `None` (no allocation) when
/// there is nothing to send.
fn record_headers(
    headers: &[(&str, &[u8])],
    traceparent: impl FnOnce() -> Option<[u8; TRACEPARENT_LEN]>,
) -> Option<OwnedHeaders> {
    let given = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"));
    let traceparent = if given { None } else { traceparent() };
    if headers.is_empty() && traceparent.is_none() {
        return None;
    }
    let mut owned =
        OwnedHeaders::new_with_capacity(headers.len() + usize::from(traceparent.is_some()));
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    if let Some(tp) = &traceparent {
        owned = owned.insert(Header {
            key: "traceparent",
            value: Some(&tp[..]),
        });
    }
    Some(owned)
}

/// Longest wait between two attempts to enqueue into librdkafka's full queue.
pub(super) const QUEUE_FULL_MAX_PAUSE: Duration = Duration::from_millis(20);

/// Waits while librdkafka's queue is full: 0.5 ms doubling to 20 ms, short enough that the
/// queue never runs dry while we sleep (at ~500k msgs/s, 20 ms is a tenth of the queue).
pub(super) fn queue_full_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_micros(500))
        .with_max_delay(QUEUE_FULL_MAX_PAUSE)
        .without_max_times()
        .build()
}
