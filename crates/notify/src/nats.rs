//! The NATS JetStream sink: a stream declared as code with a duplicate window, each message
//! published with `Nats-Msg-Id` = event id, the publish acknowledgement awaited before the
//! record counts as notified. A republish after a lost acknowledgement is recognised by the
//! stream as a duplicate within the window and stored once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::counts::{Counters, NotifyCounts};
use crate::error::{NotifyError, endpoint};
use crate::{Notification, Sink, retry};

const SINK: &str = "nats";
/// How long one publish round waits for its acknowledgements before republishing.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Settings of the NATS JetStream sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222`. Credentials in it are never logged.
    pub url: String,
    /// The stream (file storage) holding the notifications.
    pub stream: String,
    /// Subjects are `<prefix>.<kind>`, e.g. `orders.notifications.order.created`; the stream
    /// takes `<prefix>.>`.
    pub subject_prefix: String,
    /// The stream's duplicate window: a message id seen within it is stored once. Must exceed
    /// the longest time a record can take to be redelivered (publish timeout plus the
    /// consumer's retries).
    pub duplicate_window: Duration,
    /// How long messages are kept.
    pub max_age: Duration,
    /// How long one batch may wait for acknowledgements, republishing, before its records fail
    /// as transient (they are retried by the consumer, never dropped).
    pub publish_timeout: Duration,
}

impl NatsConfig {
    /// Settings for `url` with the default names: stream `ORDER_NOTIFICATIONS`, subjects
    /// `orders.notifications.>`, 10 minute duplicate window, 7 day retention.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            stream: "ORDER_NOTIFICATIONS".to_owned(),
            subject_prefix: "orders.notifications".to_owned(),
            duplicate_window: Duration::from_secs(600),
            max_age: Duration::from_secs(7 * 24 * 3600),
            publish_timeout: Duration::from_secs(30),
        }
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.stream.is_empty() || self.stream.contains(['.', ' ', '*', '>']) {
            return Err(NotifyError::InvalidConfig(format!(
                "NATS stream name {:?} must be non-empty without '.', ' ', '*' or '>'",
                self.stream
            )));
        }
        if self.subject_prefix.is_empty() || self.subject_prefix.contains(['*', '>', ' ']) {
            return Err(NotifyError::InvalidConfig(format!(
                "NATS subject prefix {:?} must be non-empty without wildcards or spaces",
                self.subject_prefix
            )));
        }
        if self.publish_timeout.is_zero() || self.duplicate_window <= self.publish_timeout {
            return Err(NotifyError::InvalidConfig(format!(
                "NATS duplicate window ({:?}) must exceed the publish timeout ({:?}), or a republish could be stored twice",
                self.duplicate_window, self.publish_timeout
            )));
        }
        if self.max_age < self.duplicate_window {
            return Err(NotifyError::InvalidConfig(
                "NATS max age must be at least the duplicate window".to_owned(),
            ));
        }
        Ok(())
    }

    /// The stream's configuration.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            num_replicas: 1,
            ..stream::Config::default()
        }
    }

    /// The subject of a notification.
    pub fn subject(&self, n: &Notification) -> String {
        format!("{}.{}", self.subject_prefix, n.routing_key())
    }
}

/// Publishes notifications to a JetStream stream, deduplicated by event id.
#[derive(Debug)]
pub struct NatsSink {
    cfg: NatsConfig,
    endpoint: String,
    client: async_nats::Client,
    js: jetstream::Context,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

impl NatsSink {
    /// Connects and declares the stream (created when missing). Fails with a clear error when
    /// the server cannot be reached, has JetStream off, or holds the stream with other
    /// settings; the client reconnects by itself after that.
    pub async fn connect(cfg: NatsConfig, cancel: CancellationToken) -> Result<Self, NotifyError> {
        cfg.validate()?;
        let ep = endpoint(&cfg.url);
        let counters = Arc::new(Counters::new(SINK));
        // The client reconnects by itself; a `Connected` event after the first connection is a
        // reconnection.
        let seen = Arc::clone(&counters);
        let client = async_nats::ConnectOptions::new()
            .name("orderstream-notify")
            .connection_timeout(Duration::from_secs(10))
            .event_callback(move |event| {
                let seen = Arc::clone(&seen);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            seen.reconnected();
                            tracing::info!("NATS sink reconnected");
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS connection lost: the client reconnects");
                        }
                        other => tracing::info!(event = %other, "NATS connection event"),
                    }
                }
            })
            .connect(&cfg.url)
            .await
            .map_err(|e| NotifyError::Connect {
                sink: SINK,
                endpoint: ep.clone(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let declared = js
            .get_or_create_stream(cfg.stream_config())
            .await
            .map_err(|e| NotifyError::Declare {
                sink: SINK,
                endpoint: ep.clone(),
                what: format!("stream {} (is JetStream on? nats-server -js)", cfg.stream),
                reason: e.to_string(),
            })?;
        let held = &declared.cached_info().config;
        if held.duplicate_window != cfg.duplicate_window
            || held.subjects != cfg.stream_config().subjects
        {
            return Err(NotifyError::Declare {
                sink: SINK,
                endpoint: ep,
                what: format!("stream {}", cfg.stream),
                reason: format!(
                    "exists with subjects {:?} and duplicate window {:?}, configured {:?} and {:?}",
                    held.subjects,
                    held.duplicate_window,
                    cfg.stream_config().subjects,
                    cfg.duplicate_window
                ),
            });
        }
        tracing::info!(endpoint = %ep, stream = %cfg.stream, duplicate_window_s = cfg.duplicate_window.as_secs(), "NATS sink connected, stream declared");
        Ok(NatsSink {
            cfg,
            endpoint: ep,
            client,
            js,
            counters,
            cancel,
        })
    }

    /// The settings.
    pub fn config(&self) -> &NatsConfig {
        &self.cfg
    }

    /// Flushes what the client buffered and closes the connection.
    pub async fn close(&self) {
        let _ = self.client.flush().await;
        let _ = self.client.drain().await;
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn counts(&self) -> NotifyCounts {
        self.counters.snapshot()
    }

    async fn publish(&self, notes: &[Notification]) -> Vec<Result<(), NotifyError>> {
        let deadline = Instant::now() + self.cfg.publish_timeout;
        let mut results: Vec<Option<Result<(), NotifyError>>> = vec![None; notes.len()];
        let mut pending: Vec<usize> = (0..notes.len()).collect();
        let mut backoff = retry::backoff();
        let mut last_error = String::from("not published");
        while !pending.is_empty() {
            let mut acks = Vec::with_capacity(pending.len());
            let mut retry_later = Vec::new();
            for &i in &pending {
                let n = &notes[i];
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", n.event_id.as_str());
                headers.insert("Content-Type", "application/json");
                if let Some(tp) = &n.traceparent {
                    headers.insert("traceparent", tp.as_str());
                }
                match self
                    .js
                    .publish_with_headers(self.cfg.subject(n), headers, n.body().into())
                    .await
                {
                    Ok(ack) => acks.push((i, ack)),
                    Err(e) => {
                        last_error = e.to_string();
                        retry_later.push(i);
                    }
                }
            }
            self.counters.published(acks.len() as u64);
            // An acknowledgement lost with a crashed server never comes: republish after a few
            // seconds rather than at the end of the publish timeout.
            let round_wait = (Instant::now() + ACK_WAIT).min(deadline);
            for (i, ack) in acks {
                match tokio::time::timeout_at(round_wait, ack.into_future()).await {
                    Ok(Ok(ack)) => {
                        if ack.duplicate {
                            self.counters.broker_duplicate();
                        }
                        self.counters.confirmed(1);
                        results[i] = Some(Ok(()));
                    }
                    Ok(Err(e)) => {
                        last_error = e.to_string();
                        retry_later.push(i);
                    }
                    Err(_) => {
                        last_error = format!("no acknowledgement within {ACK_WAIT:?}");
                        retry_later.push(i);
                    }
                }
            }
            if !retry_later.is_empty() {
                tracing::warn!(endpoint = %self.endpoint, error = %last_error, unacknowledged = retry_later.len(), "JetStream publish not acknowledged: republishing with the same message ids");
            }
            retry_later.sort_unstable();
            pending = retry_later;
            if pending.is_empty() || !retry::pause(&mut backoff, deadline, &self.cancel).await {
                break;
            }
        }
        for i in pending {
            results[i] = Some(Err(NotifyError::Unavailable {
                sink: SINK,
                endpoint: self.endpoint.clone(),
                event_id: notes[i].event_id.clone(),
                reason: last_error.clone(),
            }));
        }
        crate::settled(results, SINK, &self.endpoint, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_short_duplicate_window_is_refused() {
        let mut cfg = NatsConfig::new("nats://127.0.0.1:4222");
        cfg.validate().unwrap();
        assert_eq!(cfg.stream_config().subjects, vec!["orders.notifications.>"]);
        cfg.duplicate_window = Duration::from_secs(5);
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("duplicate window")
        );
        let mut cfg = NatsConfig::new("nats://127.0.0.1:4222");
        cfg.stream = "a.b".to_owned();
        assert!(cfg.validate().is_err());
    }
}
