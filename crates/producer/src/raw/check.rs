//! The start-up check: the topic exists with the partition count the layout expects.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use crate::config::ProducerConfig;
use crate::error::ProducerError;

use super::ProducerTopic;
use super::handle::Handle;

pub(super) async fn check_topic(
    handle: &Handle,
    config: &ProducerConfig,
    topic: &ProducerTopic,
) -> Result<(), ProducerError> {
    let deadline = Instant::now() + config.startup_timeout;
    let grace_end = (Instant::now() + Duration::from_millis(1500)).min(deadline);
    loop {
        let producer = handle.producer.shared_producer();
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
