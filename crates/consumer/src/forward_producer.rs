//! The long-lived producer for retry/DLQ forwards, rebuilt after a fatal error.
//!
//! Why: the forward producer is idempotent, and librdkafka raises a *fatal* error on an
//! idempotent producer when it can no longer reason about its sequence state (e.g. a
//! head-of-line `OUT_OF_ORDER_SEQUENCE_NUMBER`). A fatal handle refuses every later send for
//! good, so retrying on it stalls the affected partitions until a restart (nothing is lost: the
//! source offsets stay uncommitted). The only way out is a fresh instance from the same config.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer, PurgeConfig};
use tracing::{error, warn};

use crate::metric as m;

/// One librdkafka producer instance and its generation number (1 for the first).
#[derive(Clone)]
pub(crate) struct Handle {
    producer: Arc<FutureProducer>,
    generation: u64,
}

impl Handle {
    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The fatal error behind a failed send on this handle, if the handle is dead.
    fn fatal_reason(&self, error: &KafkaError) -> Option<String> {
        // rd_kafka_fatal_error() is set before the failed delivery reports are queued, so a
        // send failing because of the fatal error always sees it here.
        match self.producer.client().fatal_error() {
            Some((code, reason)) => Some(format!("{code:?}: {reason}")),
            None if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
                Some(error.to_string())
            }
            None => None,
        }
    }
}

/// The forward producer: the current [`Handle`], replaced once per generation after a fatal
/// error (see the module docs).
pub(crate) struct ForwardProducer {
    config: ClientConfig,
    current: RwLock<Handle>,
    rebuilds: AtomicU64,
    /// How long a replaced handle is kept for sends still holding it (`message.timeout.ms`).
    retire_bound: Duration,
}

impl std::fmt::Debug for ForwardProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardProducer")
            .field("generation", &self.current().generation)
            .field("rebuilds", &self.rebuilds())
            .finish_non_exhaustive()
    }
}

impl ForwardProducer {
    /// Creates generation 1 from `config`. `retire_bound`: how long a replaced handle is kept
    /// for sends still holding it (use `message.timeout.ms`).
    pub(crate) fn new(config: ClientConfig, retire_bound: Duration) -> KafkaResult<Self> {
        let producer = config.create()?;
        Ok(Self {
            config,
            current: RwLock::new(Handle {
                producer: Arc::new(producer),
                generation: 1,
            }),
            rebuilds: AtomicU64::new(0),
            retire_bound,
        })
    }

    /// The handle to send with.
    pub(crate) fn current(&self) -> Handle {
        match self.current.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Handles rebuilt so far.
    pub(crate) fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::SeqCst)
    }

    /// Called after a send to `topic` on `used` failed with `error`. When `used` is dead (a fatal
    /// error), makes sure a newer handle is current — building it unless another task already
    /// did for this generation — and returns `true`: the caller may retry on
    /// [`Self::current`] at once. `false`: not a fatal error, or the rebuild failed (the caller
    /// backs off; its next failure tries again).
    pub(crate) fn recover(&self, used: &Handle, error: &KafkaError, topic: &str) -> bool {
        let Some(reason) = used.fatal_reason(error) else {
            return false;
        };
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.generation != used.generation {
            return true; // another task already replaced this generation
        }
        let generation = used.generation + 1;
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let old = std::mem::replace(
                    &mut *guard,
                    Handle {
                        producer: Arc::new(fresh),
                        generation,
                    },
                );
                drop(guard);
                self.rebuilds.fetch_add(1, Ordering::SeqCst);
                metrics::counter!(m::PRODUCER_REBUILDS, "topic" => topic.to_owned()).increment(1);
                warn!(
                    topic,
                    generation,
                    reason = %reason,
                    "retry/dead-letter producer rebuilt after a fatal error"
                );
                retire(old, self.retire_bound);
                true
            }
            Err(e) => {
                error!(
                    topic,
                    generation = used.generation,
                    reason = %reason,
                    error = %e,
                    "cannot rebuild the retry/dead-letter producer; retrying after a backoff"
                );
                false
            }
        }
    }

    /// Flushes the current handle (blocking: call it off the async threads).
    pub(crate) fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.current().producer.flush(timeout)
    }
}

/// Drops a replaced handle off the async threads: fails what it still holds (so sends awaiting
/// it resolve now and retry on the new handle), waits (bounded) until no send holds it, then
/// drops it — dropping a librdkafka producer blocks while it purges and flushes.
fn retire(old: Handle, bound: Duration) {
    let drop_it = move || {
        old.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + bound + Duration::from_secs(5);
        while Arc::strong_count(&old.producer) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(old);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(drop_it));
    } else {
        drop_it();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::FutureRecord;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    async fn send(h: &Handle, value: &str) -> Result<(), KafkaError> {
        h.producer()
            .send(
                FutureRecord::<[u8], str>::to("fwd").payload(value),
                Duration::from_secs(5),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fatal_error_rebuilds_once_per_generation() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("fwd", 1, 1).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("linger.ms", "0");
        let fp = Arc::new(ForwardProducer::new(config, Duration::from_secs(5)).unwrap());
        let dead = fp.current();
        assert_eq!(dead.generation(), 1);
        send(&dead, "warm").await.unwrap();
        // head-of-line OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka raises a fatal error
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let err = send(&dead, "boom").await.unwrap_err();
        mock.clear_request_errors(RDKafkaApiKey::Produce);
        assert!(dead.producer().client().fatal_error().is_some(), "{err}");

        // several tasks see the fatal failure at once: one rebuild, all may retry at once
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (fp, dead, err) = (Arc::clone(&fp), dead.clone(), err.clone());
                tokio::spawn(async move { fp.recover(&dead, &err, "fwd") })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(fp.rebuilds(), 1);
        drop(dead);
        let fresh = fp.current();
        assert_eq!(fresh.generation(), 2);
        send(&fresh, "after").await.unwrap();
        assert!(fresh.producer().client().fatal_error().is_none());
        // an ordinary failure of a healthy handle is not recovered by a rebuild
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(!fp.recover(&fresh, &timed_out, "fwd"));
        assert_eq!((fp.rebuilds(), fp.current().generation()), (1, 2));
    }
}
