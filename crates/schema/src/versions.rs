//! The versioned schema files in `schemas/`, embedded at build time (build.rs lists them, so a
//! new version is a new file), and the one version the Rust types follow.
//!
//! The types ([`crate::OrderEvent`]) and the specialised codec (`fast.rs`) follow
//! [`TYPES_VERSION`]: producers write it and consumers resolve every other writer version into
//! it. A newer compatible file needs no code change: data written with it (by another service)
//! is read by schema resolution. To use its new fields here, update the types and `fast.rs`
//! and raise [`TYPES_VERSION`]; the contract tests fail until the three agree.

use std::sync::OnceLock;

use apache_avro::Schema;

/// Full name of the order-event record (namespace + name), as used by the record-name subject
/// strategies.
pub const ORDER_EVENT_FULL_NAME: &str = "io.orderstream.orders.OrderEvent";

/// One version of the order-event schema, as checked in under `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The version number (`N` in `order_event.vN.avsc`), 1-based, dense.
    pub version: u32,
    /// File path relative to the repository root, e.g. `schemas/order_event.v2.avsc`.
    pub path: &'static str,
    /// The schema text exactly as checked in.
    pub text: &'static str,
}

impl SchemaVersion {
    /// Parses the schema text.
    ///
    /// # Errors
    /// [`apache_avro::Error`] if the file is not a valid Avro schema (a unit test guards this).
    pub fn parse(&self) -> Result<Schema, apache_avro::Error> {
        Schema::parse_str(self.text)
    }
}

macro_rules! version {
    ($n:literal) => {
        SchemaVersion {
            version: $n,
            path: concat!("schemas/order_event.v", $n, ".avsc"),
            text: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../schemas/order_event.v",
                $n,
                ".avsc"
            )),
        }
    };
}

/// The schema version the Rust types and the fast codec follow (what producers write and
/// consumers resolve to).
pub const TYPES_VERSION: u32 = 3;

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// Every schema version in `schemas/` at build time, oldest first.
pub fn versions() -> &'static [SchemaVersion] {
    &VERSIONS
}

fn types_index() -> usize {
    // A unit test checks that TYPES_VERSION is one of the embedded versions.
    usize::try_from(TYPES_VERSION.saturating_sub(1))
        .unwrap_or(0)
        .min(VERSIONS.len() - 1)
}

/// The version the Rust types follow ([`TYPES_VERSION`]).
pub fn types_version() -> &'static SchemaVersion {
    &VERSIONS[types_index()]
}

/// All versions, parsed once, oldest first. Panics at first use if a checked-in schema does not
/// parse; the unit tests make sure that never ships.
pub fn parsed_versions() -> &'static [Schema] {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    PARSED.get_or_init(|| {
        VERSIONS
            .iter()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|e| panic!("{} is not a valid Avro schema: {e}", v.path))
            })
            .collect()
    })
}

/// The schema of [`TYPES_VERSION`], parsed once.
pub fn types_schema() -> &'static Schema {
    &parsed_versions()[types_index()]
}

/// Parsing Canonical Form of the types' schema, computed once.
pub(crate) fn types_canonical_form() -> &'static str {
    static PCF: OnceLock<String> = OnceLock::new();
    PCF.get_or_init(|| types_schema().canonical_form())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_version_is_embedded() {
        assert_eq!(types_version().version, TYPES_VERSION);
        assert!(versions().iter().any(|v| v.version == TYPES_VERSION));
    }
}
