//! Topic layout as code.
//!
//! `topology.toml` at the repository root is the single source of truth for topic names, keys,
//! partition counts, replication and topic configs. This crate parses and validates it
//! ([`Topology`]) and applies it idempotently through the Kafka admin API ([`apply`]): it creates
//! what is missing, reports drift without silently changing it, and never shrinks partitions.

mod apply;
mod error;
mod model;

pub use apply::{ApplyMode, ApplyReport, Drift, TopicAction, apply, live_partition_count};
pub use error::TopologyError;
pub use model::{Profile, ProfileChoice, TopicNames, TopicRole, TopicSpec, Topology};
