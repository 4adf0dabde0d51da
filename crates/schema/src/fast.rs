//! Hand-specialised Avro binary codec for the order-event schema of `TYPES_VERSION`.
//!
//! Why: profiling apache-avro 0.22's schema-aware serde path (`write_ser` / `read_deser`) on the
//! example event showed ~0.8-1.0 µs per encode or decode, most of it in per-field `HashMap`
//! look-ups (SipHash of field names, `cache.remove` per field) and string compares; the target is
//! ≤ 300 ns. This module writes and reads the same bytes directly.
//!
//! Safety net:
//! * It is used only when the types' schema's Parsing Canonical Form is exactly
//!   [`SUPPORTED_PCF`]; otherwise the codec falls back to apache-avro's serde path (and the unit
//!   test `fast_codec_matches_the_types_schema` fails, so whoever raises `TYPES_VERSION` updates
//!   this file in the same change).
//! * Tests compare it byte for byte against apache-avro (golden fixture, proptests both ways).

use std::sync::OnceLock;

use crate::versions::types_canonical_form;
use crate::{EventType, LineItem, OrderEvent};

/// The Parsing Canonical Form (as apache-avro 0.22 renders it: logical types leave a
/// `{"type":"string"}` wrapper) this module implements: schemas/order_event.v3.avsc.
pub(crate) const SUPPORTED_PCF: &str = r#"{"name":"io.orderstream.orders.OrderEvent","type":"record","fields":[{"name":"event_id","type":{"type":"string"}},{"name":"order_id","type":"string"},{"name":"customer_id","type":"string"},{"name":"sequence","type":"long"},{"name":"event_type","type":{"name":"io.orderstream.orders.EventType","type":"enum","symbols":["UNKNOWN","CREATED","PAID","SHIPPED","DELIVERED","CANCELLED"]}},{"name":"amount_minor","type":"long"},{"name":"currency","type":"string"},{"name":"items","type":{"type":"array","items":{"name":"io.orderstream.orders.LineItem","type":"record","fields":[{"name":"sku","type":"string"},{"name":"quantity","type":"int"},{"name":"unit_price_minor","type":"long"}]}}},{"name":"occurred_at_micros","type":{"type":"long"}},{"name":"note","type":["null","string"]},{"name":"channel","type":["null","string"]}]}"#;

/// Whether this module implements the types' schema (computed once).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| types_canonical_form() == SUPPORTED_PCF)
}

#[inline]
fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

#[inline]
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(2);
            put_str(out, s);
        }
    }
}

fn enum_index(t: EventType) -> i64 {
    match t {
        EventType::Unknown => 0,
        EventType::Created => 1,
        EventType::Paid => 2,
        EventType::Shipped => 3,
        EventType::Delivered => 4,
        EventType::Cancelled => 5,
    }
}

/// Appends the Avro body of `e` to `out`.
pub(crate) fn encode(e: &OrderEvent, out: &mut Vec<u8>) {
    let strings = e.event_id.len()
        + e.order_id.len()
        + e.customer_id.len()
        + e.currency.len()
        + e.note.as_ref().map_or(0, String::len)
        + e.channel.as_ref().map_or(0, String::len)
        + e.items.iter().map(|i| i.sku.len() + 16).sum::<usize>();
    out.reserve(strings + 64);
    put_str(out, &e.event_id);
    put_str(out, &e.order_id);
    put_str(out, &e.customer_id);
    put_long(out, e.sequence);
    put_long(out, enum_index(e.event_type));
    put_long(out, e.amount_minor);
    put_str(out, &e.currency);
    if !e.items.is_empty() {
        put_long(out, e.items.len() as i64);
        for i in &e.items {
            put_str(out, &i.sku);
            put_long(out, i64::from(i.quantity));
            put_long(out, i.unit_price_minor);
        }
    }
    out.push(0);
    put_long(out, e.occurred_at_micros);
    put_opt_str(out, e.note.as_deref());
    put_opt_str(out, e.channel.as_deref());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    #[inline]
    fn long(&mut self, what: &str) -> Result<i64, String> {
        // One-byte varints (|v| < 64) are the common case: lengths, enum indexes, counts.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
        }
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("unexpected end of data reading {what}"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(format!("varint overflow reading {what}"));
            }
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(format!("varint overflow reading {what}"));
            }
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    #[inline]
    fn int(&mut self, what: &str) -> Result<i32, String> {
        let v = self.long(what)?;
        i32::try_from(v).map_err(|_| format!("{what}: {v} does not fit an Avro int"))
    }

    #[inline]
    fn string(&mut self, what: &str) -> Result<String, String> {
        self.str(what).map(str::to_owned)
    }

    /// Reads a string into `out`, reusing its allocation.
    #[inline]
    fn string_into(&mut self, what: &str, out: &mut String) -> Result<(), String> {
        let s = self.str(what)?;
        out.clear();
        out.push_str(s);
        Ok(())
    }

    #[inline]
    fn str(&mut self, what: &str) -> Result<&str, String> {
        let len = self.long(what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: negative length {len}"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| format!("{what}: length {len} runs past the end of the data"))?;
        let s = std::str::from_utf8(&self.buf[self.pos..end])
            .map_err(|e| format!("{what}: invalid UTF-8: {e}"))?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn opt_string_into(&mut self, what: &str, out: &mut Option<String>) -> Result<(), String> {
        match self.long(what)? {
            0 => {
                *out = None;
                Ok(())
            }
            1 => {
                let s = self.str(what)?;
                match out {
                    Some(o) => {
                        o.clear();
                        o.push_str(s);
                    }
                    None => *out = Some(s.to_owned()),
                }
                Ok(())
            }
            i => Err(format!("{what}: union index {i} out of range")),
        }
    }

    #[inline]
    fn opt_string(&mut self, what: &str) -> Result<Option<String>, String> {
        match self.long(what)? {
            0 => Ok(None),
            1 => self.string(what).map(Some),
            i => Err(format!("{what}: union index {i} out of range")),
        }
    }
}

/// Reads one Avro body of the types' schema. Returns the event and the number of bytes read.
pub(crate) fn decode(buf: &[u8]) -> Result<(OrderEvent, usize), String> {
    let mut r = Reader { buf, pos: 0 };
    let event_id = r.string("event_id")?;
    let order_id = r.string("order_id")?;
    let customer_id = r.string("customer_id")?;
    let sequence = r.long("sequence")?;
    let event_type = event_type(r.long("event_type")?)?;
    let amount_minor = r.long("amount_minor")?;
    let currency = r.string("currency")?;
    let mut items = Vec::new();
    loop {
        let mut count = r.long("items block count")?;
        if count == 0 {
            break;
        }
        if count < 0 {
            // Negative count: followed by the block's size in bytes.
            count = count
                .checked_neg()
                .ok_or_else(|| "items: bad block count".to_owned())?;
            r.long("items block size")?;
        }
        // Each item takes at least 3 bytes: never trust a count to size an allocation.
        let remaining = (buf.len() - r.pos) / 3;
        let count = usize::try_from(count).map_err(|_| "items: bad block count".to_owned())?;
        if count > remaining {
            return Err(format!("items: block count {count} exceeds the data"));
        }
        items.reserve(count);
        for _ in 0..count {
            items.push(LineItem {
                sku: r.string("items.sku")?,
                quantity: r.int("items.quantity")?,
                unit_price_minor: r.long("items.unit_price_minor")?,
            });
        }
    }
    let occurred_at_micros = r.long("occurred_at_micros")?;
    let note = r.opt_string("note")?;
    let channel = r.opt_string("channel")?;
    Ok((
        OrderEvent {
            event_id,
            order_id,
            customer_id,
            sequence,
            event_type,
            amount_minor,
            currency,
            items,
            occurred_at_micros,
            note,
            channel,
        },
        r.pos,
    ))
}

fn event_type(i: i64) -> Result<EventType, String> {
    Ok(match i {
        0 => EventType::Unknown,
        1 => EventType::Created,
        2 => EventType::Paid,
        3 => EventType::Shipped,
        4 => EventType::Delivered,
        5 => EventType::Cancelled,
        i => return Err(format!("event_type: enum index {i} out of range")),
    })
}

/// Reads one Avro body of the types' schema into `out`, reusing its allocations (no allocation
/// at all once `out` has held an event of similar shape). Returns the number of bytes read. On
/// error `out` is left partly overwritten.
pub(crate) fn decode_into(buf: &[u8], out: &mut OrderEvent) -> Result<usize, String> {
    let mut r = Reader { buf, pos: 0 };
    r.string_into("event_id", &mut out.event_id)?;
    r.string_into("order_id", &mut out.order_id)?;
    r.string_into("customer_id", &mut out.customer_id)?;
    out.sequence = r.long("sequence")?;
    out.event_type = event_type(r.long("event_type")?)?;
    out.amount_minor = r.long("amount_minor")?;
    r.string_into("currency", &mut out.currency)?;
    let mut n = 0;
    loop {
        let mut count = r.long("items block count")?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or_else(|| "items: bad block count".to_owned())?;
            r.long("items block size")?;
        }
        let remaining = (buf.len() - r.pos) / 3;
        let count = usize::try_from(count).map_err(|_| "items: bad block count".to_owned())?;
        if count > remaining {
            return Err(format!("items: block count {count} exceeds the data"));
        }
        for _ in 0..count {
            if n == out.items.len() {
                out.items.push(LineItem {
                    sku: String::new(),
                    quantity: 0,
                    unit_price_minor: 0,
                });
            }
            let item = &mut out.items[n];
            r.string_into("items.sku", &mut item.sku)?;
            item.quantity = r.int("items.quantity")?;
            item.unit_price_minor = r.long("items.unit_price_minor")?;
            n += 1;
        }
    }
    out.items.truncate(n);
    out.occurred_at_micros = r.long("occurred_at_micros")?;
    r.opt_string_into("note", &mut out.note)?;
    r.opt_string_into("channel", &mut out.channel)?;
    Ok(r.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when a new schema version lands without this module being updated. Update the Rust
    /// types, `encode`, `decode` and `SUPPORTED_PCF` together.
    #[test]
    fn fast_codec_matches_the_types_schema() {
        assert_eq!(
            types_canonical_form(),
            SUPPORTED_PCF,
            "the types' schema changed: update crates/schema/src/fast.rs"
        );
        assert!(enabled());
    }

    #[test]
    fn varints_match_avro() {
        for v in [0i64, -1, 1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_long(&mut out, v);
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.long("v").expect("decodes"), v);
            assert_eq!(r.pos, out.len());
        }
        // 11-byte varint is rejected.
        let bad = [0xffu8; 11];
        assert!(Reader { buf: &bad, pos: 0 }.long("v").is_err());
    }
}
