//! Tracing of sends: the W3C `traceparent` a record carries when a tracing span is current, and
//! the record's `orderstream.produce` span.
//!
//! With a `tracing-opentelemetry` layer installed the header names the real OpenTelemetry span
//! of the send: the record's `orderstream.produce` span when it is enabled (it is a child of the
//! caller's span), else the caller's span. Without such a layer there is no OpenTelemetry span
//! to name, and the header is synthesised as it always was (see [`traceparent`]).

use opentelemetry::trace::TraceContextExt;
use tracing::{Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::DeliveryOutcome;

/// Length of `00-<32 hex>-<16 hex>-<2 hex>`.
pub(super) const TRACEPARENT_LEN: usize = 55;

/// `00-<trace id>-<span id>-<flags>` in lowercase hex.
pub(super) fn format_traceparent(trace_id: u128, span_id: u64, flags: u8) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    for (i, slot) in out[3..35].iter_mut().enumerate() {
        let shift = 4 * (31 - i);
        *slot = HEX[((trace_id >> shift) & 0xf) as usize];
    }
    for (i, slot) in out[36..52].iter_mut().enumerate() {
        let shift = 4 * (15 - i);
        *slot = HEX[((span_id >> shift) & 0xf) as usize];
    }
    out[53] = HEX[usize::from(flags >> 4)];
    out[54] = HEX[usize::from(flags & 0xf)];
    out
}

pub(super) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A W3C `traceparent` value for a send when a tracing span is current, written into a stack
/// buffer; `None` (nothing done, nothing allocated) when no span is current.
///
/// * With an OpenTelemetry layer: the trace id, span id and sampled flag of `produce` (the
///   record's `orderstream.produce` span) when it is enabled, else of the caller's span, so a
///   consumer parented on the header joins the producer's trace.
/// * Without one: a trace id derived from the caller's span id and `salt` (the producer's,
///   random per process), so records sent under one span share a trace id, and a random parent
///   id for this send, flagged sampled.
pub(super) fn traceparent(salt: u128, produce: &Span) -> Option<[u8; TRACEPARENT_LEN]> {
    let current = Span::current();
    let id = current.id()?.into_u64();
    let otel = if produce.is_disabled() {
        None
    } else {
        otel_ids(produce)
    };
    if let Some((trace_id, span_id, flags)) = otel.or_else(|| otel_ids(&current)) {
        return Some(format_traceparent(trace_id, span_id, flags));
    }
    let mixed = splitmix(salt as u64 ^ id);
    let trace_id = (u128::from(mixed) << 64) | u128::from(splitmix(mixed ^ (salt >> 64) as u64));
    let span_id: u64 = rand::random::<u64>() | 1;
    Some(format_traceparent(trace_id, span_id, 0x01))
}

/// Trace id, span id and trace flags of `span`'s OpenTelemetry span; `None` without an
/// OpenTelemetry layer (then the context is empty and nothing is allocated) or when the layer
/// does not record `span`.
fn otel_ids(span: &Span) -> Option<(u128, u64, u8)> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| {
        (
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.trace_flags().to_u8(),
        )
    })
}

/// The `orderstream.produce` debug span of one record; disabled (and free) unless a subscriber
/// listens at `debug`.
pub(super) fn produce_span(topic: &str, key: Option<&[u8]>, schema_id: Option<u32>) -> Span {
    let span = tracing::debug_span!(
        "orderstream.produce",
        otel.kind = "producer",
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
            for flags in [0u8, 1, 0xab] {
                let got = format_traceparent(trace_id, span_id, flags);
                assert_eq!(
                    std::str::from_utf8(&got).expect("ascii"),
                    format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}")
                );
            }
        }
    }
}
