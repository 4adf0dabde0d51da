//! The order-event contract of orderstream.
//!
//! * [`OrderEvent`] and friends: the Rust types, matching the schema version [`TYPES_VERSION`]
//!   through serde (a unit test fails when they drift apart).
//! * [`versions`] / [`types_schema`]: every `schemas/order_event.vN.avsc`, embedded at build time
//!   (build.rs lists the directory: a new version is a new file).
//! * [`OrderCodec`]: Confluent wire-format serde (`0x00`, big-endian `u32` schema id, Avro
//!   binary) with a registry client (through `schema_registry_converter`) and read-mostly caches.
//!   The hot paths use apache-avro's schema-aware serde (no intermediate `Value`).
//! * [`compat`]: offline compatibility checks (BACKWARD, FORWARD, FULL and transitive forms),
//!   with [`explain`] naming the field and rule behind each failure and [`diff`] listing what
//!   changed between two versions.
//! * [`catalog`]: the version files read at run time from `schemas/` or given paths (what the
//!   `schemas` commands judge, so a proposed version is checked before any Rust code changes).
//! * [`registry_admin`]: the Confluent REST calls the CLI and tests need (set compatibility, test,
//!   register, delete, list).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use orderstream_schema::{OrderCodec, RegistryConfig};
//! let codec = OrderCodec::new(RegistryConfig {
//!     url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
//!     ..RegistryConfig::default()
//! })?;
//! # let event: orderstream_schema::OrderEvent = todo!();
//! let encoded = codec.encode("orders", &event).await?; // registers / looks up once per subject
//! let decoded = codec.decode(&encoded.bytes).await?;
//! assert_eq!(decoded.event, event);
//! # Ok(()) }
//! ```

mod access;
pub mod catalog;
mod codec;
pub mod compat;
pub mod diff;
mod error;
pub mod explain;
mod fast;
mod model;
pub mod registry_admin;
pub mod resolve;
mod versions;
pub mod wire;

pub use access::{BasicAuth, RegistryAccess};
pub use codec::{Decoded, Encoded, OrderCodec, RegistryConfig, SubjectStrategy, encode_body};
pub use compat::{CompatReport, check_versions};
pub use error::{CodecError, SchemaError, error_chain};
pub use model::{EventType, LineItem, OrderEvent};
pub use versions::{
    ORDER_EVENT_FULL_NAME, SchemaVersion, TYPES_VERSION, parsed_versions, types_schema,
    types_version, versions,
};

/// Re-export of the secrecy crate whose `SecretString` holds registry passwords.
pub use secrecy;

/// Re-export of the apache-avro crate this crate is built on (same version as `Schema`s here).
pub use apache_avro;
