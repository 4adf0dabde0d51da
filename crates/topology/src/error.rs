use std::path::PathBuf;

/// Everything that can go wrong while loading or applying the layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The layout file could not be read.
    #[error("cannot read layout file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The layout file is not valid TOML or has unknown/missing keys.
    #[error("layout file {origin} is malformed: {message}")]
    Parse { origin: String, message: String },
    /// The layout parsed but breaks an invariant (e.g. min ISR above the replication factor).
    #[error("layout is invalid: {0}")]
    Invalid(String),
    /// The requested profile is not defined in the layout.
    #[error("profile `{name}` is not defined in the layout (known: {known})")]
    UnknownProfile { name: String, known: String },
    /// The cluster could not be reached or answered with an error.
    #[error("Kafka admin request `{request}` failed against {bootstrap}: {message}")]
    Admin {
        request: &'static str,
        bootstrap: String,
        message: String,
    },
    /// A per-topic admin operation failed.
    #[error("Kafka refused `{request}` for topic {topic}: {message}")]
    TopicAdmin {
        request: &'static str,
        topic: String,
        message: String,
    },
}
