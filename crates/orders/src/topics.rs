//! The order layout's topics (topology.toml) as the generic clients name them.

use orderstream_consumer::Topics;
use orderstream_producer::ProducerTopic;
use orderstream_topology::{TopicNames, TopicSpec};

/// The producer's view of a topic of the layout: its name and expected partition count.
pub fn producer_topic(spec: &TopicSpec) -> ProducerTopic {
    ProducerTopic::new(spec.name.clone(), spec.partitions)
}

/// A consumer member's source, retry and dead-letter topics: the layout's orders, retry and
/// dead-letter topics.
pub fn member_topics(names: &TopicNames) -> Topics {
    Topics::new(&names.orders, &names.retry, &names.dead_letter)
}
