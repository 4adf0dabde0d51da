//! Tracing of sends: the W3C `traceparent` a record carries when a tracing span is current, and
//! the record's `orderstream.produce` span.

use tracing::{Span, field};

use super::DeliveryOutcome;

/// Length of `00-<32 hex>-<16 hex>-01`.
pub(super) const TRACEPARENT_LEN: usize = 55;

pub(super) fn format_traceparent(trace_id: u128, span_id: u64) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    for (i, slot) in out[3..35].iter_mut().enumerate() {
        let shift = 4 * (31 - i);
        *slot = HEX[((trace_id >> shift) & 0xf) as usize];
    }
    for (i, slot) in out[36..52].iter_mut().enumerate() {
        let shift = 4 * (15 - i);
        *slot = HEX[((span_id >> shift) & 0xf) as usize];
    }
    out
}

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A W3C `traceparent` value for a send when a tracing span is current, written into a stack
/// buffer (no allocation). `salt` is the producer's, random per process.
pub(super) fn traceparent(salt: u128) -> Option<[u8; TRACEPARENT_LEN]> {
    let id = Span::current().id()?.into_u64();
    // No OpenTelemetry layer: derive a stable trace id from the caller's span id (so records
    // sent under one span share a trace id) and a random parent id for this send.
    let mixed = splitmix(salt as u64 ^ id);
    let trace_id = (u128::from(mixed) << 64) | u128::from(splitmix(mixed ^ (salt >> 64) as u64));
    let span_id: u64 = rand::random::<u64>() | 1;
    Some(format_traceparent(trace_id, span_id))
}

/// The `orderstream.produce` debug span of one record; disabled (and free) unless a subscriber
/// listens at `debug`.
pub(super) fn produce_span(topic: &str, key: Option<&[u8]>, schema_id: Option<u32>) -> Span {
    let span = tracing::debug_span!(
        "orderstream.produce",
        topic = %topic,
        key = field::Empty,
        schema_id = field::Empty,
        partition = field::Empty,
        offset = field::Empty,
    );
    if !span.is_disabled() {
        if let Some(k) = key {
            span.record("key", String::from_utf8_lossy(k).as_ref());
        }
        if let Some(id) = schema_id {
            span.record("schema_id", id);
        }
    }
    span
}

/// Records a delivered record's position on its span and logs the outcome in it (no-op when
/// the span is disabled, as it is unless a subscriber listens at `debug`).
pub(super) fn trace_outcome(span: &Span, outcome: &DeliveryOutcome) {
    if span.is_disabled() {
        return;
    }
    if let DeliveryOutcome::Delivered {
        partition, offset, ..
    } = outcome
    {
        span.record("partition", partition);
        span.record("offset", offset);
    }
    span.in_scope(|| match outcome {
        DeliveryOutcome::Delivered { .. } => tracing::trace!("delivered"),
        other => {
            if let Some(e) = other.error() {
                tracing::debug!(error = %e, "not delivered");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_matches_the_w3c_layout() {
        for (trace_id, span_id) in [
            (0u128, 1u64),
            (u128::MAX, u64::MAX),
            (
                0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
                0xdead_beef_0000_0001,
            ),
        ] {
            let got = format_traceparent(trace_id, span_id);
            assert_eq!(
                std::str::from_utf8(&got).expect("ascii"),
                format!("00-{trace_id:032x}-{span_id:016x}-01")
            );
        }
    }
}
