//! The long-lived librdkafka producer: one handle per process, rebuilt only after a fatal error.
//!
//! [`RawProducer`] sends pre-encoded bytes (a codec, e.g. the Avro order events of the orders
//! crate, layers on top): one at a time, pipelined ([`RawProducer::enqueue`]), or as a batch
//! awaited together ([`RawProducer::batch`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use crate::completion::Batch;
use crate::config::ProducerConfig;
use crate::error::ProducerError;
use crate::partition::partition_for_key;

mod check;
mod core;
mod handle;
mod outcome;
mod pending;
mod polled;
mod sends;
mod trace;

use check::check_topic;

use self::core::{Core, Metrics};
use crate::generations::Generations;
use handle::Client;
pub use outcome::{DeliveryOutcome, FlushReport, RetryStats};
pub use pending::PendingDelivery;
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
        let handles = {
            let (client_config, client_id) = (client_config, config.client_id.clone());
            let fatal_notify = Arc::clone(&fatal_notify);
            Generations::new(
                move || Client::build(&client_config, &client_id, &fatal_notify),
                config.delivery_timeout,
            )
        }
        .map_err(|source| ProducerError::Client { source })?;
        check_topic(&handles.current(), &config, &topic).await?;
        let trace_salt = rand::random::<u128>();
        let metrics = Metrics::new(&topic.name);
        tracing::info!(topic = %topic.name, partitions = topic.expected_partitions, bootstrap = %config.bootstrap_servers, "producer started");
        let core = Arc::new(Core {
            topic,
            config,
            handles,
            in_flight: AtomicUsize::new(0),
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
                let handle = core.handles.current();
                if handle.is_fatal() {
                    core.rebuild(&handle);
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
        self.enqueue(key, payload, headers, None)
            .await
            .outcome()
            .await
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
        let producer = handle.producer.shared_producer();
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
        self.core.handles.rebuilds()
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
        self.core.handles.current().fatal_error()
    }

    /// Request-level retry figures of the live handle, as of librdkafka's last statistics
    /// report. All zero unless `statistics.interval.ms` is set in `extra`. Note: librdkafka's
    /// `txretries` counts *request* retries (timeouts, disconnects); records re-sent after a
    /// retriable broker error code are not counted there.
    pub fn retry_stats(&self) -> RetryStats {
        let h = self.core.handles.current();
        RetryStats {
            request_retries: h.state.tx_retries.load(Ordering::Relaxed),
            request_timeouts: h.state.req_timeouts.load(Ordering::Relaxed),
            transmit_errors: h.state.tx_errors.load(Ordering::Relaxed),
            records_transmitted: h.state.tx_msgs.load(Ordering::Relaxed),
        }
    }

    /// Records in librdkafka's queues (not yet acknowledged), across the live handle.
    pub fn queued(&self) -> usize {
        usize::try_from(self.core.handles.current().producer.in_flight_count()).unwrap_or(0)
    }
}
