//! Order events for tests, benchmarks and examples, built one way everywhere.
//!
//! * [`lifecycle`]: event `seq` of one order in a run tagged `prefix`, with a fresh event id:
//!   what an integration test sends when each run needs names of its own.
//! * [`numbered`]: event `i` of a deterministic stream keyed over `keys` orders, the same bytes
//!   in every run (benchmarks compare runs).

use orderstream_schema::{EventType, LineItem, OrderEvent};

/// The kinds of a delivered order, in order: event `seq` of [`lifecycle`] has kind `LIFECYCLE[seq]`
/// (the last one repeats past the end).
pub const LIFECYCLE: [EventType; 4] = [
    EventType::Created,
    EventType::Paid,
    EventType::Shipped,
    EventType::Delivered,
];

/// Event `seq` of order `order` in a run tagged `prefix`: order id `{prefix}-{order:06}`,
/// customer `{prefix}-c{order % 7}`, kind [`LIFECYCLE`]`[seq]`, amount `1000 + order`, a random
/// event id. Override fields with struct update syntax for other shapes.
pub fn lifecycle(prefix: &str, order: usize, seq: i64) -> OrderEvent {
    let step = usize::try_from(seq).unwrap_or(0).min(LIFECYCLE.len() - 1);
    OrderEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: format!("{prefix}-{order:06}"),
        customer_id: format!("{prefix}-c{}", order % 7),
        sequence: seq,
        event_type: LIFECYCLE[step],
        amount_minor: 1_000 + i64::try_from(order).unwrap_or(0),
        ..OrderEvent::example()
    }
}

/// Event `i` of a deterministic stream keyed over `keys` order ids (`order-{i % keys:06}`, its
/// sequence `i / keys`): about 114 bytes encoded; `pad > 0` fills `note` with `pad` bytes of
/// text ([`note`]).
pub fn numbered(i: u64, keys: u64, pad: usize) -> OrderEvent {
    let keys = keys.max(1);
    let order = i % keys;
    OrderEvent {
        event_id: event_id(i),
        order_id: format!("order-{order:06}"),
        customer_id: format!("cust-{:04}", order % 997),
        sequence: i64::try_from(i / keys).unwrap_or(i64::MAX),
        event_type: EventType::Paid,
        amount_minor: 12_345,
        currency: "EUR".into(),
        items: vec![
            LineItem {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_minor: 4_000,
            },
            LineItem {
                sku: "SKU-22".into(),
                quantity: 1,
                unit_price_minor: 4_345,
            },
        ],
        occurred_at_micros: 1_767_225_600_000_000 + i64::try_from(i).unwrap_or(0),
        note: Some(if pad == 0 {
            "gift".to_owned()
        } else {
            note(i, pad)
        }),
        channel: Some("web".into()),
    }
}

/// A deterministic UUID-shaped event id for event `i`.
pub fn event_id(i: u64) -> String {
    let h = (u128::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 96) as u32,
        (h >> 80) as u16,
        (h >> 64) as u16 & 0xfff,
        (h >> 48) as u16 & 0xfff,
        h as u64 & 0xffff_ffff_ffff
    )
}

/// `len` bytes of text for a free-text field: words drawn from a small vocabulary by a generator
/// seeded with `i`, so a record compresses about as well as real text (lz4 ~2×); a run of one
/// repeated character would compress ~50× and let a fetch response decompress to many times the
/// bytes the fetch limits count.
pub fn note(i: u64, len: usize) -> String {
    const WORDS: [&str; 32] = [
        "please",
        "leave",
        "the",
        "parcel",
        "at",
        "door",
        "with",
        "neighbour",
        "gift",
        "wrap",
        "ring",
        "bell",
        "twice",
        "after",
        "six",
        "pm",
        "back",
        "entrance",
        "fragile",
        "glass",
        "call",
        "on",
        "arrival",
        "no",
        "plastic",
        "bag",
        "second",
        "floor",
        "left",
        "side",
        "dog",
        "friendly",
    ];
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        // xorshift64: cheap, deterministic per record
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        s.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        s.push(' ');
    }
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_events_are_the_same_in_every_run() {
        assert_eq!(numbered(7, 10, 300), numbered(7, 10, 300));
        assert_eq!(numbered(17, 10, 0).order_id, "order-000007");
        assert_eq!(numbered(17, 10, 0).sequence, 1);
        assert_eq!(note(3, 300).len(), 300);
    }

    #[test]
    fn lifecycle_kinds_follow_the_sequence() {
        let kinds: Vec<_> = (0..6).map(|s| lifecycle("t", 1, s).event_type).collect();
        assert_eq!(kinds[..4], LIFECYCLE);
        assert_eq!(kinds[5], EventType::Delivered);
        assert_ne!(lifecycle("t", 1, 0).event_id, lifecycle("t", 1, 0).event_id);
    }
}
