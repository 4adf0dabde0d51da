//! The sample order processor: decodes order events, keeps each order's state machine and
//! per-customer totals, rejects illegal transitions, and deduplicates by event id.
//!
//! State machine: `created → paid → shipped → delivered`, and `cancelled` from `created` or
//! `paid`. Anything else is a [`ProcessError::Permanent`] of class `illegal_transition` (dead
//! letter), except an event of a kind this build does not know: a newer producer's enum symbol
//! reads as the schema's enum default `UNKNOWN`, which is acknowledged without effect and
//! counted ([`SampleSnapshot::unknown_kinds`]). Writer schemas other than the built-in one are
//! resolved into it by the codec; one that cannot be resolved is a permanent
//! `incompatible_schema` error (dead letter). Decode errors are classified from [`CodecError`]: retriable registry errors are
//! transient; an unknown schema id is transient for the first
//! [`SampleConfig::unknown_schema_max_attempts`] attempts (the registry may lag: pair this with a
//! retry-topic delay longer than the codec's negative-cache TTL) and permanent after; framing and
//! body errors are permanent at once.
//!
//! Idempotence, two layers: a [`Dedup`] window by event id, and the per-order sequence number
//! (an event whose sequence is not above the last applied one for its order is a duplicate even
//! after it left the window). Duplicates are skipped (success, no effect) and counted.
//! State is in memory: a real deployment keeps it in a store keyed by order id.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use orderstream_schema::{CodecError, EventType, OrderCodec, OrderEvent};
use tracing::debug;

use orderstream_consumer::{Dedup, ProcessError, Processor, Record};

/// State of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OrderState {
    /// Created, not paid.
    Created,
    /// Paid.
    Paid,
    /// Shipped.
    Shipped,
    /// Delivered (final).
    Delivered,
    /// Cancelled (final).
    Cancelled,
}

/// The transition function: the new state, or `None` if `event` is illegal in `from`.
pub fn transition(from: Option<OrderState>, event: EventType) -> Option<OrderState> {
    use OrderState as S;
    match (from, event) {
        (None, EventType::Created) => Some(S::Created),
        (Some(S::Created), EventType::Paid) => Some(S::Paid),
        (Some(S::Paid), EventType::Shipped) => Some(S::Shipped),
        (Some(S::Shipped), EventType::Delivered) => Some(S::Delivered),
        (Some(S::Created | S::Paid), EventType::Cancelled) => Some(S::Cancelled),
        _ => None,
    }
}

/// Settings of the sample processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleConfig {
    /// Attempts during which an unknown schema id is treated as transient. Default 5.
    pub unknown_schema_max_attempts: u32,
    /// Capacity of the event-id dedup window. Default 100 000.
    pub dedup_capacity: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            unknown_schema_max_attempts: 5,
            dedup_capacity: 100_000,
        }
    }
}

/// Per-customer running totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerTotals {
    /// Orders created.
    pub orders: u64,
    /// Paid amount in minor units, net of cancellations after payment.
    pub paid_minor: i64,
}

#[derive(Debug, Clone)]
struct OrderEntry {
    state: OrderState,
    last_sequence: i64,
}

#[derive(Debug, Default)]
struct SampleState {
    orders: HashMap<String, OrderEntry>,
    customers: HashMap<String, CustomerTotals>,
    applied: u64,
    sequence_duplicates: u64,
    rejected: u64,
    unknown_kinds: u64,
}

/// A copy of the processor's state for tests and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleSnapshot {
    /// Current state per order id.
    pub orders: BTreeMap<String, OrderState>,
    /// Totals per customer id.
    pub customers: BTreeMap<String, CustomerTotals>,
    /// Events applied (effects).
    pub applied_events: u64,
    /// Duplicates skipped (by event id or by sequence).
    pub duplicates: u64,
    /// Events rejected as illegal transitions.
    pub rejected: u64,
    /// Events of a kind this build does not know (a newer producer's enum symbol, read as the
    /// enum default `UNKNOWN`): acknowledged without effect.
    pub unknown_kinds: u64,
}

thread_local! {
    /// Per-thread event buffer for [`OrderCodec::try_decode_cached_into`] (never held across an
    /// await).
    static DECODE_BUF: RefCell<OrderEvent> = RefCell::new(OrderEvent::default());
}

/// How a decode failure of a record's `attempt`-th try is handled: retriable registry errors
/// are transient; an unknown schema id is transient for the first
/// `unknown_schema_max_attempts` attempts (the registry may lag) and permanent after; framing,
/// body and schema errors are permanent at once. Shared by every processor that decodes order
/// events.
pub fn classify_decode_error(
    e: &CodecError,
    attempt: u32,
    unknown_schema_max_attempts: u32,
) -> ProcessError {
    let err = match e {
        CodecError::UnknownSchemaId { .. } if attempt < unknown_schema_max_attempts => {
            ProcessError::Transient {
                class: e.class(),
                message: e.to_string(),
                schema_id: None,
            }
        }
        _ if e.is_retriable() && !matches!(e, CodecError::UnknownSchemaId { .. }) => {
            ProcessError::Transient {
                class: e.class(),
                message: e.to_string(),
                schema_id: None,
            }
        }
        _ => ProcessError::permanent(e.class(), e.to_string()),
    };
    match e.schema_id() {
        Some(id) => err.with_schema_id(id),
        None => err,
    }
}

/// The sample processor; see the module docs.
#[derive(Debug)]
pub struct OrderProcessor {
    codec: OrderCodec,
    cfg: SampleConfig,
    dedup: Dedup,
    state: Mutex<SampleState>,
}

impl OrderProcessor {
    /// A processor decoding with `codec`.
    pub fn new(codec: OrderCodec, cfg: SampleConfig) -> Self {
        Self {
            codec,
            dedup: Dedup::new(cfg.dedup_capacity),
            cfg,
            state: Mutex::new(SampleState::default()),
        }
    }

    /// A snapshot of the state.
    pub fn snapshot(&self) -> SampleSnapshot {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        SampleSnapshot {
            orders: st
                .orders
                .iter()
                .map(|(k, v)| (k.clone(), v.state))
                .collect(),
            customers: st
                .customers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            applied_events: st.applied,
            duplicates: self.dedup.duplicates() + st.sequence_duplicates,
            rejected: st.rejected,
            unknown_kinds: st.unknown_kinds,
        }
    }

    fn classify(&self, e: &CodecError, attempt: u32) -> ProcessError {
        classify_decode_error(e, attempt, self.cfg.unknown_schema_max_attempts)
    }

    /// Applies a decoded event (the state-machine part, without decoding).
    pub fn apply(&self, event: &OrderEvent, schema_id: Option<u32>) -> Result<(), ProcessError> {
        if self.dedup.seen(&event.event_id) {
            debug!(event_id = %event.event_id, "duplicate event id skipped");
            metrics::counter!(orderstream_consumer::metric::DUPLICATES, "processor" => "sample")
                .increment(1);
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let current = st.orders.get(&event.order_id).cloned();
        if let Some(cur) = &current
            && event.sequence <= cur.last_sequence
        {
            st.sequence_duplicates += 1;
            metrics::counter!(orderstream_consumer::metric::DUPLICATES, "processor" => "sample")
                .increment(1);
            return Ok(());
        }
        if event.event_type == EventType::Unknown {
            // A kind a newer producer added (read as the enum default): nothing this build can
            // apply, and nothing wrong with the event, so it is acknowledged without effect and
            // the order's later events still apply.
            st.unknown_kinds += 1;
            if let Some(entry) = st.orders.get_mut(&event.order_id) {
                entry.last_sequence = event.sequence;
            }
            drop(st);
            debug!(event_id = %event.event_id, order_id = %event.order_id, "event of an unknown kind acknowledged without effect");
            self.dedup.insert(&event.event_id);
            return Ok(());
        }
        let Some(next) = transition(current.as_ref().map(|c| c.state), event.event_type) else {
            st.rejected += 1;
            let err = ProcessError::permanent(
                "illegal_transition",
                format!(
                    "order {}: {:?} is illegal in state {:?} (sequence {})",
                    event.order_id,
                    event.event_type,
                    current.as_ref().map(|c| c.state),
                    event.sequence
                ),
            );
            return Err(match schema_id {
                Some(id) => err.with_schema_id(id),
                None => err,
            });
        };
        let was_paid = current
            .as_ref()
            .is_some_and(|c| c.state == OrderState::Paid);
        let totals = st.customers.entry(event.customer_id.clone()).or_default();
        match event.event_type {
            EventType::Created => totals.orders += 1,
            EventType::Paid => totals.paid_minor += event.amount_minor,
            EventType::Cancelled if was_paid => totals.paid_minor -= event.amount_minor,
            _ => {}
        }
        st.orders.insert(
            event.order_id.clone(),
            OrderEntry {
                state: next,
                last_sequence: event.sequence,
            },
        );
        st.applied += 1;
        drop(st);
        self.dedup.insert(&event.event_id);
        Ok(())
    }
}

impl Processor for OrderProcessor {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        let Some(bytes) = record.payload() else {
            return Err(ProcessError::permanent("empty", "null value"));
        };
        // Fast path: writer schema already cached: decode synchronously into this thread's
        // reused event buffer (no allocation for the event, no await).
        let fast = DECODE_BUF.with(|buf| {
            let mut event = buf.borrow_mut();
            self.codec
                .try_decode_cached_into(bytes, &mut event)
                .map(|res| match res {
                    Ok(schema_id) => self.apply(&event, Some(schema_id)),
                    Err(e) => Err(self.classify(&e, record.attempt())),
                })
        });
        if let Some(res) = fast {
            return res;
        }
        let decoded = match self.codec.decode(bytes).await {
            Ok(d) => d,
            Err(e) => return Err(self.classify(&e, record.attempt())),
        };
        self.apply(&decoded.event, Some(decoded.schema_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderstream_schema::RegistryConfig;

    fn ev(order: &str, seq: i64, t: EventType, id: &str) -> OrderEvent {
        OrderEvent {
            event_id: id.to_owned(),
            order_id: order.to_owned(),
            sequence: seq,
            event_type: t,
            amount_minor: 100,
            ..OrderEvent::example()
        }
    }

    fn proc_() -> OrderProcessor {
        OrderProcessor::new(
            OrderCodec::new(RegistryConfig::default()).unwrap(),
            SampleConfig::default(),
        )
    }

    #[test]
    fn transitions() {
        use OrderState as S;
        assert_eq!(transition(None, EventType::Created), Some(S::Created));
        assert_eq!(transition(Some(S::Created), EventType::Shipped), None);
        assert_eq!(
            transition(Some(S::Paid), EventType::Cancelled),
            Some(S::Cancelled)
        );
        assert_eq!(transition(Some(S::Shipped), EventType::Cancelled), None);
        assert_eq!(transition(None, EventType::Paid), None);
        assert_eq!(transition(Some(S::Delivered), EventType::Delivered), None);
    }

    #[test]
    fn applies_dedups_and_rejects() {
        let p = proc_();
        p.apply(&ev("o1", 0, EventType::Created, "e0"), None)
            .unwrap();
        p.apply(&ev("o1", 1, EventType::Paid, "e1"), None).unwrap();
        p.apply(&ev("o1", 1, EventType::Paid, "e1"), None).unwrap(); // by id
        p.apply(&ev("o1", 1, EventType::Paid, "e1b"), None).unwrap(); // by sequence
        let err = p
            .apply(&ev("o2", 0, EventType::Shipped, "e2"), Some(3))
            .unwrap_err();
        assert_eq!(err.class(), "illegal_transition");
        assert_eq!(err.schema_id(), Some(3));
        let s = p.snapshot();
        assert_eq!(s.orders.get("o1"), Some(&OrderState::Paid));
        assert_eq!(s.applied_events, 2);
        assert_eq!(s.duplicates, 2);
        assert_eq!(s.rejected, 1);
        let cust = &s.customers[&OrderEvent::example().customer_id];
        assert_eq!(cust.orders, 1);
        assert_eq!(cust.paid_minor, 100);
    }

    #[test]
    fn unknown_kinds_are_acknowledged_without_effect() {
        let p = proc_();
        p.apply(&ev("o1", 0, EventType::Created, "e0"), None)
            .unwrap();
        p.apply(&ev("o1", 1, EventType::Unknown, "e1"), None)
            .unwrap();
        p.apply(&ev("o1", 2, EventType::Paid, "e2"), None).unwrap();
        p.apply(&ev("o9", 0, EventType::Unknown, "e9"), None)
            .unwrap();
        let s = p.snapshot();
        assert_eq!(s.orders.get("o1"), Some(&OrderState::Paid));
        assert!(!s.orders.contains_key("o9"));
        assert_eq!((s.applied_events, s.unknown_kinds, s.rejected), (2, 2, 0));
    }

    #[test]
    fn unknown_schema_is_transient_then_permanent() {
        let p = proc_();
        let e = CodecError::UnknownSchemaId {
            schema_id: 99,
            cached: false,
        };
        let t = p.classify(&e, 1);
        assert!(matches!(t, ProcessError::Transient { .. }));
        assert_eq!(t.schema_id(), Some(99));
        let perm = p.classify(&e, 5);
        assert!(matches!(
            perm,
            ProcessError::Permanent {
                class: "unknown_schema_id",
                ..
            }
        ));
        let bad = p.classify(&CodecError::BadMagicByte { found: 1 }, 1);
        assert!(matches!(
            bad,
            ProcessError::Permanent {
                class: "bad_magic",
                ..
            }
        ));
    }
}
