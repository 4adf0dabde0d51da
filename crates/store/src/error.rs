//! Errors of the store, with the context they concern (passwords never included).

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL or a setting is not usable.
    #[error("store {url}: {message}")]
    InvalidConfig {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The database cannot be reached or refused the connection.
    #[error("cannot connect to the store at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed (nothing of it was applied).
    #[error("store {url}: migration {version} ({name}) failed")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// Migration number.
        version: i64,
        /// Its file name.
        name: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying a batch failed; the transaction was rolled back, nothing of the batch applied.
    #[error(
        "store: applying {records} events of {topic}/{partition} (offsets {first}..={last}) failed, rolled back"
    )]
    Apply {
        /// Source topic of the batch.
        topic: String,
        /// Source partition.
        partition: i32,
        /// First offset of the batch.
        first: i64,
        /// Last offset of the batch.
        last: i64,
        /// Events in the batch.
        records: usize,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An outbox operation failed (nothing of it was applied).
    #[error("store outbox: {what} failed")]
    Outbox {
        /// What was being done, with the event or rows it concerns.
        what: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A read query failed.
    #[error("store query failed")]
    Query {
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}
