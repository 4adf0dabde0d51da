//! The Confluent wire format: magic byte `0x00`, the schema id as a big-endian `u32`, then the
//! Avro binary body.

use crate::CodecError;

/// The magic byte that starts every Confluent-framed message.
pub const MAGIC: u8 = 0;
/// Length of the header (magic byte + schema id).
pub const HEADER_LEN: usize = 5;

/// Splits a framed message into its schema id and Avro body.
///
/// # Errors
/// [`CodecError::Empty`] for zero bytes, [`CodecError::BadMagicByte`] when the first byte is not
/// `0x00`, [`CodecError::Truncated`] when the header is incomplete.
#[inline]
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [] => Err(CodecError::Empty),
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [MAGIC, ..] => Err(CodecError::Truncated { len: bytes.len() }),
        [found, ..] => Err(CodecError::BadMagicByte { found: *found }),
    }
}

/// Appends the 5-byte header for `id` to `out`.
#[inline]
pub fn write_header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        write_header(0x0102_0304, &mut out);
        out.extend_from_slice(b"body");
        assert_eq!(out, [0, 1, 2, 3, 4, b'b', b'o', b'd', b'y']);
        let (id, body) = split(&out).expect("valid");
        assert_eq!(id, 0x0102_0304);
        assert_eq!(body, b"body");
    }

    #[test]
    fn malformed() {
        assert!(matches!(split(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            split(&[7, 0, 0, 0, 1]),
            Err(CodecError::BadMagicByte { found: 7 })
        ));
        assert!(matches!(
            split(&[0, 0, 1]),
            Err(CodecError::Truncated { len: 3 })
        ));
        // A header with an empty body is structurally fine (the body decoder decides).
        assert_eq!(split(&[0, 0, 0, 0, 9]).expect("ok"), (9, &[][..]));
    }
}
