//! The order-status transform of the transactional stage: every order event becomes the
//! order's latest status, keyed by order id, for a compacted topic that keeps one record per
//! order.

use orderstream_schema::{EventType, OrderCodec};
use serde::Serialize;

use super::classify_decode_error;
use orderstream_consumer::{Output, ProcessError, Record, Transform};

/// Attempts after which an unknown schema id stops being a registry lag and is dead-lettered.
const UNKNOWN_SCHEMA_MAX_ATTEMPTS: u32 = 3;

/// Order events → `{order_id, status, event_id, sequence, ...}` JSON records keyed by order id.
#[derive(Debug, Clone)]
pub struct StatusTransform {
    codec: OrderCodec,
}

impl StatusTransform {
    /// A transform decoding with `codec`.
    pub fn new(codec: OrderCodec) -> Self {
        StatusTransform { codec }
    }
}

/// The value of one status record. `source_*` name the event it was derived from, so a reader
/// can check the stage's output against its input.
#[derive(Debug, Serialize)]
struct Status<'a> {
    order_id: &'a str,
    status: &'static str,
    event_id: &'a str,
    sequence: i64,
    occurred_at_micros: i64,
    source_partition: i32,
    source_offset: i64,
}

/// The status an event leaves its order in; `None` for a kind this build does not know.
pub fn status_of(event: EventType) -> Option<&'static str> {
    Some(match event {
        EventType::Created => "CREATED",
        EventType::Paid => "PAID",
        EventType::Shipped => "SHIPPED",
        EventType::Delivered => "DELIVERED",
        EventType::Cancelled => "CANCELLED",
        _ => return None,
    })
}

impl Transform for StatusTransform {
    async fn transform(&self, record: &Record, attempt: u32) -> Result<Vec<Output>, ProcessError> {
        let Some(bytes) = record.payload() else {
            return Err(ProcessError::permanent("empty", "null value"));
        };
        let decoded = self
            .codec
            .decode(bytes)
            .await
            .map_err(|e| classify_decode_error(&e, attempt, UNKNOWN_SCHEMA_MAX_ATTEMPTS))?;
        let event = &decoded.event;
        let Some(status) = status_of(event.event_type) else {
            return Ok(Vec::new());
        };
        let value = Status {
            order_id: &event.order_id,
            status,
            event_id: &event.event_id,
            sequence: event.sequence,
            occurred_at_micros: event.occurred_at_micros,
            source_partition: record.partition(),
            source_offset: record.offset(),
        };
        let payload = serde_json::to_vec(&value)
            .map_err(|e| ProcessError::permanent("encode", e.to_string()))?;
        Ok(vec![Output {
            key: event.order_id.as_bytes().to_vec(),
            payload,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_kind_has_a_status() {
        for (t, s) in [
            (EventType::Created, "CREATED"),
            (EventType::Paid, "PAID"),
            (EventType::Shipped, "SHIPPED"),
            (EventType::Delivered, "DELIVERED"),
            (EventType::Cancelled, "CANCELLED"),
        ] {
            assert_eq!(status_of(t), Some(s));
        }
        assert_eq!(status_of(EventType::Unknown), None);
    }
}
