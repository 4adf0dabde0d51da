//! Typed producer configuration, its defaults and its start-up validation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::ConfigError;

/// The librdkafka partitioner the producer always uses: murmur2 on the key bytes, exactly like
/// the Java client's `BuiltInPartitioner.partitionForKey` (random partition for a *null* key).
pub const PARTITIONER: &str = "murmur2_random";

/// Acknowledgement level (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Acks {
    /// `acks=all`: the leader waits for the full in-sync replica set. Required by idempotence.
    #[default]
    All,
    /// `acks=1`: the leader only. Refused while idempotence is on.
    Leader,
    /// `acks=0`: fire and forget. Refused while idempotence is on.
    None,
}

impl Acks {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// Batch compression codec (`compression.type`). zstd is not compiled into this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// lz4 (default): cheap on CPU, good ratio for Avro order events.
    #[default]
    Lz4,
    /// No compression.
    None,
    /// gzip: best ratio, most CPU.
    Gzip,
    /// snappy.
    Snappy,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lz4" => Ok(Compression::Lz4),
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            other => Err(ConfigError::Invalid {
                field: "compression",
                reason: format!(
                    "unknown codec `{other}` (expected lz4, none, gzip or snappy; zstd is not built in)"
                ),
            }),
        }
    }
}

/// Exponential retry backoff used by librdkafka between produce retries
/// (`retry.backoff.ms` .. `retry.backoff.max.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// First backoff. Default 100 ms.
    pub initial: Duration,
    /// Upper bound of the exponential backoff. Default 1 s.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }
}

/// Producer configuration. Every field maps to one librdkafka property (named in its doc) except
/// `startup_timeout`, which bounds [`crate::RawProducer::new`]'s metadata check.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// `bootstrap.servers`. Default `127.0.0.1:9092`. Must not be empty.
    pub bootstrap_servers: String,
    /// `client.id`. Default `orderstream-producer`.
    pub client_id: String,
    /// `enable.idempotence`. Default `true` (acks=all, in-flight ≤ 5, no duplicates or
    /// reordering per partition within one producer session).
    pub enable_idempotence: bool,
    /// `acks`. Default [`Acks::All`]; anything else is refused while idempotence is on.
    pub acks: Acks,
    /// `max.in.flight.requests.per.connection`. Default 5; more is refused while idempotent.
    pub max_in_flight: u32,
    /// `delivery.timeout.ms` (alias `message.timeout.ms`): how long librdkafka keeps retrying a
    /// message before reporting it timed out (*possibly persisted*). Default 30 s. Must be
    /// ≥ `linger + request_timeout` (librdkafka's rule).
    pub delivery_timeout: Duration,
    /// `request.timeout.ms`: how long the producer waits for the broker's ack of a request.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// `linger.ms`: how long to wait to fill a batch. Default 5 ms. Zero is allowed.
    pub linger: Duration,
    /// `batch.size`: maximum bytes of one message batch. Default 1 000 000.
    pub batch_size: u32,
    /// `batch.num.messages`: maximum records in one batch. Default 10 000.
    pub batch_num_messages: u32,
    /// `compression.type`. Default [`Compression::Lz4`].
    pub compression: Compression,
    /// `message.max.bytes`: largest request/record the client will send; bigger records fail
    /// permanently with `MessageSizeTooLarge`. Default 1 000 000.
    pub message_max_bytes: u32,
    /// `queue.buffering.max.messages`: local queue bound in records; when full, `send` waits
    /// (backpressure). Default 100 000.
    pub queue_buffering_max_messages: u32,
    /// `queue.buffering.max.kbytes`: local queue bound in KiB. Default 1 048 576 (1 GiB).
    pub queue_buffering_max_kbytes: u32,
    /// `retry.backoff.ms` / `retry.backoff.max.ms`. Default 100 ms / 1 s.
    pub retry_backoff: RetryBackoff,
    /// Bound on start-up: connecting and fetching the topic's metadata. Default 10 s.
    /// Not a librdkafka property.
    pub startup_timeout: Duration,
    /// Escape hatch: extra librdkafka properties. A key that a typed field sets (or one of its
    /// aliases, or `partitioner`) is refused at validation with an error naming it.
    pub extra: BTreeMap<String, String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            client_id: "orderstream-producer".to_owned(),
            enable_idempotence: true,
            acks: Acks::All,
            max_in_flight: 5,
            delivery_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            batch_size: 1_000_000,
            batch_num_messages: 10_000,
            compression: Compression::Lz4,
            message_max_bytes: 1_000_000,
            queue_buffering_max_messages: 100_000,
            queue_buffering_max_kbytes: 1_048_576,
            retry_backoff: RetryBackoff::default(),
            startup_timeout: Duration::from_secs(10),
            extra: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `extra` may hold credentials (sasl.password …): print keys only.
        f.debug_struct("ProducerConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("enable_idempotence", &self.enable_idempotence)
            .field("acks", &self.acks)
            .field("max_in_flight", &self.max_in_flight)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("linger", &self.linger)
            .field("batch_size", &self.batch_size)
            .field("batch_num_messages", &self.batch_num_messages)
            .field("compression", &self.compression)
            .field("message_max_bytes", &self.message_max_bytes)
            .field(
                "queue_buffering_max_messages",
                &self.queue_buffering_max_messages,
            )
            .field(
                "queue_buffering_max_kbytes",
                &self.queue_buffering_max_kbytes,
            )
            .field("retry_backoff", &self.retry_backoff)
            .field("startup_timeout", &self.startup_timeout)
            // Values may be credentials: show which keys are set, never their values.
            .field(
                "extra",
                &self
                    .extra
                    .keys()
                    .map(|k| (k, "***"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

/// librdkafka keys the typed fields own, with the field that owns them (aliases included).
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("metadata.broker.list", "bootstrap_servers"),
    ("client.id", "client_id"),
    ("enable.idempotence", "enable_idempotence"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("max.in.flight.requests.per.connection", "max_in_flight"),
    ("max.in.flight", "max_in_flight"),
    ("delivery.timeout.ms", "delivery_timeout"),
    ("message.timeout.ms", "delivery_timeout"),
    ("request.timeout.ms", "request_timeout"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("batch.size", "batch_size"),
    ("batch.num.messages", "batch_num_messages"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("message.max.bytes", "message_max_bytes"),
    (
        "queue.buffering.max.messages",
        "queue_buffering_max_messages",
    ),
    ("queue.buffering.max.kbytes", "queue_buffering_max_kbytes"),
    ("retry.backoff.ms", "retry_backoff"),
    ("retry.backoff.max.ms", "retry_backoff"),
    (
        "partitioner",
        "(fixed to murmur2_random for Java compatibility)",
    ),
    (
        "allow.auto.create.topics",
        "(fixed to false: topics come from topology.toml)",
    ),
];

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

impl ProducerConfig {
    /// Checks the configuration before anything connects. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::EmptyBootstrap);
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "client_id",
                reason: "must not be empty".to_owned(),
            });
        }
        if self.enable_idempotence && self.acks != Acks::All {
            return Err(ConfigError::IdempotenceNeedsAcksAll { acks: self.acks });
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid {
                field: "max_in_flight",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.enable_idempotence && self.max_in_flight > 5 {
            return Err(ConfigError::IdempotenceMaxInFlight {
                max_in_flight: self.max_in_flight,
            });
        }
        for (field, value) in [
            ("delivery_timeout", self.delivery_timeout),
            ("request_timeout", self.request_timeout),
            ("startup_timeout", self.startup_timeout),
            ("retry_backoff.initial", self.retry_backoff.initial),
            ("retry_backoff.max", self.retry_backoff.max),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if self.delivery_timeout < self.linger + self.request_timeout {
            return Err(ConfigError::DeliveryTimeoutTooShort {
                delivery_timeout: self.delivery_timeout,
                linger: self.linger,
                request_timeout: self.request_timeout,
            });
        }
        if self.retry_backoff.initial > self.retry_backoff.max {
            return Err(ConfigError::Invalid {
                field: "retry_backoff",
                reason: format!(
                    "initial {:?} exceeds max {:?}",
                    self.retry_backoff.initial, self.retry_backoff.max
                ),
            });
        }
        for (field, value) in [
            ("batch_size", self.batch_size),
            ("batch_num_messages", self.batch_num_messages),
            ("message_max_bytes", self.message_max_bytes),
            (
                "queue_buffering_max_messages",
                self.queue_buffering_max_messages,
            ),
            (
                "queue_buffering_max_kbytes",
                self.queue_buffering_max_kbytes,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be greater than zero".to_owned(),
                });
            }
        }
        for key in self.extra.keys() {
            let normalized = key.trim().to_ascii_lowercase();
            if let Some((_, field)) = RESERVED.iter().find(|(k, _)| *k == normalized) {
                return Err(ConfigError::ExtraConflict {
                    key: key.clone(),
                    field,
                });
            }
        }
        Ok(())
    }

    /// The librdkafka client configuration (after [`ProducerConfig::validate`]).
    pub fn to_client_config(&self) -> Result<ClientConfig, ConfigError> {
        self.validate()?;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("enable.idempotence", self.enable_idempotence.to_string())
            .set("acks", self.acks.as_librdkafka())
            .set(
                "max.in.flight.requests.per.connection",
                self.max_in_flight.to_string(),
            )
            .set("delivery.timeout.ms", ms(self.delivery_timeout))
            .set("request.timeout.ms", ms(self.request_timeout))
            .set("linger.ms", ms(self.linger))
            .set("batch.size", self.batch_size.to_string())
            .set("batch.num.messages", self.batch_num_messages.to_string())
            .set("compression.type", self.compression.as_librdkafka())
            .set("message.max.bytes", self.message_max_bytes.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_buffering_max_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.queue_buffering_max_kbytes.to_string(),
            )
            .set("retry.backoff.ms", ms(self.retry_backoff.initial))
            .set("retry.backoff.max.ms", ms(self.retry_backoff.max))
            .set("partitioner", PARTITIONER)
            .set("allow.auto.create.topics", "false");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_idempotent() {
        let c = ProducerConfig::default();
        c.validate().expect("defaults valid");
        let cc = c.to_client_config().expect("client config");
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("partitioner"), Some("murmur2_random"));
        assert_eq!(cc.get("compression.type"), Some("lz4"));
        assert_eq!(cc.get("linger.ms"), Some("5"));
    }

    #[test]
    fn refuses_acks_other_than_all_when_idempotent() {
        for acks in [Acks::Leader, Acks::None] {
            let c = ProducerConfig {
                acks,
                ..Default::default()
            };
            let e = c.validate().expect_err("must refuse");
            assert!(
                matches!(e, ConfigError::IdempotenceNeedsAcksAll { .. }),
                "{e}"
            );
            // Without idempotence the same acks are accepted.
            let c = ProducerConfig {
                acks,
                enable_idempotence: false,
                ..Default::default()
            };
            c.validate().expect("non-idempotent acks=1/0 allowed");
        }
    }

    #[test]
    fn refuses_in_flight_above_five_when_idempotent() {
        let c = ProducerConfig {
            max_in_flight: 6,
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::IdempotenceMaxInFlight { max_in_flight: 6 })
        ));
        let c = ProducerConfig {
            max_in_flight: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn refuses_zero_timeouts() {
        let mut c = ProducerConfig {
            delivery_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ZeroDuration {
                field: "delivery_timeout"
            })
        ));
        c.delivery_timeout = Duration::from_secs(30);
        c.request_timeout = Duration::ZERO;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ZeroDuration {
                field: "request_timeout"
            })
        ));
    }

    #[test]
    fn refuses_delivery_timeout_below_linger_plus_request() {
        let c = ProducerConfig {
            delivery_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            ..Default::default()
        };
        let e = c.validate().expect_err("must refuse");
        assert!(matches!(e, ConfigError::DeliveryTimeoutTooShort { .. }));
        assert!(e.to_string().contains("delivery_timeout"), "{e}");
    }

    #[test]
    fn refuses_empty_bootstrap() {
        let c = ProducerConfig {
            bootstrap_servers: "  ".into(),
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::EmptyBootstrap)));
    }

    #[test]
    fn extra_conflicts_loudly_naming_the_key() {
        for key in [
            "acks",
            "enable.idempotence",
            "message.timeout.ms",
            "queue.buffering.max.ms",
            "Linger.MS",
            "partitioner",
            "compression.codec",
        ] {
            let mut c = ProducerConfig::default();
            c.extra.insert(key.to_owned(), "1".to_owned());
            let e = c.validate().expect_err(key);
            let msg = e.to_string();
            assert!(msg.contains(key), "error must name `{key}`: {msg}");
        }
        let mut c = ProducerConfig::default();
        c.extra.insert("statistics.interval.ms".into(), "0".into());
        let cc = c.to_client_config().expect("unreserved extra is fine");
        assert_eq!(cc.get("statistics.interval.ms"), Some("0"));
    }

    #[test]
    fn compression_parses() {
        assert_eq!("LZ4".parse::<Compression>().ok(), Some(Compression::Lz4));
        assert!("zstd".parse::<Compression>().is_err());
    }

    #[test]
    fn debug_hides_extra_values() {
        let mut c = ProducerConfig::default();
        c.extra.insert("sasl.password".into(), "hunter2".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
