//! Settings of a transactional stage and the librdkafka properties they become.

use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::BackoffConfig;

/// Settings of one member of a transactional stage (see [`crate::run_transactional`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct StageConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Consumer group of the stage's members.
    pub group_id: String,
    /// Topic the stage reads (with `isolation.level=read_committed`).
    pub source: String,
    /// Topic the transform's outputs go to.
    pub output: String,
    /// Topic for records the transform rejects permanently, written in the same transaction
    /// as the source offsets (so a crash can neither lose nor duplicate a dead letter).
    pub dead_letter: String,
    /// `transactional.id` of this member: stable across restarts of the same member (a
    /// restart then aborts its predecessor's open transaction at once) and unique among the
    /// members alive at one time (a second producer with the same id fences the first).
    pub transactional_id: String,
    /// `true` (the point of the stage): outputs, dead letters and offsets commit in one Kafka
    /// transaction. `false`: the same loop at least once (an idempotent producer flushed before
    /// a plain offset commit; a crash in between repeats outputs): the baseline that shows
    /// what transactions cost.
    pub transactional: bool,
    /// At most this many records per transaction.
    pub max_batch_records: usize,
    /// A transaction is committed at the latest this long after its first record was polled.
    pub commit_interval: Duration,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction left open longer (e.g. by
    /// a paused member). Must exceed `commit_interval` + `call_timeout`.
    pub transaction_timeout: Duration,
    /// `session.timeout.ms` of the group membership.
    pub session_timeout: Duration,
    /// Bound on each transactional call (init, send offsets, commit, abort).
    pub call_timeout: Duration,
    /// Waits between attempts of a batch after a transient failure or an aborted transaction.
    pub backoff: BackoffConfig,
    /// Extra librdkafka properties of the consumer (e.g. security); keys that would commit
    /// outside transactions or read uncommitted data are refused.
    pub extra_consumer: Vec<(String, String)>,
    /// Extra librdkafka properties of the producer (e.g. security); keys that would weaken
    /// the transactional producer are refused.
    pub extra_producer: Vec<(String, String)>,
}

/// Invalid stage settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StageConfigError {
    /// A required setting is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The stage would read its own output.
    #[error("output topic `{0}` is the source topic: the stage would read its own output")]
    OutputIsSource(String),
    /// A numeric setting is out of range.
    #[error("{field}: {message}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// An extra property the stage sets itself.
    #[error("{client} property `{key}` is managed by the stage and cannot be overridden")]
    ReservedProperty {
        /// `consumer` or `producer`.
        client: &'static str,
        /// The refused key.
        key: String,
    },
}

/// Consumer keys that would commit outside transactions or see aborted records.
const RESERVED_CONSUMER: [&str; 4] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "group.id",
];
/// Producer keys that would weaken or replace the transactional producer.
const RESERVED_PRODUCER: [&str; 5] = [
    "transactional.id",
    "enable.idempotence",
    "acks",
    "transaction.timeout.ms",
    "enable.gapless.guarantee",
];

impl StageConfig {
    /// Defaults for everything but the names.
    pub fn new(
        bootstrap: impl Into<String>,
        group_id: impl Into<String>,
        source: impl Into<String>,
        output: impl Into<String>,
        dead_letter: impl Into<String>,
        transactional_id: impl Into<String>,
    ) -> Self {
        StageConfig {
            bootstrap: bootstrap.into(),
            group_id: group_id.into(),
            source: source.into(),
            output: output.into(),
            dead_letter: dead_letter.into(),
            transactional_id: transactional_id.into(),
            transactional: true,
            max_batch_records: 1000,
            commit_interval: Duration::from_millis(100),
            transaction_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            extra_consumer: Vec::new(),
            extra_producer: Vec::new(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), StageConfigError> {
        for (name, v) in [
            ("bootstrap", &self.bootstrap),
            ("group_id", &self.group_id),
            ("source", &self.source),
            ("output", &self.output),
            ("dead_letter", &self.dead_letter),
            ("transactional_id", &self.transactional_id),
        ] {
            if v.trim().is_empty() {
                return Err(StageConfigError::Empty(name));
            }
        }
        if self.output == self.source || self.dead_letter == self.source {
            return Err(StageConfigError::OutputIsSource(self.source.clone()));
        }
        let range = |field: &'static str, message: String| {
            Err(StageConfigError::OutOfRange { field, message })
        };
        if !(1..=100_000).contains(&self.max_batch_records) {
            return range("max_batch_records", "must be 1..=100000".into());
        }
        if self.commit_interval.is_zero() || self.call_timeout.is_zero() {
            return range("commit_interval / call_timeout", "must be positive".into());
        }
        if self.transaction_timeout <= self.commit_interval + self.call_timeout {
            return range(
                "transaction_timeout",
                format!(
                    "{:?} must exceed commit_interval + call_timeout ({:?})",
                    self.transaction_timeout,
                    self.commit_interval + self.call_timeout
                ),
            );
        }
        if self.transaction_timeout > Duration::from_secs(900) {
            return range(
                "transaction_timeout",
                "must be at most 15 min (the broker's default transaction.max.timeout.ms)".into(),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.session_timeout) {
            return range("session_timeout", "must be 1 s..=300 s".into());
        }
        for (client, extras, reserved) in [
            ("consumer", &self.extra_consumer, &RESERVED_CONSUMER[..]),
            ("producer", &self.extra_producer, &RESERVED_PRODUCER[..]),
        ] {
            if let Some((k, _)) = extras.iter().find(|(k, _)| reserved.contains(&k.as_str())) {
                return Err(StageConfigError::ReservedProperty {
                    client,
                    key: k.clone(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 3)
                    .clamp(1, 1000)
                    .to_string(),
            )
            // see member/client.rs: the default 1 s makes a slower-than-fetch loop idle
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in &self.extra_consumer {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random");
        if self.transactional {
            c.set("transactional.id", &self.transactional_id).set(
                "transaction.timeout.ms",
                self.transaction_timeout.as_millis().to_string(),
            );
        }
        for (k, v) in &self.extra_producer {
            c.set(k, v);
        }
        c
    }
}

impl std::fmt::Debug for StageConfig {
    // Extra properties may hold secrets (sasl.password, ssl.key.password): names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("StageConfig")
            .field("bootstrap", &self.bootstrap)
            .field("group_id", &self.group_id)
            .field("source", &self.source)
            .field("output", &self.output)
            .field("dead_letter", &self.dead_letter)
            .field("transactional_id", &self.transactional_id)
            .field("transactional", &self.transactional)
            .field("max_batch_records", &self.max_batch_records)
            .field("commit_interval", &self.commit_interval)
            .field("transaction_timeout", &self.transaction_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("backoff", &self.backoff)
            .field("extra_consumer", &keys(&self.extra_consumer))
            .field("extra_producer", &keys(&self.extra_producer))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StageConfig {
        StageConfig::new("b:9092", "g", "in", "out", "dlq", "g-1")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(cfg().validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_settings_with_their_name() {
        let mut c = cfg();
        c.output = "in".into();
        assert!(matches!(
            c.validate(),
            Err(StageConfigError::OutputIsSource(_))
        ));
        let mut c = cfg();
        c.transactional_id = " ".into();
        assert_eq!(
            c.validate(),
            Err(StageConfigError::Empty("transactional_id"))
        );
        let mut c = cfg();
        c.transaction_timeout = Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(StageConfigError::OutOfRange {
                field: "transaction_timeout",
                ..
            })
        ));
        let mut c = cfg();
        c.extra_consumer = vec![("enable.auto.commit".into(), "true".into())];
        assert!(matches!(
            c.validate(),
            Err(StageConfigError::ReservedProperty { .. })
        ));
        let mut c = cfg();
        c.extra_producer = vec![("acks".into(), "1".into())];
        assert!(matches!(
            c.validate(),
            Err(StageConfigError::ReservedProperty { .. })
        ));
    }

    #[test]
    fn debug_names_extra_keys_without_values() {
        let mut c = cfg();
        c.extra_producer = vec![("sasl.password".into(), "hunter2".into())];
        let shown = format!("{c:?}");
        assert!(
            shown.contains("sasl.password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
