//! The versioned schema files in `schemas/`, embedded at build time.

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

/// Add a line here when you add `schemas/order_event.vN.avsc` (and update the Rust types).
static VERSIONS: [SchemaVersion; 3] = [version!(1), version!(2), version!(3)];

/// Every schema version, oldest first. The last one is the one the Rust types match.
pub fn versions() -> &'static [SchemaVersion] {
    &VERSIONS
}

/// The latest version (what producers write and consumers resolve to).
pub fn latest_version() -> &'static SchemaVersion {
    // VERSIONS is a non-empty array: indexing its last element cannot fail.
    &VERSIONS[VERSIONS.len() - 1]
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

/// The latest schema, parsed once.
pub fn latest_schema() -> &'static Schema {
    &parsed_versions()[VERSIONS.len() - 1]
}

/// Parsing Canonical Form of the latest schema, computed once.
pub(crate) fn latest_canonical_form() -> &'static str {
    static PCF: OnceLock<String> = OnceLock::new();
    PCF.get_or_init(|| latest_schema().canonical_form())
}
