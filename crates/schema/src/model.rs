//! The domain types. They match the types' schema in `schemas/` field for field (same names, same
//! order, compatible types); `tests::types_match_their_schema` fails if they drift apart.

use serde::{Deserialize, Serialize};

/// What happened to an order. Avro enum `io.orderstream.orders.EventType`.
///
/// `Unknown` is the schema's enum **default**: a reader meeting a symbol it does not know (written
/// by a newer producer) reads `Unknown` instead of failing. Producers should not write it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EventType {
    /// `UNKNOWN`: the enum default (forward compatibility); not written on purpose.
    #[serde(rename = "UNKNOWN")]
    #[default]
    Unknown,
    /// `CREATED`
    #[serde(rename = "CREATED")]
    Created,
    /// `PAID`
    #[serde(rename = "PAID")]
    Paid,
    /// `SHIPPED`
    #[serde(rename = "SHIPPED")]
    Shipped,
    /// `DELIVERED`
    #[serde(rename = "DELIVERED")]
    Delivered,
    /// `CANCELLED`
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

impl EventType {
    /// Every variant, in schema symbol order.
    pub const ALL: [EventType; 6] = [
        EventType::Unknown,
        EventType::Created,
        EventType::Paid,
        EventType::Shipped,
        EventType::Delivered,
        EventType::Cancelled,
    ];

    /// The Avro symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            EventType::Unknown => "UNKNOWN",
            EventType::Created => "CREATED",
            EventType::Paid => "PAID",
            EventType::Shipped => "SHIPPED",
            EventType::Delivered => "DELIVERED",
            EventType::Cancelled => "CANCELLED",
        }
    }
}

/// One line of an order. Avro record `io.orderstream.orders.LineItem`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Number of units (Avro `int`).
    pub quantity: i32,
    /// Price of one unit in minor units of the event's currency.
    pub unit_price_minor: i64,
}

/// One event in the life of an order. Avro record `io.orderstream.orders.OrderEvent` (version
/// [`TYPES_VERSION`](crate::TYPES_VERSION)). The Kafka key is `order_id`. `Default` is an empty event (a reusable buffer for
/// [`OrderCodec::decode_into`](crate::OrderCodec::decode_into)), not a valid one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct OrderEvent {
    /// Unique event id, a UUID in canonical lower-case hyphenated text form (Avro `string` with
    /// logical type `uuid`; the codec rejects anything else at encode time).
    pub event_id: String,
    /// The order; the Kafka message key.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// Per-order sequence number: 0, 1, 2, ... (reliability checks rely on it).
    pub sequence: i64,
    /// What happened.
    pub event_type: EventType,
    /// Order total in minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 alphabetic currency code.
    pub currency: String,
    /// Line items.
    pub items: Vec<LineItem>,
    /// When it happened: microseconds since the Unix epoch, UTC (logical type `timestamp-micros`).
    pub occurred_at_micros: i64,
    /// Free-text note (added in v2; default `null`).
    #[serde(default)]
    pub note: Option<String>,
    /// Sales channel, e.g. `web`, `app`, `store` (added in v3; default `null`).
    #[serde(default)]
    pub channel: Option<String>,
}

impl OrderEvent {
    /// A fully-populated example event (used by tests, golden fixtures and benchmarks).
    /// About 100 bytes encoded.
    pub fn example() -> Self {
        OrderEvent {
            event_id: "3f1c2a9e-8b7d-4e6f-9a01-23456789abcd".to_owned(),
            order_id: "order-000042".to_owned(),
            customer_id: "cust-0007".to_owned(),
            sequence: 3,
            event_type: EventType::Paid,
            amount_minor: 12_345,
            currency: "EUR".to_owned(),
            items: vec![
                LineItem {
                    sku: "SKU-1".to_owned(),
                    quantity: 2,
                    unit_price_minor: 4_000,
                },
                LineItem {
                    sku: "SKU-22".to_owned(),
                    quantity: 1,
                    unit_price_minor: 4_345,
                },
            ],
            occurred_at_micros: 1_767_225_600_000_000,
            note: Some("gift".to_owned()),
            channel: Some("web".to_owned()),
        }
    }
}
