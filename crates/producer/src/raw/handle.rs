//! One librdkafka producer instance and its context callbacks; [`crate::generations`] replaces
//! it after a fatal error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::completion::{Report, Slot};
use crate::diagnosis::LastBrokerError;
use crate::generations::{Generation, Instance};

use super::polled::Polled;

/// Shared state between the librdkafka context callbacks of one handle and the producer.
#[derive(Debug, Default)]
pub(super) struct HandleState {
    pub(super) fatal: AtomicBool,
    /// From the last statistics callback (only with `statistics.interval.ms` in `extra`).
    pub(super) tx_retries: AtomicU64,
    pub(super) req_timeouts: AtomicU64,
    pub(super) tx_errors: AtomicU64,
    pub(super) tx_msgs: AtomicU64,
    /// Delivery reports served (by whichever thread polled).
    pub(super) reports_served: AtomicU64,
    /// Why connections failed, for start-up errors that say why.
    pub(super) last_error: LastBrokerError,
}

/// Client context: records fatal errors (the handle must then be rebuilt) and logs through tracing.
#[derive(Debug, Clone)]
pub(super) struct Ctx {
    pub(super) state: Arc<HandleState>,
    pub(super) client_id: String,
    /// Wakes the producer's fatal-error watcher (shared by every handle of one producer).
    pub(super) fatal_notify: Arc<tokio::sync::Notify>,
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
        self.state.reports_served.fetch_add(1, Ordering::Relaxed);
    }
}

/// One librdkafka producer instance and the state its callbacks share with the producer.
pub(crate) struct Client {
    pub(super) producer: Polled<Ctx>,
    pub(super) state: Arc<HandleState>,
}

impl Instance for Client {
    fn purge_all(&self) {
        // Fail what the poisoned instance still holds now (queued and in flight): those sends
        // resolve as PossiblyPersisted with the fatal reason instead of hanging until
        // delivery.timeout.ms.
        self.producer.purge_all();
    }
}

/// The live instance and its generation number (replaced after a fatal error).
pub(crate) type Handle = Generation<Client>;

impl Client {
    pub(super) fn build(
        client_config: &ClientConfig,
        client_id: &str,
        fatal_notify: &Arc<tokio::sync::Notify>,
    ) -> Result<Self, KafkaError> {
        let state = Arc::new(HandleState::default());
        let ctx = Ctx {
            state: Arc::clone(&state),
            client_id: client_id.to_owned(),
            fatal_notify: Arc::clone(fatal_notify),
        };
        let served = |ctx: &Ctx| ctx.state.reports_served.load(Ordering::Relaxed);
        let producer = Polled::new(
            BaseProducer::from_config_and_context(client_config, ctx)?,
            served,
        )
        .map_err(|e| {
            KafkaError::ClientCreation(format!("starting the delivery report thread: {e}"))
        })?;
        Ok(Self { producer, state })
    }

    pub(super) fn is_fatal(&self) -> bool {
        self.state.fatal.load(Ordering::SeqCst)
    }

    /// `(code, reason)` of the fatal error, if this instance has one.
    pub(super) fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.producer.client().fatal_error()
    }
}
