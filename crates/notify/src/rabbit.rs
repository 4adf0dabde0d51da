//! The RabbitMQ sink: one long-lived connection and confirm-mode channel per process, persistent
//! messages with publisher confirms, a topology declared as code.
//!
//! Unlike the channel-per-publish, confirm-less pattern, a record counts as notified only when
//! the broker has confirmed its message, which for a durable quorum queue means it is stored on
//! disk. A connection failure drops the link; the next publish reconnects (with backoff),
//! declares the topology again and republishes what was not confirmed.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::counts::{Counters, NotifyCounts};
use crate::error::{NotifyError, endpoint};
use crate::{Notification, Sink, retry};

const SINK: &str = "rabbitmq";

/// Settings of the RabbitMQ sink. Names default to the `orders.notifications` family.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RabbitConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`. Credentials in it are never
    /// logged or shown in errors.
    pub url: String,
    /// The topic exchange notifications are published to; the routing key is the
    /// notification's kind (`order.created`, `order.paid`, ...).
    pub exchange: String,
    /// The durable queue bound to [`Self::exchange`] with [`Self::binding`].
    pub queue: String,
    /// The binding key of [`Self::queue`] (default `order.#`: every kind).
    pub binding: String,
    /// The exchange's alternate exchange (fanout) and its queue of the same name: messages no
    /// binding routes land there instead of being dropped.
    pub alternate_exchange: String,
    /// The queue's dead-letter exchange (fanout) and its queue of the same name: messages a
    /// receiver rejects (or that expire) land there, with their `x-death` reason.
    pub dead_letter_exchange: String,
    /// Declare [`Self::queue`] as a quorum queue (replicated, the durable kind RabbitMQ
    /// recommends); false declares a classic durable queue.
    pub quorum: bool,
    /// How long one batch may wait for confirms, reconnecting and republishing, before its
    /// records fail as transient (they are retried by the consumer, never dropped).
    pub publish_timeout: Duration,
}

impl RabbitConfig {
    /// Settings for `url` with the default names (exchange and queue `orders.notifications`).
    pub fn new(url: impl Into<String>) -> Self {
        Self::named(url, "orders.notifications", "orders.notifications")
    }

    /// Settings for `url` publishing to `exchange`, bound to `queue`; the alternate and
    /// dead-letter exchanges are `<exchange>.unroutable` and `<exchange>.dead`.
    pub fn named(url: impl Into<String>, exchange: &str, queue: &str) -> Self {
        RabbitConfig {
            url: url.into(),
            exchange: exchange.to_owned(),
            queue: queue.to_owned(),
            binding: "order.#".to_owned(),
            alternate_exchange: format!("{exchange}.unroutable"),
            dead_letter_exchange: format!("{exchange}.dead"),
            quorum: true,
            publish_timeout: Duration::from_secs(30),
        }
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), NotifyError> {
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return Err(NotifyError::InvalidConfig(format!(
                "RabbitMQ URL {} must start with amqp:// or amqps://",
                endpoint(&self.url)
            )));
        }
        for (what, name) in [
            ("exchange", &self.exchange),
            ("queue", &self.queue),
            ("alternate exchange", &self.alternate_exchange),
            ("dead-letter exchange", &self.dead_letter_exchange),
        ] {
            if name.is_empty() || name.len() > 255 {
                return Err(NotifyError::InvalidConfig(format!(
                    "RabbitMQ {what} name must be 1..=255 bytes, got {name:?}"
                )));
            }
        }
        if self.exchange == self.alternate_exchange || self.exchange == self.dead_letter_exchange {
            return Err(NotifyError::InvalidConfig(
                "the alternate and dead-letter exchanges must differ from the exchange".to_owned(),
            ));
        }
        if self.publish_timeout.is_zero() {
            return Err(NotifyError::InvalidConfig(
                "publish timeout must be above zero".to_owned(),
            ));
        }
        Ok(())
    }

    /// Declares the exchanges, queues and bindings on `channel`, idempotently. A name already
    /// declared with other arguments fails with the broker's PRECONDITION_FAILED reason.
    pub async fn declare(&self, channel: &Channel) -> Result<(), NotifyError> {
        let failed = |what: String| {
            let ep = endpoint(&self.url);
            move |e: lapin::Error| NotifyError::Declare {
                sink: SINK,
                endpoint: ep,
                what,
                reason: e.to_string(),
            }
        };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let queue_opts = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for side in [&self.alternate_exchange, &self.dead_letter_exchange] {
            channel
                .exchange_declare(
                    side.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(failed(format!("exchange {side}")))?;
            channel
                .queue_declare(
                    side.as_str().into(),
                    queue_opts,
                    self.queue_arguments(false),
                )
                .await
                .map_err(failed(format!("queue {side}")))?;
            channel
                .queue_bind(
                    side.as_str().into(),
                    side.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(failed(format!("binding of queue {side}")))?;
        }
        let mut exchange_args = FieldTable::default();
        exchange_args.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString(self.alternate_exchange.as_str().into()),
        );
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                exchange_args,
            )
            .await
            .map_err(failed(format!("exchange {}", self.exchange)))?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                queue_opts,
                self.queue_arguments(true),
            )
            .await
            .map_err(failed(format!("queue {}", self.queue)))?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed(format!(
                "binding {} of queue {}",
                self.binding, self.queue
            )))?;
        Ok(())
    }

    fn queue_arguments(&self, main: bool) -> FieldTable {
        let mut args = FieldTable::default();
        if self.quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        if main {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.dead_letter_exchange.as_str().into()),
            );
        }
        args
    }
}

/// A live connection and its confirm-mode channel, numbered so that a task seeing a failure
/// drops only the link it used, not one another task has already re-established.
#[derive(Debug)]
struct Link {
    generation: u64,
    current: Option<(Connection, Channel)>,
}

/// Publishes notifications to RabbitMQ with publisher confirms.
#[derive(Debug)]
pub struct RabbitSink {
    cfg: RabbitConfig,
    endpoint: String,
    link: Mutex<Link>,
    counters: Counters,
    cancel: CancellationToken,
}

impl RabbitSink {
    /// Connects, enables confirms and declares the topology. Fails with a clear error when the
    /// server cannot be reached or refuses the credentials; later failures are retried.
    pub async fn connect(
        cfg: RabbitConfig,
        cancel: CancellationToken,
    ) -> Result<Self, NotifyError> {
        cfg.validate()?;
        let ep = endpoint(&cfg.url);
        let (connection, channel) = open(&cfg).await?;
        tracing::info!(endpoint = %ep, exchange = %cfg.exchange, queue = %cfg.queue, quorum = cfg.quorum, "RabbitMQ sink connected, topology declared");
        Ok(RabbitSink {
            endpoint: ep,
            cfg,
            link: Mutex::new(Link {
                generation: 0,
                current: Some((connection, channel)),
            }),
            counters: Counters::new(SINK),
            cancel,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RabbitConfig {
        &self.cfg
    }

    /// The current channel, reconnecting first (with backoff, until `deadline`) when the last
    /// link failed.
    async fn channel(&self, deadline: Instant) -> Result<(u64, Channel), String> {
        let mut link = self.link.lock().await;
        if let Some((connection, channel)) = &link.current {
            if connection.status().connected() && channel.status().connected() {
                return Ok((link.generation, channel.clone()));
            }
            link.current = None;
            link.generation += 1;
        }
        let mut backoff = retry::backoff();
        loop {
            match open(&self.cfg).await {
                Ok((connection, channel)) => {
                    self.counters.reconnected();
                    tracing::info!(endpoint = %self.endpoint, generation = link.generation, "RabbitMQ sink reconnected");
                    link.current = Some((connection, channel.clone()));
                    return Ok((link.generation, channel));
                }
                Err(e) => {
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "RabbitMQ reconnect failed");
                    if !retry::pause(&mut backoff, deadline, &self.cancel).await {
                        return Err(e.to_string());
                    }
                }
            }
        }
    }

    /// Drops the link of `generation` after a failure seen on it.
    async fn broken(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.generation == generation {
            link.current = None;
            link.generation += 1;
        }
    }

    fn properties(n: &Notification) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(tp) = &n.traceparent {
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(tp.as_str().into()),
            );
        }
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(n.event_id.as_str().into())
            .with_type(n.kind.as_str().into())
            .with_app_id("orderstream".into())
            .with_timestamp(u64::try_from(n.occurred_at_micros / 1_000_000).unwrap_or(0))
            .with_headers(headers)
    }

    /// Closes the connection (unconfirmed messages are not waited for).
    pub async fn close(&self) {
        let mut link = self.link.lock().await;
        if let Some((connection, _)) = link.current.take() {
            let _ = connection.close(200, ShortString::from("bye")).await;
        }
    }
}

async fn open(cfg: &RabbitConfig) -> Result<(Connection, Channel), NotifyError> {
    let connect_failed = |e: lapin::Error| NotifyError::Connect {
        sink: SINK,
        endpoint: endpoint(&cfg.url),
        reason: e.to_string(),
    };
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&cfg.url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| NotifyError::Connect {
        sink: SINK,
        endpoint: endpoint(&cfg.url),
        reason: "no answer within 10 s".to_owned(),
    })?
    .map_err(connect_failed)?;
    let channel = connection.create_channel().await.map_err(connect_failed)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(connect_failed)?;
    cfg.declare(&channel).await?;
    Ok((connection, channel))
}

enum Outcome {
    Confirmed,
    Returned(String),
    Nacked,
    Lost(String),
}

impl Sink for RabbitSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn counts(&self) -> NotifyCounts {
        self.counters.snapshot()
    }

    async fn publish(&self, notes: &[Notification]) -> Vec<Result<(), NotifyError>> {
        let deadline = Instant::now() + self.cfg.publish_timeout;
        let bodies: Vec<Vec<u8>> = notes.iter().map(Notification::body).collect();
        let mut results: Vec<Option<Result<(), NotifyError>>> = vec![None; notes.len()];
        let mut pending: Vec<usize> = (0..notes.len()).collect();
        let mut backoff = retry::backoff();
        let mut last_error = String::from("not published");
        let mut last_nacked = false;
        while !pending.is_empty() {
            match self.channel(deadline).await {
                Err(e) => last_error = e,
                Ok((generation, channel)) => {
                    let mut confirms = Vec::with_capacity(pending.len());
                    for &i in &pending {
                        let n = &notes[i];
                        match channel
                            .basic_publish(
                                self.cfg.exchange.as_str().into(),
                                n.routing_key().into(),
                                BasicPublishOptions {
                                    mandatory: true,
                                    immediate: false,
                                },
                                &bodies[i],
                                Self::properties(n),
                            )
                            .await
                        {
                            Ok(confirm) => confirms.push((i, confirm)),
                            Err(e) => {
                                last_error = e.to_string();
                                break;
                            }
                        }
                    }
                    self.counters.published(confirms.len() as u64);
                    let mut retry_later: Vec<usize> =
                        pending.iter().skip(confirms.len()).copied().collect();
                    let mut broken = !retry_later.is_empty();
                    for (i, confirm) in confirms {
                        let outcome = match tokio::time::timeout_at(deadline, confirm).await {
                            Err(_) => {
                                Outcome::Lost("no confirm before the publish timeout".to_owned())
                            }
                            Ok(Err(e)) => Outcome::Lost(e.to_string()),
                            Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => {
                                Outcome::Confirmed
                            }
                            Ok(Ok(Confirmation::Ack(Some(returned)))) => Outcome::Returned(
                                format!("{} {}", returned.reply_code, returned.reply_text),
                            ),
                            Ok(Ok(Confirmation::Nack(_))) => Outcome::Nacked,
                        };
                        match outcome {
                            Outcome::Confirmed => {
                                self.counters.confirmed(1);
                                results[i] = Some(Ok(()));
                            }
                            Outcome::Returned(reply) => {
                                self.counters.returned();
                                tracing::warn!(event_id = %notes[i].event_id, routing_key = %notes[i].routing_key(), %reply, "notification returned unroutable");
                                results[i] = Some(Err(NotifyError::Unroutable {
                                    sink: SINK,
                                    endpoint: self.endpoint.clone(),
                                    event_id: notes[i].event_id.clone(),
                                    route: format!(
                                        "exchange {}, routing key {}",
                                        self.cfg.exchange,
                                        notes[i].routing_key()
                                    ),
                                    reply,
                                }));
                            }
                            Outcome::Nacked => {
                                self.counters.nacked();
                                last_nacked = true;
                                retry_later.push(i);
                            }
                            Outcome::Lost(e) => {
                                last_error = e;
                                last_nacked = false;
                                broken = true;
                                retry_later.push(i);
                            }
                        }
                    }
                    if broken {
                        tracing::warn!(endpoint = %self.endpoint, error = %last_error, unconfirmed = retry_later.len(), "RabbitMQ link failed: reconnecting and republishing");
                        self.broken(generation).await;
                    }
                    retry_later.sort_unstable();
                    pending = retry_later;
                }
            }
            if pending.is_empty() || !retry::pause(&mut backoff, deadline, &self.cancel).await {
                break;
            }
        }
        for i in pending {
            results[i] = Some(Err(if last_nacked {
                NotifyError::Nacked {
                    sink: SINK,
                    endpoint: self.endpoint.clone(),
                    event_id: notes[i].event_id.clone(),
                }
            } else {
                NotifyError::Unavailable {
                    sink: SINK,
                    endpoint: self.endpoint.clone(),
                    event_id: notes[i].event_id.clone(),
                    reason: last_error.clone(),
                }
            }));
        }
        crate::settled(results, SINK, &self.endpoint, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_settings_are_refused() {
        let cfg = RabbitConfig::new("amqp://u:p@127.0.0.1:5672/%2f");
        cfg.validate().unwrap();
        assert!(cfg.quorum);
        let mut bad = cfg.clone();
        bad.url = "http://127.0.0.1:5672".to_owned();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("amqp://"), "{e}");
        let mut bad = cfg.clone();
        bad.url = "localhost:5672".to_owned();
        assert!(bad.validate().is_err());
        let mut bad = cfg.clone();
        bad.alternate_exchange.clone_from(&bad.exchange);
        assert!(bad.validate().is_err());
        let mut bad = cfg;
        bad.publish_timeout = Duration::ZERO;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_refused_url_never_shows_its_password() {
        let mut cfg = RabbitConfig::new("amqpx://user:s3cret@host:5672/%2f");
        let e = cfg.validate().unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        cfg.url = "amqp://user:s3cret@host/%2f".to_owned();
        cfg.queue = String::new();
        assert!(!cfg.validate().unwrap_err().to_string().contains("s3cret"));
    }

    #[test]
    fn queues_carry_their_type_and_the_main_one_its_dead_letter_exchange() {
        let cfg = RabbitConfig::new("amqp://127.0.0.1/%2f");
        let main = cfg.queue_arguments(true);
        let side = cfg.queue_arguments(false);
        let has = |t: &FieldTable, k: &str| t.contains_key(k);
        assert!(has(&main, "x-queue-type") && has(&main, "x-dead-letter-exchange"));
        assert!(has(&side, "x-queue-type") && !has(&side, "x-dead-letter-exchange"));
        let mut classic = cfg;
        classic.quorum = false;
        assert!(!has(&classic.queue_arguments(true), "x-queue-type"));
    }
}
