//! W3C trace context (`traceparent` header) carried from the producer through the consumer, its
//! retry and dead-letter copies and replay.
//!
//! The producer writes `traceparent: 00-<trace id>-<span id>-<flags>`. Each hop:
//! * **Consume**: the member's per-record `record` span records the header's trace id as the
//!   field `trace_id` and, with a `tracing-opentelemetry` layer installed, takes the header's span
//!   as its OpenTelemetry parent ([`set_parent`]): the consumer's span is a child of the
//!   producer-side span, in the same trace.
//! * **Retry and dead-letter copies** carry the `traceparent` of the `record` span that forwarded
//!   them ([`current`]), so the trace reads producer → consumer → retry → consumer → dead letter
//!   as parent/child links, each attempt under the one that parked it. Without an OpenTelemetry
//!   layer (no span context to name) they keep the record's own header.
//! * **Replay** runs an `orderstream.replay` span per dead letter, parented on the dead letter's
//!   header, and writes that span's `traceparent` on the re-produced record (again the dead
//!   letter's own header without a layer).
//!
//! `tracestate` is not propagated.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Record;

/// Header name of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// 32 lowercase hex digits.
    pub trace_id: &'a str,
    /// 16 lowercase hex digits: the producer-side span.
    pub parent_id: &'a str,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a version-00 `traceparent` value; `None` when malformed or all-zero ids (invalid per
/// the W3C spec).
pub fn parse(value: &[u8]) -> Option<TraceParent<'_>> {
    let s = std::str::from_utf8(value).ok()?;
    let mut parts = s.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    if !is_hex(trace_id, 32) || !is_hex(parent_id, 16) || !is_hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

impl TraceParent<'_> {
    /// The remote OpenTelemetry span context this header names.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_hex(self.trace_id).unwrap_or(TraceId::INVALID),
            SpanId::from_hex(self.parent_id).unwrap_or(SpanId::INVALID),
            TraceFlags::new(self.flags),
            true,
            TraceState::NONE,
        )
    }

    /// An OpenTelemetry context whose (remote) span is the one this header names: the parent to
    /// give a span that continues the trace.
    pub fn context(&self) -> Context {
        Context::new().with_remote_span_context(self.span_context())
    }
}

/// The `traceparent` value naming `sc`: `00-<trace id>-<span id>-<flags>`.
pub fn format(sc: &SpanContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags()
    )
}

/// Continues the trace of a record's `traceparent` (when it has a valid one) on `span`, which
/// must not have been entered yet: records the trace id as the field `trace_id` (if `span` has
/// it) and makes the header's span the OpenTelemetry parent of `span` (a no-op without a
/// `tracing-opentelemetry` layer). Nothing is done for a disabled span.
pub fn set_parent(span: &Span, traceparent: Option<&[u8]>) {
    if span.is_disabled() {
        return;
    }
    let Some(tp) = traceparent.and_then(parse) else {
        return;
    };
    span.record("trace_id", tp.trace_id);
    // Err: no OpenTelemetry layer, or the layer does not record this span; nothing to link.
    let _ = OpenTelemetrySpanExt::set_parent(span, tp.context());
}

/// [`set_parent`] from `record`'s `traceparent` header.
pub fn set_parent_from(span: &Span, record: &Record) {
    // the header scan is skipped with the span: this runs once per record
    if !span.is_disabled() {
        set_parent(span, record.header(TRACEPARENT));
    }
}

/// The `traceparent` of `span`'s OpenTelemetry span; `None` without a `tracing-opentelemetry`
/// layer, or when `span` is disabled or not recorded by it.
pub fn of_span(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| format(sc))
}

/// [`of_span`] of the current span: what a record sent from here should carry to continue the
/// trace.
pub fn current() -> Option<String> {
    of_span(&Span::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        let tp = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id, "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn a_parsed_header_formats_back_to_itself() {
        for v in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-0123456789abcdef0123456789abcdef-0000000000000001-00",
        ] {
            let sc = parse(v.as_bytes()).unwrap().span_context();
            assert!(sc.is_valid() && sc.is_remote());
            assert_eq!(format(&sc), v);
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_context_to_carry() {
        assert_eq!(current(), None);
        let span = tracing::info_span!("record", trace_id = tracing::field::Empty);
        set_parent(
            &span,
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(of_span(&span), None);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            &b""[..],
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
