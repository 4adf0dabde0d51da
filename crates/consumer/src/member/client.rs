//! librdkafka client properties of a member's consumers and of its retry/dead-letter producer.

use rdkafka::config::ClientConfig;

use crate::budget::MemoryBudget;
use crate::config::{ConsumerConfig, GroupProtocol};

/// `fetch.queue.backoff.ms`. librdkafka's default (1000 ms) makes the fetcher sleep a full second
/// whenever the prefetch queue is over its threshold, which is always once the application is
/// slower than the fetcher: the member then idles in bursts. 10 ms keeps the queue topped up.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The properties of one of the member's consumers (`group` is the source or the retry group).
pub(crate) fn consumer_config(
    cfg: &ConsumerConfig,
    group: &str,
    budget: &MemoryBudget,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set(
            "fetch.wait.max.ms",
            cfg.fetch_wait_max.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            cfg.max_poll_interval.as_millis().to_string(),
        );
    for (k, v) in budget.properties() {
        c.set(k, v);
    }
    match &cfg.group_protocol {
        GroupProtocol::Classic {
            assignment_strategy,
        } => {
            c.set("partition.assignment.strategy", assignment_strategy)
                .set(
                    "session.timeout.ms",
                    cfg.session_timeout.as_millis().to_string(),
                )
                // ~1 s (bounded by session/3): under cooperative-sticky a joining member waits
                // for the others' next heartbeat to learn of the rebalance, so a long interval
                // (session/10 = 4.5 s with the default 45 s) becomes a processing gap.
                .set(
                    "heartbeat.interval.ms",
                    (cfg.session_timeout.as_millis() / 3)
                        .clamp(1, 1000)
                        .to_string(),
                );
        }
        GroupProtocol::Consumer => {
            // Each consumer subscribes to one topic, so any broker assignor balances that topic
            // alone; range keeps a member's partitions stable across small changes.
            c.set("group.protocol", "consumer")
                .set("group.remote.assignor", "range");
        }
    }
    if !cfg.statistics_interval.is_zero() {
        c.set(
            "statistics.interval.ms",
            cfg.statistics_interval.as_millis().to_string(),
        );
    }
    // validated: none of these may turn automatic commits back on or bypass the budget
    for (k, v) in &cfg.extra_consumer {
        c.set(k, v);
    }
    c
}

/// The idempotent producer that forwards records to the retry and dead-letter topics.
pub(crate) fn producer_config(cfg: &ConsumerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            cfg.produce_timeout.as_millis().to_string(),
        );
    for (k, v) in &cfg.extra_producer {
        c.set(k, v);
    }
    c
}
