//! Reading an Avro body written with one schema through another (the specification's schema
//! resolution). The codec takes this path for every writer version other than the one the
//! types follow; the evolution matrix runs its "actual" verdicts through this same function, so
//! what it proves is what consumers do.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

/// Why a body could not be read through the reader schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The two schemas cannot be resolved at all (apache-avro refuses to build the reader).
    #[error("writer and reader schemas do not resolve: {0}")]
    Incompatible(String),
    /// The bytes do not decode with the writer schema, or a value cannot be resolved (e.g. an
    /// enum symbol the reader lacks, with no enum default).
    #[error("{0}")]
    Undecodable(String),
    /// Bytes left after the record: the writer schema is not the one the bytes were written
    /// with.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// Reads one record written with `writer` from `body` as a value of `reader`; the whole body
/// must be consumed.
///
/// # Errors
/// [`ResolveError`].
pub fn read_resolved(
    writer: &Schema,
    reader: &Schema,
    mut body: &[u8],
) -> Result<Value, ResolveError> {
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .human_readable(false)
        .build()
        .map_err(|e| ResolveError::Incompatible(e.to_string()))?
        .read_value(&mut body)
        .map_err(|e| ResolveError::Undecodable(e.to_string()))?;
    if !body.is_empty() {
        return Err(ResolveError::Trailing(body.len()));
    }
    Ok(value)
}
