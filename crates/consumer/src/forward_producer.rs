//! The long-lived producer for retry/dead-letter forwards and dead-letter replay, rebuilt after
//! a fatal error by [`orderstream_producer::generations`], as the order producer is.
//!
//! Why: the forward producer is idempotent, and a fatal handle refuses every later send for
//! good, so retrying on it would stall the affected partitions until a restart (nothing is lost:
//! the source offsets stay uncommitted).

use std::sync::Arc;
use std::time::Duration;

use orderstream_producer::generations::{Generation, Generations, Replaced};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use tracing::{error, warn};

use crate::metric as m;

/// One librdkafka producer instance and its generation number (1 for the first); dereferences
/// to the `FutureProducer`.
pub(crate) type Handle = Arc<Generation<FutureProducer>>;

/// The fatal error behind a failed send on `handle`, if the handle is dead.
fn fatal_reason(handle: &Handle, error: &KafkaError) -> Option<String> {
    // rd_kafka_fatal_error() is set before the failed delivery reports are queued, so a send
    // failing because of the fatal error always sees it here.
    match handle.client().fatal_error() {
        Some((code, reason)) => Some(format!("{code:?}: {reason}")),
        None if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
            Some(error.to_string())
        }
        None => None,
    }
}

/// The forward producer: the current [`Handle`], replaced once per generation after a fatal
/// error (see the module docs and [`orderstream_producer::generations`]).
#[derive(Debug)]
pub(crate) struct ForwardProducer {
    handles: Generations<FutureProducer>,
}

impl ForwardProducer {
    /// Creates generation 1 from `config`. `retire_bound`: how long a replaced handle is kept
    /// for sends still holding it (use `message.timeout.ms`).
    pub(crate) fn new(config: ClientConfig, retire_bound: Duration) -> KafkaResult<Self> {
        Ok(Self {
            handles: Generations::new(move || config.create(), retire_bound)?,
        })
    }

    /// The handle to send with.
    pub(crate) fn current(&self) -> Handle {
        self.handles.current()
    }

    /// Handles rebuilt so far.
    pub(crate) fn rebuilds(&self) -> u64 {
        self.handles.rebuilds()
    }

    /// Called after a send to `topic` on `used` failed with `error`. When `used` is dead (a fatal
    /// error), makes sure a newer handle is current — building it unless another task already
    /// did for this generation — and returns `true`: the caller may retry on
    /// [`Self::current`] at once. `false`: not a fatal error, or the rebuild failed (the caller
    /// backs off; its next failure tries again).
    pub(crate) fn recover(&self, used: &Handle, error: &KafkaError, topic: &str) -> bool {
        let Some(reason) = fatal_reason(used, error) else {
            return false;
        };
        match self.handles.replace(used.number()) {
            Ok(Replaced::Now) => {
                metrics::counter!(m::PRODUCER_REBUILDS, "topic" => topic.to_owned()).increment(1);
                warn!(
                    topic,
                    generation = used.number() + 1,
                    reason = %reason,
                    "retry/dead-letter/replay producer rebuilt after a fatal error"
                );
                true
            }
            Ok(_) => true,
            Err(e) => {
                error!(
                    topic,
                    generation = used.number(),
                    reason = %reason,
                    error = %e,
                    "cannot rebuild the retry/dead-letter/replay producer"
                );
                false
            }
        }
    }

    /// Flushes the current handle (blocking: call it off the async threads).
    pub(crate) fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.current().flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::FutureRecord;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    async fn send(h: &Handle, value: &str) -> Result<(), KafkaError> {
        h.send(
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
        assert_eq!(dead.number(), 1);
        send(&dead, "warm").await.unwrap();
        // head-of-line OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka raises a fatal error
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let err = send(&dead, "boom").await.unwrap_err();
        mock.clear_request_errors(RDKafkaApiKey::Produce);
        assert!(dead.client().fatal_error().is_some(), "{err}");

        // several tasks see the fatal failure at once: one rebuild, all may retry at once
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (fp, dead, err) = (Arc::clone(&fp), Arc::clone(&dead), err.clone());
                tokio::spawn(async move { fp.recover(&dead, &err, "fwd") })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(fp.rebuilds(), 1);
        drop(dead);
        let fresh = fp.current();
        assert_eq!(fresh.number(), 2);
        send(&fresh, "after").await.unwrap();
        assert!(fresh.client().fatal_error().is_none());
        // an ordinary failure of a healthy handle is not recovered by a rebuild
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(!fp.recover(&fresh, &timed_out, "fwd"));
        assert_eq!((fp.rebuilds(), fp.current().number()), (1, 2));
    }
}
