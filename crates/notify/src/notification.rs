//! The notification a processed order event becomes: a small, versioned JSON body that other
//! services read without knowing Avro or the schema registry.

use orderstream_schema::{EventType, OrderEvent};
use serde::{Deserialize, Serialize};

/// The body's format version; a receiver refuses versions it does not know.
pub const BODY_VERSION: u32 = 1;

/// Which processed events become notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyOn {
    /// Only `CREATED`: "a new order exists".
    #[default]
    Created,
    /// Every known state change (`CREATED`, `PAID`, `SHIPPED`, `DELIVERED`, `CANCELLED`).
    StateChanges,
}

impl NotifyOn {
    /// Whether an event of this type is notified. `UNKNOWN` (a kind newer than this build) never
    /// is: there is no state to tell.
    pub fn selects(self, event_type: EventType) -> bool {
        match event_type {
            EventType::Unknown => false,
            EventType::Created => true,
            _ => self == NotifyOn::StateChanges,
        }
    }
}

/// One notification. Serialised as JSON ([`Notification::body`]); the event id is also the
/// broker-level message id (RabbitMQ `message_id`, NATS `Nats-Msg-Id`) so receivers and
/// JetStream can drop a redelivered copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Body format version ([`BODY_VERSION`]).
    pub v: u32,
    /// `order.created`, or `order.paid`, `order.shipped`, ... for state changes.
    pub kind: String,
    /// The event id (UUID): the deduplication key.
    pub event_id: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// The order's state after the event (`CREATED`, `PAID`, ...).
    pub state: String,
    /// Per-order sequence of the event.
    pub sequence: i64,
    /// Order total in minor units.
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// When the event happened: microseconds since the Unix epoch, UTC.
    pub occurred_at_micros: i64,
    /// The W3C `traceparent` of the Kafka record, when it carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Notification {
    /// The notification of `event`, carrying the record's `traceparent` header if valid.
    pub fn of(event: &OrderEvent, traceparent: Option<&[u8]>) -> Self {
        let state = event.event_type.symbol();
        Notification {
            v: BODY_VERSION,
            kind: format!("order.{}", state.to_ascii_lowercase()),
            event_id: event.event_id.clone(),
            order_id: event.order_id.clone(),
            customer_id: event.customer_id.clone(),
            state: state.to_owned(),
            sequence: event.sequence,
            amount_minor: event.amount_minor,
            currency: event.currency.clone(),
            occurred_at_micros: event.occurred_at_micros,
            traceparent: traceparent
                .filter(|t| orderstream_consumer::trace_context::parse(t).is_some())
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(str::to_owned),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The routing key (RabbitMQ) and subject suffix (NATS): the kind, e.g. `order.created`.
    pub fn routing_key(&self) -> &str {
        &self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_selected_by_default_and_unknown_never() {
        assert!(NotifyOn::Created.selects(EventType::Created));
        assert!(!NotifyOn::Created.selects(EventType::Paid));
        assert!(NotifyOn::StateChanges.selects(EventType::Paid));
        assert!(NotifyOn::StateChanges.selects(EventType::Cancelled));
        assert!(!NotifyOn::StateChanges.selects(EventType::Unknown));
    }

    #[test]
    fn body_round_trips_and_names_the_event() {
        let mut event = OrderEvent::example();
        event.event_type = EventType::Created;
        let tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let n = Notification::of(&event, Some(tp));
        assert_eq!(n.kind, "order.created");
        assert_eq!(n.state, "CREATED");
        assert_eq!(n.routing_key(), "order.created");
        assert_eq!(n.traceparent.as_deref(), std::str::from_utf8(tp).ok());
        let back: Notification = serde_json::from_slice(&n.body()).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.v, BODY_VERSION);
    }

    #[test]
    fn a_malformed_traceparent_is_left_out() {
        let n = Notification::of(&OrderEvent::example(), Some(b"not-a-traceparent"));
        assert_eq!(n.traceparent, None);
        assert!(!String::from_utf8(n.body()).unwrap().contains("traceparent"));
    }
}
