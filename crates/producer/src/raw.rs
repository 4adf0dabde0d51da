//! The long-lived librdkafka producer: one handle per process, rebuilt only after a fatal error.
//!
//! [`RawProducer`] sends pre-encoded bytes (a codec, e.g. the Avro order events of the orders
//! crate, layers on top): one at a time, pipelined ([`RawProducer::enqueue`]), or as a batch
//! awaited together ([`RawProducer::batch`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio_util::sync::CancellationToken;
use tracing::{Span, field};

use crate::completion::{Batch, Report, Slot};
use crate::config::ProducerConfig;
use crate::diagnosis::LastBrokerError;
use crate::error::{ProducerError, is_possibly_persisted_code, is_retriable_code};
use crate::partition::partition_for_key;

mod sends;

pub use sends::SendBatch;

/// The topic a producer writes to, and the partition count the layout (topology.toml) expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTopic {
    /// Topic name.
    pub name: String,
    /// Partition count from the layout; the producer refuses to start when the live count differs.
    pub expected_partitions: i32,
}

impl ProducerTopic {
    /// A topic and its expected partition count.
    pub fn new(name: impl Into<String>, expected_partitions: i32) -> Self {
        Self {
            name: name.into(),
            expected_partitions,
        }
    }
}

/// What happened to one record. Exactly one per record sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// Acknowledged by the cluster (acks=all): in the topic at `partition`/`offset`.
    Delivered {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// From enqueue to acknowledgement.
        latency: Duration,
    },
    /// Definitely failed; `retriable` says whether sending it again may succeed.
    Failed {
        /// Why (carries topic and key).
        error: ProducerError,
        /// Whether a retry may succeed.
        retriable: bool,
    },
    /// No ack was seen but the record may be in the topic: delivery timed out (`MsgTimedOut`),
    /// or the producer hit a fatal error while it was in flight. Never report these as lost or
    /// as delivered; downstream dedup by event id settles them.
    PossiblyPersisted {
        /// Why (carries topic and key).
        error: ProducerError,
        /// From enqueue to the report.
        latency: Duration,
    },
    /// Nothing was handed to Kafka (encoding or registry failure, shutting down).
    NotSent {
        /// Why (carries topic and key).
        error: ProducerError,
        /// Whether a retry may succeed (e.g. the registry was unreachable).
        retriable: bool,
    },
}

impl DeliveryOutcome {
    /// `true` for [`DeliveryOutcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, DeliveryOutcome::Delivered { .. })
    }

    /// The error, unless delivered.
    pub fn error(&self) -> Option<&ProducerError> {
        match self {
            DeliveryOutcome::Delivered { .. } => None,
            DeliveryOutcome::Failed { error, .. }
            | DeliveryOutcome::PossiblyPersisted { error, .. }
            | DeliveryOutcome::NotSent { error, .. } => Some(error),
        }
    }

    /// `(partition, offset)` when delivered.
    pub fn position(&self) -> Option<(i32, i64)> {
        match self {
            DeliveryOutcome::Delivered {
                partition, offset, ..
            } => Some((*partition, *offset)),
            _ => None,
        }
    }
}

/// librdkafka's request-level retry counters (summed over brokers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Requests retried (`txretries`).
    pub request_retries: u64,
    /// Requests that timed out client-side (`req_timeouts`).
    pub request_timeouts: u64,
    /// Transmission errors (`txerrs`).
    pub transmit_errors: u64,
    /// Records transmitted to brokers, re-sends included (`txmsgs`): above the acked count
    /// when records were retried.
    pub records_transmitted: u64,
}

/// What a flush left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Everything handed to librdkafka was acknowledged or failed before the deadline.
    pub complete: bool,
    /// Records still in librdkafka's queues (not yet acknowledged) when the flush returned.
    pub unflushed: usize,
    /// Sends still awaiting their delivery report (this process's view).
    pub in_flight: usize,
    /// How long the flush took.
    pub elapsed: Duration,
}

/// Shared state between the librdkafka context callbacks of one handle and the producer.
#[derive(Debug, Default)]
struct HandleState {
    fatal: AtomicBool,
    /// From the last statistics callback (only with `statistics.interval.ms` in `extra`).
    tx_retries: AtomicU64,
    req_timeouts: AtomicU64,
    tx_errors: AtomicU64,
    tx_msgs: AtomicU64,
    /// Why connections failed, for start-up errors that say why.
    last_error: LastBrokerError,
}

/// Client context: records fatal errors (the handle must then be rebuilt) and logs through tracing.
#[derive(Debug, Clone)]
struct Ctx {
    state: Arc<HandleState>,
    client_id: String,
    /// Wakes the producer's fatal-error watcher (shared by every handle of one producer).
    fatal_notify: Arc<tokio::sync::Notify>,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: rdkafka::Statistics) {
        let (retries, timeouts) = stats
            .brokers
            .values()
            .fold((0, 0), |(r, t), b| (r + b.txretries, t + b.req_timeouts));
        let txerrs = stats.brokers.values().map(|b| b.txerrs).sum();
        self.state
            .tx_msgs
            .store(u64::try_from(stats.txmsgs).unwrap_or(0), Ordering::Relaxed);
        self.state.tx_errors.store(txerrs, Ordering::Relaxed);
        self.state.tx_retries.store(retries, Ordering::Relaxed);
        self.state.req_timeouts.store(timeouts, Ordering::Relaxed);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.state.last_error.record_log(fac, log_message);
        rdkafka::client::DefaultClientContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.state
            .last_error
            .record(error.rdkafka_error_code(), reason);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.state.fatal.store(true, Ordering::SeqCst);
            self.fatal_notify.notify_one();
            tracing::error!(client_id = %self.client_id, %reason, "librdkafka fatal error: producer handle will be rebuilt");
        } else if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        ) {
            // Repeated every reconnect attempt; send outcomes report the consequences.
            tracing::debug!(client_id = %self.client_id, error = %error, %reason, "librdkafka connection error");
        } else {
            tracing::warn!(client_id = %self.client_id, error = %error, %reason, "librdkafka error");
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let at = Instant::now();
        slot.set(match result {
            Ok(msg) => Report::Delivered {
                partition: msg.partition(),
                offset: msg.offset(),
                at,
            },
            Err((error, _msg)) => Report::Failed {
                error: Box::new(error.clone()),
                at,
            },
        });
        // dropping the slot completes it (and wakes the batch's waiter if it was the last)
    }
}

/// One librdkafka producer instance and its generation number.
pub(crate) struct Handle {
    producer: ThreadedProducer<Ctx>,
    state: Arc<HandleState>,
    generation: u64,
}

impl Handle {
    fn build(
        client_config: &ClientConfig,
        client_id: &str,
        generation: u64,
        fatal_notify: &Arc<tokio::sync::Notify>,
    ) -> Result<Self, KafkaError> {
        let state = Arc::new(HandleState::default());
        let ctx = Ctx {
            state: Arc::clone(&state),
            client_id: client_id.to_owned(),
            fatal_notify: Arc::clone(fatal_notify),
        };
        let producer = ThreadedProducer::from_config_and_context(client_config, ctx)?;
        Ok(Self {
            producer,
            state,
            generation,
        })
    }

    fn is_fatal(&self) -> bool {
        self.state.fatal.load(Ordering::SeqCst)
    }

    /// `(code, reason)` of the fatal error, if this handle has one.
    fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.producer.client().fatal_error()
    }
}

struct Metrics {
    sent: Counter,
    acked: Counter,
    failed_retriable: Counter,
    failed_permanent: Counter,
    possibly_persisted: Counter,
    not_sent: Counter,
    rebuilds: Counter,
    ack_latency: Histogram,
    in_flight: Gauge,
}

impl Metrics {
    fn new(topic: &str) -> Self {
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
    topic: ProducerTopic,
    config: ProducerConfig,
    client_config: ClientConfig,
    handle: RwLock<Arc<Handle>>,
    in_flight: AtomicUsize,
    rebuilds: AtomicU64,
    closed: AtomicBool,
    trace_salt: u128,
    metrics: Metrics,
    fatal_notify: Arc<tokio::sync::Notify>,
}

impl Drop for Core {
    fn drop(&mut self) {
        // Lets the fatal-error watcher task see the producer is gone and exit.
        self.fatal_notify.notify_one();
    }
}

/// The key of an in-flight record, kept for the error context of its outcome. Keys up to
/// [`INLINE_KEY`] bytes (order ids) are stored inline: no allocation per record.
const INLINE_KEY: usize = 46;

enum KeyCopy {
    None,
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyCopy {
    fn new(key: Option<&[u8]>) -> Self {
        match key {
            None => KeyCopy::None,
            Some(k) if k.len() <= INLINE_KEY => {
                let mut buf = [0u8; INLINE_KEY];
                buf[..k.len()].copy_from_slice(k);
                KeyCopy::Inline {
                    len: u8::try_from(k.len()).unwrap_or(0),
                    buf,
                }
            }
            Some(k) => KeyCopy::Heap(k.into()),
        }
    }

    fn get(&self) -> Option<&[u8]> {
        match self {
            KeyCopy::None => None,
            KeyCopy::Inline { len, buf } => buf.get(..usize::from(*len)),
            KeyCopy::Heap(k) => Some(k),
        }
    }
}

/// A record handed to librdkafka whose delivery report has not been awaited yet. Counts in
/// the in-flight figure until it completes or is dropped.
pub(crate) struct Waiting {
    core: Arc<Core>,
    handle: Arc<Handle>,
    batch: Arc<Batch>,
    index: usize,
    started: Instant,
    key: KeyCopy,
    span: Span,
}

impl Waiting {
    fn new(
        core: &Arc<Core>,
        sent: Sent,
        (batch, index): (Arc<Batch>, usize),
        key: Option<&[u8]>,
    ) -> Self {
        core.track_in_flight(1);
        Self {
            core: Arc::clone(core),
            handle: sent.handle,
            batch,
            index,
            started: sent.started,
            key: KeyCopy::new(key),
            span: sent.span,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.core.untrack_in_flight(1);
    }
}

/// A record librdkafka took: the handle it went out on, when, and its tracing span.
pub(crate) struct Sent {
    handle: Arc<Handle>,
    started: Instant,
    span: Span,
}

/// A record's outcome: known already, or awaiting its delivery report.
pub(crate) enum Pending {
    Done(DeliveryOutcome),
    Waiting(Waiting),
}

impl Pending {
    pub(crate) async fn outcome(self) -> DeliveryOutcome {
        match self {
            Pending::Done(outcome) => outcome,
            Pending::Waiting(w) => {
                w.batch.complete().await;
                let report = w.batch.report(w.index);
                let outcome = w.core.classify(&w.handle, report, w.started, w.key.get());
                trace_outcome(&w.span, &outcome);
                outcome
            }
        }
    }
}

/// A queued send; [`PendingDelivery::outcome`] waits for its delivery report.
pub struct PendingDelivery(Pending);

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingDelivery")
    }
}

impl PendingDelivery {
    /// An outcome known before the record reached librdkafka (e.g. it could not be encoded).
    pub fn done(outcome: DeliveryOutcome) -> Self {
        Self(Pending::Done(outcome))
    }

    /// Waits for the delivery report (acknowledged, failed, or possibly persisted).
    pub async fn outcome(self) -> DeliveryOutcome {
        self.0.outcome().await
    }
}

/// Records a delivered record's position on its span and logs the outcome in it (no-op when
/// the span is disabled, as it is unless a subscriber listens at `debug`).
fn trace_outcome(span: &Span, outcome: &DeliveryOutcome) {
    if span.is_disabled() {
        return;
    }
    if let DeliveryOutcome::Delivered {
        partition, offset, ..
    } = outcome
    {
        span.record("partition", partition);
        span.record("offset", offset);
    }
    span.in_scope(|| match outcome {
        DeliveryOutcome::Delivered { .. } => tracing::trace!("delivered"),
        other => {
            if let Some(e) = other.error() {
                tracing::debug!(error = %e, "not delivered");
            }
        }
    });
}

fn lossy_key(key: Option<&[u8]>) -> Option<String> {
    key.map(|k| String::from_utf8_lossy(k).into_owned())
}

impl Core {
    fn current(self: &Arc<Self>) -> Arc<Handle> {
        let handle = match self.handle.read() {
            Ok(h) => Arc::clone(&h),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        if handle.is_fatal() {
            self.rebuild(handle.generation);
            return match self.handle.read() {
                Ok(h) => Arc::clone(&h),
                Err(poisoned) => Arc::clone(&poisoned.into_inner()),
            };
        }
        handle
    }

    /// Replaces the handle of `generation` (if it is still current) with a fresh one.
    fn rebuild(&self, generation: u64) {
        let mut guard = match self.handle.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.generation != generation {
            return; // someone else already rebuilt it
        }
        match Handle::build(
            &self.client_config,
            &self.config.client_id,
            generation + 1,
            &self.fatal_notify,
        ) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *guard, Arc::new(fresh));
                drop(guard);
                self.rebuilds.fetch_add(1, Ordering::SeqCst);
                self.metrics.rebuilds.increment(1);
                let reason = old.fatal_error();
                tracing::warn!(topic = %self.topic.name, generation = generation + 1, ?reason, "producer handle rebuilt after fatal error");
                retire(old, self.config.delivery_timeout);
            }
            Err(e) => {
                tracing::error!(topic = %self.topic.name, error = %e, "cannot rebuild producer handle; will retry on next send");
            }
        }
    }

    /// A W3C `traceparent` value for this send when a tracing span is current, written into a
    /// stack buffer (no allocation).
    fn traceparent(&self) -> Option<[u8; TRACEPARENT_LEN]> {
        let id = Span::current().id()?.into_u64();
        // No OpenTelemetry layer: derive a stable trace id from the caller's span id (so records
        // sent under one span share a trace id) and a random parent id for this send.
        let mixed = splitmix(self.trace_salt as u64 ^ id);
        let trace_id = (u128::from(mixed) << 64)
            | u128::from(splitmix(mixed ^ (self.trace_salt >> 64) as u64));
        let span_id: u64 = rand::random::<u64>() | 1;
        Some(format_traceparent(trace_id, span_id))
    }

    fn classify(
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
                    self.rebuild(handle.generation);
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

    fn track_in_flight(&self, n: usize) {
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        // increment/decrement, not set: sets from two threads can land out of order and leave
        // the gauge stale when the producer goes idle
        self.metrics.in_flight.increment(n as f64);
    }

    fn untrack_in_flight(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        self.metrics.in_flight.decrement(n as f64);
    }

    /// [`Core::hand_over`] for a record awaited on its own.
    async fn enqueue(
        self: &Arc<Self>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
        slot: Box<Slot>,
    ) -> Pending {
        let position = slot.position();
        match self.hand_over(key, payload, headers, schema_id, slot).await {
            Ok(sent) => Pending::Waiting(Waiting::new(self, sent, position, key)),
            Err(outcome) => Pending::Done(outcome),
        }
    }

    fn failed(&self, retriable: bool) {
        if retriable {
            self.metrics.failed_retriable.increment(1);
        } else {
            self.metrics.failed_permanent.increment(1);
        }
    }

    /// Hands one record to librdkafka, waiting while its queue is full (backpressure); the
    /// outcome when it never got there. `slot` travels with the record as librdkafka's delivery
    /// opaque; dropping it on any path that does not hand the record over completes it.
    async fn hand_over(
        self: &Arc<Self>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
        slot: Box<Slot>,
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
        let traceparent = if headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        {
            None
        } else {
            self.traceparent()
        };
        let span = tracing::debug_span!(
            "orderstream.produce",
            topic = %topic,
            key = field::Empty,
            schema_id = field::Empty,
            partition = field::Empty,
            offset = field::Empty,
        );
        if !span.is_disabled() {
            if let Some(k) = key {
                span.record("key", String::from_utf8_lossy(k).as_ref());
            }
            if let Some(id) = schema_id {
                span.record("schema_id", id);
            }
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<Slot>> =
            BaseRecord::with_opaque_to(topic, slot).payload(payload);
        // librdkafka takes ownership of a record's headers, so they are built per record; none
        // at all (no allocation) when there is nothing to send.
        if !headers.is_empty() || traceparent.is_some() {
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
            record = record.headers(owned);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        let started = Instant::now();
        let mut handle = self.current();
        let mut pauses = None;
        let mut fatal_attempts = 0;
        let enqueued = loop {
            match handle.producer.send(record) {
                Ok(()) => break Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Backpressure: wait for librdkafka to drain, never surface QueueFull.
                    let step = pauses.get_or_insert_with(queue_full_backoff).next();
                    tokio::time::sleep(step.unwrap_or(QUEUE_FULL_MAX_PAUSE)).await;
                    handle = self.current();
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
                    self.rebuild(handle.generation);
                    handle = self.current();
                }
                Err((e, _)) => break Err(e),
            }
        };
        match enqueued {
            Ok(()) => {
                self.metrics.sent.increment(1);
                Ok(Sent {
                    handle,
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
}

/// Keeps a replaced handle alive off the async threads until its in-flight sends resolved, then
/// drops it (dropping a librdkafka producer blocks while it purges and flushes).
fn retire(old: Arc<Handle>, bound: Duration) {
    let drop_it = move || {
        // Fail what the poisoned handle still holds now (queued and in flight): those sends
        // resolve as PossiblyPersisted with the fatal reason instead of hanging until
        // delivery.timeout.ms.
        old.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + bound + Duration::from_secs(5);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(old);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(drop_it));
    } else {
        drop_it();
    }
}

/// Longest wait between two attempts to enqueue into librdkafka's full queue.
const QUEUE_FULL_MAX_PAUSE: Duration = Duration::from_millis(20);

/// Waits while librdkafka's queue is full: 0.5 ms doubling to 20 ms, short enough that the
/// queue never runs dry while we sleep (at ~500k msgs/s, 20 ms is a tenth of the queue).
fn queue_full_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_micros(500))
        .with_max_delay(QUEUE_FULL_MAX_PAUSE)
        .without_max_times()
        .build()
}

/// Length of `00-<32 hex>-<16 hex>-01`.
const TRACEPARENT_LEN: usize = 55;

fn format_traceparent(trace_id: u128, span_id: u64) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    for (i, slot) in out[3..35].iter_mut().enumerate() {
        let shift = 4 * (31 - i);
        *slot = HEX[((trace_id >> shift) & 0xf) as usize];
    }
    for (i, slot) in out[36..52].iter_mut().enumerate() {
        let shift = 4 * (15 - i);
        *slot = HEX[((span_id >> shift) & 0xf) as usize];
    }
    out
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A producer of pre-encoded bytes: one librdkafka handle for the life of the process, `Clone`
/// shares it.
#[derive(Clone)]
pub struct RawProducer {
    core: Arc<Core>,
}

impl std::fmt::Debug for RawProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawProducer")
            .field("topic", &self.core.topic)
            .field("in_flight", &self.in_flight())
            .field("rebuilds", &self.rebuilds())
            .finish()
    }
}

impl RawProducer {
    /// Validates the config, creates the librdkafka producer and checks the topic: refuses to
    /// start when it is missing or its live partition count differs from
    /// `topic.expected_partitions`. Bounded by `config.startup_timeout`.
    pub async fn new(config: ProducerConfig, topic: ProducerTopic) -> Result<Self, ProducerError> {
        let client_config = config.to_client_config()?;
        if topic.expected_partitions <= 0 {
            return Err(ProducerError::Config(crate::error::ConfigError::Invalid {
                field: "expected_partitions",
                reason: format!("{} for topic `{}`", topic.expected_partitions, topic.name),
            }));
        }
        let fatal_notify = Arc::new(tokio::sync::Notify::new());
        let handle = Handle::build(&client_config, &config.client_id, 0, &fatal_notify)
            .map_err(|source| ProducerError::Client { source })?;
        check_topic(&handle, &config, &topic).await?;
        let trace_salt = rand::random::<u128>();
        let metrics = Metrics::new(&topic.name);
        tracing::info!(topic = %topic.name, partitions = topic.expected_partitions, bootstrap = %config.bootstrap_servers, "producer started");
        let core = Arc::new(Core {
            topic,
            config,
            client_config,
            handle: RwLock::new(Arc::new(handle)),
            in_flight: AtomicUsize::new(0),
            rebuilds: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            trace_salt,
            metrics,
            fatal_notify: Arc::clone(&fatal_notify),
        });
        // Rebuild as soon as librdkafka reports a fatal error, not only on the next send: the
        // old handle's in-flight records are then purged and reported promptly instead of
        // waiting for `delivery_timeout`.
        let weak = Arc::downgrade(&core);
        tokio::spawn(async move {
            loop {
                fatal_notify.notified().await;
                let Some(core) = weak.upgrade() else { break };
                let handle = core.current_handle_unchecked();
                if handle.is_fatal() {
                    core.rebuild(handle.generation);
                }
            }
        });
        Ok(Self { core })
    }

    /// Sends pre-encoded bytes. `headers` are added as given (a `traceparent` is added when none
    /// is given and a tracing span is current).
    pub async fn send_raw(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> DeliveryOutcome {
        let slot = Batch::new(1).slot(0);
        let pending = self.core.enqueue(key, payload, headers, None, slot).await;
        pending.outcome().await
    }

    /// Hands one record to librdkafka, returning once it is *queued* (waiting only for queue
    /// space); the returned [`PendingDelivery`] resolves to its outcome. Calls awaited one after
    /// another keep their order per key while acks are awaited concurrently: the pipelined way
    /// to send a stream without reordering a key's records. `schema_id` (of a Confluent-framed
    /// payload) is only recorded on the record's tracing span.
    pub async fn enqueue(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
    ) -> PendingDelivery {
        let slot = Batch::new(1).slot(0);
        PendingDelivery(
            self.core
                .enqueue(key, payload, headers, schema_id, slot)
                .await,
        )
    }

    /// A batch of `len` sends awaited together: [`SendBatch::send`] each record (waiting on a
    /// full queue), then [`SendBatch::outcomes`]. Cheaper per record than `len` pending sends.
    pub fn batch(&self, len: usize) -> SendBatch {
        SendBatch::new(&self.core, len)
    }

    /// The outcome of a record that was never handed over, counted in the producer's metrics;
    /// e.g. a payload the caller could not encode.
    pub fn not_sent(&self, error: ProducerError) -> DeliveryOutcome {
        self.core.metrics.not_sent.increment(1);
        let retriable = error.is_retriable();
        DeliveryOutcome::NotSent { error, retriable }
    }

    /// Enqueues every record (waiting on a full queue), then awaits all delivery reports.
    /// librdkafka batches them. Outcomes are in input order.
    pub async fn send_raw_batch(
        &self,
        records: &[(Option<&[u8]>, &[u8])],
        headers: &[(&str, &[u8])],
    ) -> Vec<DeliveryOutcome> {
        let mut sends = self.batch(records.len());
        for (key, payload) in records {
            sends.send(*key, payload, headers, None).await;
        }
        sends
            .outcomes(|i| records.get(i).and_then(|(key, _)| *key))
            .await
    }

    /// Waits up to `deadline` for every record handed to librdkafka to be acknowledged or fail.
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        let started = Instant::now();
        let handle = self.core.current();
        let producer = handle.producer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let r = producer.flush(deadline);
            (r, producer.in_flight_count())
        })
        .await;
        let (complete, unflushed) = match result {
            Ok((r, left)) => (r.is_ok() && left == 0, usize::try_from(left).unwrap_or(0)),
            Err(_) => (false, self.in_flight()),
        };
        // Give the delivery callbacks of the flushed records a moment to run.
        let settle = Instant::now() + Duration::from_millis(200);
        while complete && self.in_flight() > 0 && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        FlushReport {
            complete,
            unflushed,
            in_flight: self.in_flight(),
            elapsed: started.elapsed(),
        }
    }

    /// Graceful shutdown: refuse new records (they get `NotSent`), flush with `deadline`, report
    /// what did not flush.
    pub async fn shutdown(&self, deadline: Duration) -> FlushReport {
        self.core.closed.store(true, Ordering::SeqCst);
        let report = self.flush(deadline).await;
        if report.complete {
            tracing::info!(topic = %self.core.topic.name, elapsed = ?report.elapsed, "producer flushed");
        } else {
            tracing::warn!(topic = %self.core.topic.name, unflushed = report.unflushed, in_flight = report.in_flight, "producer shutdown deadline passed with records unflushed");
        }
        report
    }

    /// Waits for `cancel` (e.g. SIGTERM wired to the token), then [`RawProducer::shutdown`].
    pub async fn shutdown_on(&self, cancel: CancellationToken, deadline: Duration) -> FlushReport {
        cancel.cancelled().await;
        self.shutdown(deadline).await
    }

    /// Sends awaiting their delivery report.
    pub fn in_flight(&self) -> usize {
        self.core.in_flight.load(Ordering::SeqCst)
    }

    /// How many times the librdkafka handle was rebuilt after a fatal error.
    pub fn rebuilds(&self) -> u64 {
        self.core.rebuilds.load(Ordering::SeqCst)
    }

    /// The topic this producer writes to.
    pub fn topic(&self) -> &ProducerTopic {
        &self.core.topic
    }

    /// The (validated) configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.core.config
    }

    /// The partition a key goes to (Java-compatible murmur2 over the layout's partition count).
    pub fn partition_for_key(&self, key: &[u8]) -> i32 {
        partition_for_key(key, self.core.topic.expected_partitions).unwrap_or(0)
    }

    /// The current fatal error of the live handle, if any (it is rebuilt on the next send).
    pub fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.core.current_handle_unchecked().fatal_error()
    }

    /// Request-level retry figures of the live handle, as of librdkafka's last statistics
    /// report. All zero unless `statistics.interval.ms` is set in `extra`. Note: librdkafka's
    /// `txretries` counts *request* retries (timeouts, disconnects); records re-sent after a
    /// retriable broker error code are not counted there.
    pub fn retry_stats(&self) -> RetryStats {
        let h = self.core.current_handle_unchecked();
        RetryStats {
            request_retries: h.state.tx_retries.load(Ordering::Relaxed),
            request_timeouts: h.state.req_timeouts.load(Ordering::Relaxed),
            transmit_errors: h.state.tx_errors.load(Ordering::Relaxed),
            records_transmitted: h.state.tx_msgs.load(Ordering::Relaxed),
        }
    }

    /// Records in librdkafka's queues (not yet acknowledged), across the live handle.
    pub fn queued(&self) -> usize {
        usize::try_from(
            self.core
                .current_handle_unchecked()
                .producer
                .in_flight_count(),
        )
        .unwrap_or(0)
    }
}

impl Core {
    fn current_handle_unchecked(&self) -> Arc<Handle> {
        match self.handle.read() {
            Ok(h) => Arc::clone(&h),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

async fn check_topic(
    handle: &Handle,
    config: &ProducerConfig,
    topic: &ProducerTopic,
) -> Result<(), ProducerError> {
    let deadline = Instant::now() + config.startup_timeout;
    let grace_end = (Instant::now() + Duration::from_millis(1500)).min(deadline);
    loop {
        let producer = handle.producer.clone();
        let name = topic.name.clone();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .client()
                // Short attempts: a refused login only shows in the context's error callback,
                // which is read between attempts.
                .fetch_metadata(
                    Some(&name),
                    remaining.clamp(Duration::from_millis(100), Duration::from_secs(1)),
                )
                .map(|md| {
                    md.topics()
                        .first()
                        .map(|t| (t.error().map(RDKafkaErrorCode::from), t.partitions().len()))
                })
        })
        .await
        .map_err(|_join| ProducerError::Client {
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::Fail),
        })?;
        if let Some(refusal) = handle.state.last_error.refusal() {
            return Err(ProducerError::Refused {
                bootstrap: config.bootstrap_servers.clone(),
                code: refusal.code,
                reason: refusal.reason,
            });
        }
        let transient = match fetched {
            Err(source) => {
                // Before the deadline a failed attempt is just a short one: TCP, TLS and SASL to
                // a remote cluster can take longer than one attempt. Only a refusal ends early.
                if Instant::now() >= deadline {
                    // The callback that says why may still be queued behind this answer.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if let Some(refusal) = handle.state.last_error.refusal() {
                        return Err(ProducerError::Refused {
                            bootstrap: config.bootstrap_servers.clone(),
                            code: refusal.code,
                            reason: refusal.reason,
                        });
                    }
                    return Err(ProducerError::Unreachable {
                        bootstrap: config.bootstrap_servers.clone(),
                        last_error: handle.state.last_error.reason(),
                        topic: topic.name.clone(),
                        timeout: config.startup_timeout,
                        source,
                    });
                }
                true
            }
            Ok(None) => true,
            // A broker can lag behind the controller for a moment after a topic is created or
            // grown: only refuse once the answer held for the grace period.
            Ok(Some((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _))) => {
                if Instant::now() >= grace_end {
                    return Err(ProducerError::TopicMissing {
                        topic: topic.name.clone(),
                    });
                }
                true
            }
            // ACLs do not change while we wait: refuse now, naming the topic.
            Ok(Some((Some(code @ RDKafkaErrorCode::TopicAuthorizationFailed), _))) => {
                return Err(ProducerError::Refused {
                    bootstrap: config.bootstrap_servers.clone(),
                    code,
                    reason: format!(
                        "this principal may not use topic `{}` (it needs DESCRIBE and WRITE)",
                        topic.name
                    ),
                });
            }
            Ok(Some((Some(_), _))) | Ok(Some((None, 0))) => true,
            Ok(Some((None, n))) => {
                let actual = i32::try_from(n).unwrap_or(i32::MAX);
                if actual != topic.expected_partitions {
                    if Instant::now() < grace_end {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    return Err(ProducerError::PartitionMismatch {
                        topic: topic.name.clone(),
                        expected: topic.expected_partitions,
                        actual,
                    });
                }
                return Ok(());
            }
        };
        if transient && Instant::now() >= deadline {
            return Err(ProducerError::Unreachable {
                bootstrap: config.bootstrap_servers.clone(),
                last_error: handle.state.last_error.reason(),
                topic: topic.name.clone(),
                timeout: config.startup_timeout,
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_matches_the_w3c_layout() {
        for (trace_id, span_id) in [
            (0u128, 1u64),
            (u128::MAX, u64::MAX),
            (
                0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
                0xdead_beef_0000_0001,
            ),
        ] {
            let got = format_traceparent(trace_id, span_id);
            assert_eq!(
                std::str::from_utf8(&got).expect("ascii"),
                format!("00-{trace_id:032x}-{span_id:016x}-01")
            );
        }
    }

    #[test]
    fn key_copy_keeps_short_and_long_keys() {
        assert_eq!(KeyCopy::new(None).get(), None);
        assert_eq!(KeyCopy::new(Some(b"")).get(), Some(&b""[..]));
        let short = b"order-000123";
        assert_eq!(KeyCopy::new(Some(short)).get(), Some(&short[..]));
        let edge = [7u8; INLINE_KEY];
        assert_eq!(KeyCopy::new(Some(&edge)).get(), Some(&edge[..]));
        let long = vec![9u8; INLINE_KEY + 1];
        assert_eq!(KeyCopy::new(Some(&long)).get(), Some(long.as_slice()));
    }
}
