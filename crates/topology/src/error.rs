use std::path::PathBuf;

/// Everything that can go wrong while loading or applying the layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The layout file could not be read.
    #[error("cannot read layout file {path}")]
    Read {
        /// The layout file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The layout file is not valid TOML or has unknown/missing keys.
    #[error("layout file {origin} is malformed: {message}")]
    Parse {
        /// The file (or `built-in`) the layout came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// The layout parsed but breaks an invariant (e.g. min ISR above the replication factor).
    #[error("layout is invalid: {0}")]
    Invalid(String),
    /// The requested profile is not defined in the layout.
    #[error("profile `{name}` is not defined in the layout (known: {known})")]
    UnknownProfile {
        /// The profile asked for.
        name: String,
        /// The profiles the layout defines, comma-separated.
        known: String,
    },
    /// The cluster could not be reached or answered with an error.
    #[error("Kafka admin request `{request}` failed against {bootstrap}: {message}")]
    Admin {
        /// The admin request (e.g. `describe cluster`).
        request: &'static str,
        /// The bootstrap servers asked.
        bootstrap: String,
        /// What the client or cluster said.
        message: String,
    },
    /// A per-topic admin operation failed.
    #[error("Kafka refused `{request}` for topic {topic}: {message}")]
    TopicAdmin {
        /// The admin request (e.g. `create topic`).
        request: &'static str,
        /// The topic concerned.
        topic: String,
        /// What the cluster said.
        message: String,
    },
}
