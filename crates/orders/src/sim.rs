//! Simulated order services: realistic order lifecycles for `produce` and `demo`.
//!
//! Each service keeps a handful of open orders and advances a random one per step, so events of
//! different orders interleave the way they do in production while each order's own events keep
//! their sequence: created → paid → shipped → delivered, or cancelled after created or paid.

use orderstream_schema::{EventType, LineItem, OrderEvent};
use rand::Rng;
use rand::seq::IndexedRandom;

const SKUS: [(&str, i64); 8] = [
    ("SKU-KETTLE", 3_499),
    ("SKU-MUG", 899),
    ("SKU-TEA-250G", 1_250),
    ("SKU-FILTER", 399),
    ("SKU-GRINDER", 8_900),
    ("SKU-BEANS-1KG", 2_400),
    ("SKU-SCALE", 4_599),
    ("SKU-CARAFE", 2_999),
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
const CHANNELS: [&str; 3] = ["web", "app", "store"];

/// One order in flight inside a simulated service.
#[derive(Debug)]
struct OpenOrder {
    template: OrderEvent,
    next: EventType,
}

/// A simulated order service producing an endless, interleaved stream of order events.
#[derive(Debug)]
pub struct OrderService {
    id: usize,
    opened: u64,
    open: Vec<OpenOrder>,
    concurrent_orders: usize,
    run_tag: String,
}

impl OrderService {
    /// `concurrent_orders` orders are open at once; `run_tag` makes order ids unique per run.
    pub fn new(id: usize, concurrent_orders: usize, run_tag: &str) -> Self {
        Self {
            id,
            opened: 0,
            open: Vec::new(),
            concurrent_orders: concurrent_orders.max(1),
            run_tag: run_tag.to_owned(),
        }
    }

    fn open_order(&mut self, rng: &mut impl Rng) -> OpenOrder {
        self.opened += 1;
        let items: Vec<LineItem> = (0..rng.random_range(1..=4))
            .map(|_| {
                let (sku, price) = SKUS.choose(rng).copied().unwrap_or(SKUS[0]);
                LineItem {
                    sku: sku.to_owned(),
                    quantity: rng.random_range(1..=3),
                    unit_price_minor: price,
                }
            })
            .collect();
        let amount_minor = items
            .iter()
            .map(|i| i64::from(i.quantity) * i.unit_price_minor)
            .sum();
        OpenOrder {
            template: OrderEvent {
                event_id: String::new(),
                order_id: format!("ord-{}-{}-{}", self.run_tag, self.id, self.opened),
                customer_id: format!("cust-{:04}", rng.random_range(0..500)),
                sequence: 0,
                event_type: EventType::Created,
                amount_minor,
                currency: CURRENCIES.choose(rng).copied().unwrap_or("EUR").to_owned(),
                items,
                occurred_at_micros: 0,
                note: None,
                channel: CHANNELS.choose(rng).map(|c| (*c).to_owned()),
            },
            next: EventType::Created,
        }
    }

    /// The next event of a random open order.
    pub fn next_event(&mut self, rng: &mut impl Rng) -> OrderEvent {
        while self.open.len() < self.concurrent_orders {
            let o = self.open_order(rng);
            self.open.push(o);
        }
        let idx = rng.random_range(0..self.open.len());
        let order = &mut self.open[idx];
        let mut event = order.template.clone();
        event.event_id = uuid::Uuid::new_v4().to_string();
        event.event_type = order.next;
        event.occurred_at_micros = now_micros();
        order.template.sequence += 1;
        let cancel = rng.random_bool(0.08);
        order.next = match order.next {
            EventType::Created if cancel => EventType::Cancelled,
            EventType::Created => EventType::Paid,
            EventType::Paid if cancel => EventType::Cancelled,
            EventType::Paid => EventType::Shipped,
            EventType::Shipped => EventType::Delivered,
            // Delivered, Cancelled (and anything newer) close the order.
            _ => EventType::Unknown,
        };
        if order.next == EventType::Unknown {
            self.open.swap_remove(idx);
        }
        event
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn lifecycles_are_legal_and_sequenced() {
        let mut rng = rand::rng();
        let mut svc = OrderService::new(0, 5, "t");
        let mut last: HashMap<String, (i64, EventType)> = HashMap::new();
        for _ in 0..5_000 {
            let e = svc.next_event(&mut rng);
            let prev = last.get(&e.order_id).copied();
            match prev {
                None => {
                    assert_eq!(e.sequence, 0);
                    assert_eq!(e.event_type, EventType::Created);
                }
                Some((seq, t)) => {
                    assert_eq!(e.sequence, seq + 1, "{e:?}");
                    let legal = matches!(
                        (t, e.event_type),
                        (EventType::Created, EventType::Paid | EventType::Cancelled)
                            | (EventType::Paid, EventType::Shipped | EventType::Cancelled)
                            | (EventType::Shipped, EventType::Delivered)
                    );
                    assert!(legal, "{t:?} -> {:?}", e.event_type);
                }
            }
            last.insert(e.order_id.clone(), (e.sequence, e.event_type));
        }
        assert!(last.len() > 100, "orders should close and new ones open");
    }
}
