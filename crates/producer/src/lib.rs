//! The orderstream producer: idempotent, keyed (Java-compatible murmur2), batched Kafka records
//! of pre-encoded bytes with honest delivery outcomes. It knows no schema: the orders crate's
//! `OrderProducer` encodes Avro order events on top of it.
//!
//! * One librdkafka producer per process ([`RawProducer`] is a `Clone` handle to it); it is rebuilt only after a fatal error, and every send that was in flight on the
//!   poisoned handle is reported [`DeliveryOutcome::PossiblyPersisted`].
//! * [`ProducerConfig`]: typed settings with documented defaults (idempotence on, acks=all,
//!   in-flight 5, lz4, linger 5 ms, delivery timeout 30 s), validated at start-up; `extra`
//!   librdkafka properties that collide with a typed one are refused by name.
//! * Partitioner fixed to `murmur2_random`: the same key → partition mapping as the Java client
//!   ([`partition_for_key`]; proven against golden vectors from the Java client's own code).
//!   A null key is spread randomly; an **empty** key is hashed like any other key (librdkafka's
//!   `murmur2_random` only treats a *null* key specially, as Java does).
//! * Start-up refuses a missing topic, or a live partition count that differs from the layout.
//! * Backpressure: a full librdkafka queue makes `send` wait, it never returns `QueueFull`.
//! * Headers as the caller gives them and, when a tracing span is current and the caller gave
//!   none, a W3C `traceparent`. With a `tracing-opentelemetry` layer installed it names the send's
//!   OpenTelemetry span (the `orderstream.produce` span when enabled, else the caller's), so the
//!   consumer's span joins the trace as its child. Without one the trace id is derived from the
//!   caller's span id (records sent under one span share it) and the parent id is random.
//! * Metrics (`metrics` crate, install the recorder before building the producer): the names
//!   in [`metric`], all labelled `topic`; [`metric::describe`] gives them HELP text and units.
//! * Tracing: a `orderstream.produce` debug span per record with `topic`, `key`, `schema_id`,
//!   `partition`, `offset`.

mod completion;
mod config;
pub mod diagnosis;
mod error;
pub mod generations;
pub mod metric;
mod partition;
mod raw;

pub use config::{Acks, Compression, PARTITIONER, ProducerConfig, RetryBackoff};
pub use error::{BoxError, ConfigError, ProducerError};
pub use partition::{murmur2, partition_for_key};
pub use raw::{
    DeliveryOutcome, FlushReport, PendingDelivery, ProducerTopic, RawProducer, RetryStats,
    SendBatch,
};

/// Re-exported so callers can match on [`ProducerError::code`] without naming rdkafka.
pub use rdkafka::error::RDKafkaErrorCode;
