//! Typed consumer configuration. Every field documents its default; [`ConsumerConfig::validate`]
//! runs at start-up.

use std::time::Duration;

/// How records of one partition may run concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OrderingMode {
    /// Same key: one at a time, in offset order; different keys in parallel (bounded by
    /// [`ConsumerConfig::max_concurrency`]). Records without a key are independent of each other.
    /// Default.
    #[default]
    Key,
    /// Strictly one record at a time per partition, in offset order.
    Partition,
}

/// Group membership protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// The classic protocol with a client-side assignor; `partition.assignment.strategy` is the
    /// given value. Default: `cooperative-sticky`.
    Classic {
        /// Value of `partition.assignment.strategy` (e.g. `cooperative-sticky`, `range`).
        assignment_strategy: String,
    },
    /// KIP-848 (`group.protocol=consumer`): broker-side assignment; the session timeout is the
    /// broker's `group.consumer.session.timeout.ms` (validated against
    /// [`ConsumerConfig::session_timeout`], which should mirror it).
    Consumer,
}

impl Default for GroupProtocol {
    fn default() -> Self {
        GroupProtocol::Classic {
            assignment_strategy: "cooperative-sticky".to_owned(),
        }
    }
}

/// The three topics a member works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Source topic (orders). No default.
    pub source: String,
    /// Retry topic (records parked after the in-place retry budget). No default.
    pub retry: String,
    /// Dead-letter topic. No default.
    pub dead_letter: String,
}

impl Topics {
    /// Convenience constructor.
    pub fn new(
        source: impl Into<String>,
        retry: impl Into<String>,
        dead_letter: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            retry: retry.into(),
            dead_letter: dead_letter.into(),
        }
    }
}

/// Exponential backoff with jitter for in-place retries of transient failures.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the second attempt. Default 100 ms.
    pub initial: Duration,
    /// Cap of a single delay. Default 2 s.
    pub max: Duration,
    /// Growth factor per attempt (≥ 1.0). Default 2.0.
    pub multiplier: f64,
    /// Jitter fraction in `[0, 1]`: each delay is scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]` (then capped by `max`). Default 0.2.
    pub jitter: f64,
    /// Total attempts in place, including the first (≥ 1). Default 3.
    pub max_attempts: u32,
    /// Cap on the total time spent retrying one record in place; must stay well below
    /// `max.poll.interval.ms` (validated: at most half of it). Default 10 s.
    pub max_elapsed: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 3,
            max_elapsed: Duration::from_secs(10),
        }
    }
}

impl BackoffConfig {
    /// The delay after failed attempt number `attempt` (1-based), before jitter is applied.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let capped = secs.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped.max(0.0))
    }

    /// The delay after failed attempt `attempt` (1-based) with jitter from `unit` in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * factor).clamp(0.0, self.max.as_secs_f64()))
    }

    /// The delay after failed attempt `attempt` (1-based), jittered with the thread RNG.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }

    fn validate(&self, max_poll_interval: Duration) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid("backoff.max_attempts", "must be >= 1"));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(ConfigError::invalid("backoff.multiplier", "must be >= 1.0"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::invalid("backoff.jitter", "must be in [0, 1]"));
        }
        if self.initial > self.max {
            return Err(ConfigError::invalid(
                "backoff.initial",
                "must be <= backoff.max",
            ));
        }
        if self.max_elapsed * 2 > max_poll_interval {
            return Err(ConfigError::invalid(
                "backoff.max_elapsed",
                format!(
                    "{:?} must be at most half of max.poll.interval.ms ({:?})",
                    self.max_elapsed, max_poll_interval
                ),
            ));
        }
        Ok(())
    }
}

/// Configuration of one group member. Build with `ConsumerConfig::new(..)` and struct update.
/// `Debug` shows the keys of the extra librdkafka properties, never their values (they hold
/// `sasl.password` when the cluster is secured).
#[derive(Clone)]
pub struct ConsumerConfig {
    /// `bootstrap.servers`. No default.
    pub bootstrap: String,
    /// `group.id`. No default.
    pub group_id: String,
    /// Topic names (source, retry, dead letter). No default.
    pub topics: Topics,
    /// Group protocol. Default: classic with `cooperative-sticky`.
    pub group_protocol: GroupProtocol,
    /// `session.timeout.ms` (classic) / the broker's consumer-group session timeout (KIP-848).
    /// Default 45 s.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`. Default 300 s.
    pub max_poll_interval: Duration,
    /// Ordering mode inside a partition. Default [`OrderingMode::Key`].
    pub ordering: OrderingMode,
    /// Records of one partition in work at once (handler calls, in-place backoff sleeps and
    /// retry/dead-letter sends; different keys only, see [`OrderingMode`]) (≥ 1). Partitions
    /// run in parallel, each on its own owner task. Default 16.
    pub max_concurrency: usize,
    /// Offset window per partition: from the lowest unfinished record to the highest one handed
    /// to the partition's owner. When reached (e.g. behind one stuck record) the partition is
    /// paused; it resumes when the window is half empty (≥ 1). Default 10 000: at a million
    /// records a second a smaller window ends poll bursts early and idles the poll thread.
    pub max_in_flight_per_partition: usize,
    /// Memory budget of this member in bytes (≥ 4 MiB): sets librdkafka's prefetch and the
    /// in-flight window together, see [`crate::MemoryBudget`]. Default 64 MiB.
    pub memory_budget: usize,
    /// Records per call of a [`BatchProcessor`](crate::BatchProcessor) at most (≥ 1). Default 500.
    pub max_batch_records: usize,
    /// Consumer group of the retry topic. The retry topic is consumed by a second consumer in
    /// its own group so that each topic is balanced over the members on its own (a shared group
    /// balances the *total* of both topics' partitions and can leave a member with retry
    /// partitions only). Default: `<group_id>.retry`.
    pub retry_group_id: Option<String>,
    /// Async commit at least this often while there is progress. Default 1 s.
    pub commit_interval: Duration,
    /// Async commit once this many records completed since the last commit. Default 1000.
    pub commit_every: usize,
    /// On revoke, how long to wait for in-flight work of the revoked partitions before the sync
    /// commit. Must be < `session_timeout` (validated). Default 10 s.
    pub revoke_drain_timeout: Duration,
    /// On shutdown, how long to wait for in-flight work before the final sync commit. Default 15 s.
    pub shutdown_timeout: Duration,
    /// How long the final leave/close may take before the consumer is abandoned on a detached
    /// thread (a forced close). Default 10 s.
    pub close_timeout: Duration,
    /// In-place retry policy for transient failures.
    pub backoff: BackoffConfig,
    /// Send records that exhausted the in-place budget to the retry topic (else straight to the
    /// dead-letter topic). Default true.
    pub retry_topic_enabled: bool,
    /// How many times a record may be parked in the retry topic because of its own failures
    /// before it goes to the dead-letter topic. Default 3.
    pub max_retry_topic_attempts: u32,
    /// Delay before a parked record is processed again: `retry_topic_delay * 2^(round-1)`,
    /// capped by `retry_topic_max_delay`. Default 1 s.
    pub retry_topic_delay: Duration,
    /// Cap of the retry-topic delay. Default 60 s.
    pub retry_topic_max_delay: Duration,
    /// This member also consumes the retry topic (subscribes to source and retry). Default true.
    pub consume_retry_topic: bool,
    /// `message.timeout.ms` of the retry/dead-letter producer. Default 30 s.
    pub produce_timeout: Duration,
    /// `fetch.wait.max.ms`: how long the broker holds a fetch for partitions without data. After
    /// a backpressure resume the next fetch waits for the outstanding long-poll (one fetch in
    /// flight per broker), so this bounds the resume stall. Default 100 ms (librdkafka: 500 ms).
    pub fetch_wait_max: Duration,
    /// `statistics.interval.ms` (feeds the lag-in-records gauge). Default 5 s; zero disables.
    pub statistics_interval: Duration,
    /// Extra librdkafka properties applied last to the consumer (escape hatch). Default empty.
    pub extra_consumer: Vec<(String, String)>,
    /// Extra librdkafka properties applied last to the producer. Default empty.
    pub extra_producer: Vec<(String, String)>,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys =
            |extra: &[(String, String)]| extra.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("ConsumerConfig")
            .field("bootstrap", &self.bootstrap)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("group_protocol", &self.group_protocol)
            .field("session_timeout", &self.session_timeout)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("ordering", &self.ordering)
            .field("max_concurrency", &self.max_concurrency)
            .field(
                "max_in_flight_per_partition",
                &self.max_in_flight_per_partition,
            )
            .field("memory_budget", &self.memory_budget)
            .field("max_batch_records", &self.max_batch_records)
            .field("retry_group_id", &self.retry_group_id)
            .field("commit_interval", &self.commit_interval)
            .field("commit_every", &self.commit_every)
            .field("revoke_drain_timeout", &self.revoke_drain_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("backoff", &self.backoff)
            .field("retry_topic_enabled", &self.retry_topic_enabled)
            .field("max_retry_topic_attempts", &self.max_retry_topic_attempts)
            .field("retry_topic_delay", &self.retry_topic_delay)
            .field("retry_topic_max_delay", &self.retry_topic_max_delay)
            .field("consume_retry_topic", &self.consume_retry_topic)
            .field("produce_timeout", &self.produce_timeout)
            .field("fetch_wait_max", &self.fetch_wait_max)
            .field("statistics_interval", &self.statistics_interval)
            .field("extra_consumer", &keys(&self.extra_consumer))
            .field("extra_producer", &keys(&self.extra_producer))
            .finish()
    }
}

impl ConsumerConfig {
    /// A configuration with every default and the three required values.
    pub fn new(bootstrap: impl Into<String>, group_id: impl Into<String>, topics: Topics) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            group_id: group_id.into(),
            topics,
            group_protocol: GroupProtocol::default(),
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            ordering: OrderingMode::default(),
            max_concurrency: 16,
            max_in_flight_per_partition: 10_000,
            memory_budget: 64 << 20,
            max_batch_records: 500,
            retry_group_id: None,
            commit_interval: Duration::from_secs(1),
            commit_every: 1000,
            revoke_drain_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            retry_topic_enabled: true,
            max_retry_topic_attempts: 3,
            retry_topic_delay: Duration::from_secs(1),
            retry_topic_max_delay: Duration::from_secs(60),
            consume_retry_topic: true,
            produce_timeout: Duration::from_secs(30),
            fetch_wait_max: Duration::from_millis(100),
            statistics_interval: Duration::from_secs(5),
            extra_consumer: Vec::new(),
            extra_producer: Vec::new(),
        }
    }

    /// Checks the invariants the run loop relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap.trim().is_empty() {
            return Err(ConfigError::invalid("bootstrap", "must not be empty"));
        }
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("group_id", "must not be empty"));
        }
        for (name, t) in [
            ("topics.source", &self.topics.source),
            ("topics.retry", &self.topics.retry),
            ("topics.dead_letter", &self.topics.dead_letter),
        ] {
            if t.trim().is_empty() {
                return Err(ConfigError::invalid(name, "must not be empty"));
            }
        }
        if self.topics.source == self.topics.retry
            || self.topics.source == self.topics.dead_letter
            || self.topics.retry == self.topics.dead_letter
        {
            return Err(ConfigError::invalid(
                "topics",
                "the three topics must differ",
            ));
        }
        if self.max_concurrency == 0 {
            return Err(ConfigError::invalid("max_concurrency", "must be >= 1"));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(ConfigError::invalid(
                "max_in_flight_per_partition",
                "must be >= 1",
            ));
        }
        if self.memory_budget < MIN_MEMORY_BUDGET {
            return Err(ConfigError::invalid(
                "memory_budget",
                format!("must be >= {MIN_MEMORY_BUDGET} bytes (4 MiB)"),
            ));
        }
        if self.max_batch_records == 0 {
            return Err(ConfigError::invalid("max_batch_records", "must be >= 1"));
        }
        if self
            .retry_group_id
            .as_deref()
            .is_some_and(|g| g.trim().is_empty() || g == self.group_id)
        {
            return Err(ConfigError::invalid(
                "retry_group_id",
                "must be non-empty and differ from group_id",
            ));
        }
        for (key, _) in &self.extra_consumer {
            if let Some(why) = refused_consumer_key(key) {
                return Err(ConfigError::invalid(
                    "extra_consumer",
                    format!("`{key}` cannot be set: {why}"),
                ));
            }
        }
        if self.commit_every == 0 {
            return Err(ConfigError::invalid("commit_every", "must be >= 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(ConfigError::invalid("commit_interval", "must be > 0"));
        }
        if self.revoke_drain_timeout >= self.session_timeout {
            return Err(ConfigError::invalid(
                "revoke_drain_timeout",
                format!(
                    "{:?} must be below session_timeout {:?}",
                    self.revoke_drain_timeout, self.session_timeout
                ),
            ));
        }
        if self.revoke_drain_timeout >= self.max_poll_interval {
            return Err(ConfigError::invalid(
                "revoke_drain_timeout",
                "must be below max_poll_interval",
            ));
        }
        if let GroupProtocol::Classic {
            assignment_strategy,
        } = &self.group_protocol
            && assignment_strategy.trim().is_empty()
        {
            return Err(ConfigError::invalid(
                "group_protocol.assignment_strategy",
                "must not be empty",
            ));
        }
        self.backoff.validate(self.max_poll_interval)?;
        if self.retry_topic_delay > self.retry_topic_max_delay {
            return Err(ConfigError::invalid(
                "retry_topic_delay",
                "must be <= retry_topic_max_delay",
            ));
        }
        Ok(())
    }

    /// The consumer group of the retry topic.
    pub fn retry_group(&self) -> String {
        self.retry_group_id
            .clone()
            .unwrap_or_else(|| format!("{}.retry", self.group_id))
    }

    /// The retry-topic delay for a record parked for the `round`-th time (1-based).
    pub fn retry_delay(&self, round: u32) -> Duration {
        let exp = round.saturating_sub(1).min(20);
        self.retry_topic_delay
            .saturating_mul(1u32 << exp)
            .min(self.retry_topic_max_delay)
    }
}

/// Smallest accepted [`ConsumerConfig::memory_budget`].
pub const MIN_MEMORY_BUDGET: usize = 4 << 20;

/// librdkafka properties `extra_consumer` may not set, and why.
fn refused_consumer_key(key: &str) -> Option<&'static str> {
    match key.trim() {
        "enable.auto.commit" | "auto.commit.enable" | "enable.auto.offset.store" => Some(
            "offsets are committed by the member only after the work is done; automatic \
             commits or offset stores would commit past unprocessed records",
        ),
        "queued.max.messages.kbytes" | "fetch.max.bytes" | "max.partition.fetch.bytes" => {
            Some("derived from memory_budget: set that instead")
        }
        "group.id" => Some("set group_id instead"),
        _ => None,
    }
}

/// An invalid configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` has an invalid value.
    #[error("invalid consumer config `{field}`: {reason}")]
    Invalid {
        /// The field path.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ConsumerConfig {
        ConsumerConfig::new("127.0.0.1:9092", "g", Topics::new("a", "a.retry", "a.dlq"))
    }

    #[test]
    fn defaults_validate() {
        cfg().validate().unwrap();
    }

    #[test]
    fn debug_shows_extra_keys_not_values() {
        let cfg = ConsumerConfig {
            extra_consumer: vec![("sasl.password".to_owned(), "hunter2".to_owned())],
            extra_producer: vec![("sasl.password".to_owned(), "hunter2".to_owned())],
            ..ConsumerConfig::new("b:9092", "g", Topics::new("t", "t.retry", "t.dlq"))
        };
        let shown = format!("{cfg:?}");
        assert!(
            shown.contains("sasl.password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn extras_that_would_commit_early_are_refused() {
        for key in [
            "enable.auto.commit",
            "enable.auto.offset.store",
            "fetch.max.bytes",
        ] {
            let c = ConsumerConfig {
                extra_consumer: vec![(key.to_owned(), "true".to_owned())],
                ..cfg()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let ok = ConsumerConfig {
            extra_consumer: vec![("client.rack".to_owned(), "a".to_owned())],
            ..cfg()
        };
        ok.validate().unwrap();
    }

    #[test]
    fn tiny_budget_is_refused() {
        let c = ConsumerConfig {
            memory_budget: 1 << 20,
            ..cfg()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn revoke_drain_must_be_below_session_timeout() {
        let c = ConsumerConfig {
            revoke_drain_timeout: Duration::from_secs(45),
            ..cfg()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "revoke_drain_timeout",
                ..
            })
        ));
    }

    #[test]
    fn backoff_elapsed_must_stay_inside_poll_interval() {
        let c = ConsumerConfig {
            max_poll_interval: Duration::from_secs(15),
            backoff: BackoffConfig {
                max_elapsed: Duration::from_secs(10),
                ..BackoffConfig::default()
            },
            ..cfg()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "backoff.max_elapsed",
                ..
            })
        ));
    }

    #[test]
    fn zero_concurrency_and_same_topics_rejected() {
        assert!(
            ConsumerConfig {
                max_concurrency: 0,
                ..cfg()
            }
            .validate()
            .is_err()
        );
        assert!(
            ConsumerConfig {
                topics: Topics::new("a", "a", "b"),
                ..cfg()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.0,
            ..BackoffConfig::default()
        };
        assert_eq!(b.base_delay(1), Duration::from_millis(100));
        assert_eq!(b.base_delay(2), Duration::from_millis(200));
        assert_eq!(b.base_delay(3), Duration::from_millis(400));
        assert_eq!(b.base_delay(4), Duration::from_millis(500));
        assert_eq!(b.base_delay(60), Duration::from_millis(500));
    }

    #[test]
    fn retry_topic_delay_doubles_and_caps() {
        let c = ConsumerConfig {
            retry_topic_delay: Duration::from_secs(1),
            retry_topic_max_delay: Duration::from_secs(5),
            ..cfg()
        };
        assert_eq!(c.retry_delay(1), Duration::from_secs(1));
        assert_eq!(c.retry_delay(2), Duration::from_secs(2));
        assert_eq!(c.retry_delay(4), Duration::from_secs(5));
        assert_eq!(c.retry_delay(99), Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn jittered_delay_stays_in_band(attempt in 1u32..40, unit in 0.0f64..1.0, jitter in 0.0f64..=1.0) {
            let b = BackoffConfig { jitter, ..BackoffConfig::default() };
            let base = b.base_delay(attempt).as_secs_f64();
            let d = b.delay_with(attempt, unit).as_secs_f64();
            prop_assert!(d <= b.max.as_secs_f64() + 1e-9);
            prop_assert!(d >= base * (1.0 - jitter) - 1e-9);
            prop_assert!(d <= base * (1.0 + jitter) + 1e-9);
        }
    }
}
