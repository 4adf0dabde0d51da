//! The command line's choice flags as clap `ValueEnum`s: `--help` lists the choices and clap
//! refuses a typo before anything runs. Each maps to the library type it selects.

use clap::ValueEnum;
use orderstream_consumer::{GroupProtocol, OrderingMode};
use orderstream_producer::Compression;
use orderstream_schema::SubjectStrategy;
use orderstream_schema::compat::Mode;

/// `consume --ordering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Ordering {
    /// Records of one key in order, keys in parallel.
    Key,
    /// Strictly one record at a time per partition.
    Partition,
}

impl From<Ordering> for OrderingMode {
    fn from(o: Ordering) -> Self {
        match o {
            Ordering::Key => OrderingMode::Key,
            Ordering::Partition => OrderingMode::Partition,
        }
    }
}

/// `consume --protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// The classic protocol with the cooperative-sticky assignor.
    Classic,
    /// The KIP-848 consumer protocol.
    Consumer,
}

impl From<Protocol> for GroupProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Classic => GroupProtocol::default(),
            Protocol::Consumer => GroupProtocol::Consumer,
        }
    }
}

/// `produce --compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Codec {
    /// lz4 (default): cheap, good on Avro.
    Lz4,
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::Lz4 => Compression::Lz4,
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
        }
    }
}

/// `schemas --mode`, named as in the Confluent API (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Compat {
    /// New reads previous.
    Backward,
    /// New reads all earlier.
    BackwardTransitive,
    /// Previous reads new.
    Forward,
    /// All earlier read new.
    ForwardTransitive,
    /// Backward and forward.
    Full,
    /// Backward and forward against all earlier.
    FullTransitive,
    /// No check.
    None,
}

impl From<Compat> for Mode {
    fn from(c: Compat) -> Self {
        match c {
            Compat::Backward => Mode::Backward,
            Compat::BackwardTransitive => Mode::BackwardTransitive,
            Compat::Forward => Mode::Forward,
            Compat::ForwardTransitive => Mode::ForwardTransitive,
            Compat::Full => Mode::Full,
            Compat::FullTransitive => Mode::FullTransitive,
            Compat::None => Mode::None,
        }
    }
}

/// `schemas --subject-strategy` (the values are Confluent's strategy names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Subjects {
    /// `<topic>-value` (Confluent's default).
    TopicName,
    /// The record's full name.
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

impl From<Subjects> for SubjectStrategy {
    fn from(s: Subjects) -> Self {
        match s {
            Subjects::TopicName => SubjectStrategy::TopicName,
            Subjects::RecordName => SubjectStrategy::RecordName,
            Subjects::TopicRecordName => SubjectStrategy::TopicRecordName,
        }
    }
}

/// `up --with`: an opt-in service beside Kafka and the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Service {
    /// PostgreSQL (the store of `consume --store`).
    Postgres,
    /// RabbitMQ (`notify --to rabbitmq`).
    Rabbitmq,
    /// NATS with JetStream (`notify --to nats`).
    Nats,
}

impl Service {
    /// The name scripts/services.sh takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Rabbitmq => "rabbitmq",
            Service::Nats => "nats",
        }
    }
}

/// `notify --to`: the broker notifications go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NotifyTo {
    /// RabbitMQ (AMQP 0-9-1) with publisher confirms.
    Rabbitmq,
    /// NATS JetStream, deduplicated by event id.
    Nats,
}

/// `notify --on`: which processed events become notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NotifyOn {
    /// New orders only (CREATED).
    Created,
    /// Every state change (CREATED, PAID, SHIPPED, DELIVERED, CANCELLED).
    StateChanges,
}

impl From<NotifyOn> for orderstream_notify::NotifyOn {
    fn from(o: NotifyOn) -> Self {
        match o {
            NotifyOn::Created => orderstream_notify::NotifyOn::Created,
            NotifyOn::StateChanges => orderstream_notify::NotifyOn::StateChanges,
        }
    }
}

/// `dlq replay --into`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReplayInto {
    /// Back to the source topic and partition: every group reading it sees the record again.
    Source,
    /// Parked in the retry topic for the group that gave up on it; other groups pass over it.
    Retry,
}
