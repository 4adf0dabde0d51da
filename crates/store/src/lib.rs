//! The order projection in a database, with a durable inbox: what makes "each event applied
//! exactly once" true across restarts, rebalances and processes.
//!
//! * [`OrderStore`]: PostgreSQL (the real store) or an embedded SQLite file (the default that
//!   needs no server), behind one pool. [`OrderStore::apply_batch`] applies a partition's batch in
//!   **one transaction** that also records every applied event id in the `inbox` table; an
//!   event whose id is already there, or whose sequence is not above its order's last, has no
//!   second effect.
//! * [`StoreProcessor`]: the consumer's [`BatchProcessor`](orderstream_consumer::BatchProcessor)
//!   around it. The consumer commits a record's Kafka offset only after `process_batch`
//!   returned, i.e. after the database commit; a crash in between redelivers the batch and the
//!   inbox absorbs it. A database outage is a transient error (retried, never dead-lettered
//!   at once, never committed past).
//!
//! * The outbox ([`record`], [`OrderStore::pending`], [`OrderStore::mark_sent`]): a service
//!   records an order event in the same transaction as its own change; `orderstream relay`
//!   publishes unsent rows in order per order and marks them sent after Kafka acknowledged them.
//!
//! The schema lives in `crates/store/migrations/` and is applied at connect
//! ([`OrderStore::connect`]), idempotently, in one transaction per migration.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod migrate;
mod outbox;
mod processor;
mod store;
mod url;

pub use error::StoreError;
pub use outbox::{OutboxCounts, OutboxRow, StoreTx, record};
pub use processor::{ProcessorCounts, StoreProcessor};
pub use store::{Effect, Input, OrderRow, OrderStore, StoreConfig, StoreCounts};
pub use url::redact;
