//! Typed errors of the schema crate.

/// Errors building an [`OrderCodec`](crate::OrderCodec) or validating its configuration.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum SchemaError {
    /// A [`RegistryConfig`](crate::RegistryConfig) field is invalid.
    #[error("invalid registry config `{field}`: {message}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The HTTP client for the registry could not be built.
    #[error("cannot build the schema registry client for {url}: {message}")]
    Client {
        /// Registry base URL.
        url: String,
        /// The underlying error.
        message: String,
    },
}

/// Errors from encoding or decoding an order event.
///
/// Route on [`CodecError::is_retriable`]: retriable errors (the registry is unreachable or
/// overloaded) should be retried with backoff; the rest are poison pills for a dead-letter queue,
/// tagged with [`CodecError::class`].
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum CodecError {
    /// Zero bytes (or a null value) where a framed message was expected.
    #[error("empty payload: expected a Confluent-framed Avro message")]
    Empty,
    /// The first byte is not the Confluent magic byte `0x00`.
    #[error("bad magic byte {found:#04x}: not a Confluent-framed message")]
    BadMagicByte {
        /// The byte found.
        found: u8,
    },
    /// Shorter than the 5-byte header.
    #[error("truncated message: {len} bytes, the header alone needs 5")]
    Truncated {
        /// The length seen.
        len: usize,
    },
    /// The registry was reachable and answered that this schema id does not exist.
    ///
    /// Maybe transient (a registry replica lagging behind the producer's); the consumer decides
    /// after a bounded retry whether it is permanent. Retry with a backoff longer than
    /// [`RegistryConfig::negative_cache_ttl`](crate::RegistryConfig::negative_cache_ttl):
    /// within the TTL the answer comes from the negative cache without asking the registry.
    #[error("unknown schema id {schema_id} (registry answered not found{})", if *.cached { ", negatively cached" } else { "" })]
    UnknownSchemaId {
        /// The id from the message header.
        schema_id: u32,
        /// `true` if this answer came from the negative cache.
        cached: bool,
    },
    /// A registry call failed (unreachable, timeout, 5xx, or an unexpected answer).
    #[error("schema registry {url} failed{}{}: {message} (retriable: {retriable})",
        .subject.as_deref().map(|s| format!(" for subject {s}")).unwrap_or_default(),
        .schema_id.map(|s| format!(" for schema id {s}")).unwrap_or_default())]
    Registry {
        /// Registry base URL.
        url: String,
        /// Subject involved (encode path).
        subject: Option<String>,
        /// Schema id involved (decode path).
        schema_id: Option<u32>,
        /// HTTP status, when the registry answered.
        status: Option<u16>,
        /// Whether trying again later may succeed (connection errors, timeouts, 408, 429, 5xx).
        retriable: bool,
        /// What went wrong.
        message: String,
    },
    /// The registry returned a writer schema we cannot use: not Avro, unparsable, or not
    /// resolvable to the order-event schema the types follow (an incompatible change slipped through).
    #[error("writer schema id {schema_id} is unusable: {message}")]
    IncompatibleSchema {
        /// The schema id.
        schema_id: u32,
        /// Why.
        message: String,
    },
    /// The Avro body does not decode with its writer schema (corrupt or mislabelled bytes).
    #[error("cannot decode the Avro body written with schema id {schema_id}: {message}")]
    Undecodable {
        /// The schema id from the header.
        schema_id: u32,
        /// The decoder's message.
        message: String,
    },
    /// The event does not fit the schema (e.g. `event_id` is not a canonical UUID).
    #[error("cannot encode the order event: {message}")]
    Encode {
        /// What is wrong.
        message: String,
    },
}

impl CodecError {
    /// Whether trying again later may succeed. Registry outages are retriable; malformed bytes
    /// are not. [`CodecError::UnknownSchemaId`] counts as retriable: the caller bounds the
    /// retries and then dead-letters it.
    pub fn is_retriable(&self) -> bool {
        match self {
            CodecError::Registry { retriable, .. } => *retriable,
            CodecError::UnknownSchemaId { .. } => true,
            _ => false,
        }
    }

    /// The schema id involved, if known.
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            CodecError::UnknownSchemaId { schema_id, .. }
            | CodecError::IncompatibleSchema { schema_id, .. }
            | CodecError::Undecodable { schema_id, .. } => Some(*schema_id),
            CodecError::Registry { schema_id, .. } => *schema_id,
            _ => None,
        }
    }

    /// A short stable label for metrics and dead-letter headers.
    pub fn class(&self) -> &'static str {
        match self {
            CodecError::Empty => "empty",
            CodecError::BadMagicByte { .. } => "bad_magic",
            CodecError::Truncated { .. } => "truncated",
            CodecError::UnknownSchemaId { .. } => "unknown_schema_id",
            CodecError::Registry {
                retriable: true, ..
            } => "registry_unavailable",
            CodecError::Registry { .. } => "registry_error",
            CodecError::IncompatibleSchema { .. } => "incompatible_schema",
            CodecError::Undecodable { .. } => "undecodable",
            CodecError::Encode { .. } => "encode",
        }
    }
}

/// An error and its sources, `: `-separated, as anyhow's `{:#}` shows them: typed errors here
/// (and reqwest's) keep their cause out of their own message, for reporters that walk
/// [`std::error::Error::source`].
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        // Some errors already end with their cause (librdkafka's codes, sqlx's database
        // errors): said once is enough.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod chain_tests {
    use super::*;
    use crate::catalog::CatalogError;

    #[derive(Debug, thiserror::Error)]
    #[error("metadata fetch error: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("timed out waiting for the broker")]
    struct Mentions(#[source] std::io::Error);

    /// A cause the message already ends with is not printed again; one it only mentions is.
    #[test]
    fn a_cause_already_at_the_end_of_the_message_is_not_repeated() {
        let e = Repeats(std::io::Error::other("broker transport failure"));
        assert_eq!(
            error_chain(&e),
            "metadata fetch error: broker transport failure"
        );
        let e = Mentions(std::io::Error::other("timed out"));
        assert_eq!(
            error_chain(&e),
            "timed out waiting for the broker: timed out"
        );
    }

    /// A typed error names its context once and its cause is shown once, after it: the
    /// message itself does not repeat the cause (reporters print the chain).
    #[test]
    fn cause_shown_once_after_the_context() {
        let e = CatalogError::Read {
            path: "schemas/x.v1.avsc".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert!(!e.to_string().contains("no such file"), "{e}");
        assert_eq!(
            error_chain(&e),
            "cannot read schemas/x.v1.avsc: no such file"
        );
    }
}
