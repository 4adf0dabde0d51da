//! Bounded deduplication by event id.
//!
//! A [`Dedup`] remembers the last `capacity` distinct event ids (global, FIFO eviction: a window,
//! not a store). Redeliveries after a crash or a rebalance are at most the uncommitted range of
//! the affected partitions (bounded by `max_in_flight_per_partition` × partitions plus one commit
//! interval of traffic), so a capacity comfortably above that catches every redelivery. A
//! duplicate older than `capacity` distinct ids is not detected: size it accordingly, or put a
//! durable store behind the processor when effects must be exactly once across longer windows.
//! The window is in memory: it does not survive a process restart (pair it with an
//! idempotent sink or per-key sequence checks, as the sample processor does).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Thread-safe bounded set of recently seen event ids; see the module docs.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    inner: Mutex<Window>,
    duplicates: AtomicU64,
}

#[derive(Debug, Default)]
struct Window {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    /// A window of `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Window::default()),
            duplicates: AtomicU64::new(0),
        }
    }

    /// Whether `id` was already seen (counts a duplicate) — does not insert.
    pub fn seen(&self, id: &str) -> bool {
        let w = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dup = w.set.contains(id);
        if dup {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        dup
    }

    /// Remembers `id` (call after the effect was applied). Returns `false` if already present.
    pub fn insert(&self, id: &str) -> bool {
        let mut w = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.set.contains(id) {
            return false;
        }
        w.set.insert(id.to_owned());
        w.order.push_back(id.to_owned());
        while w.order.len() > self.capacity {
            if let Some(old) = w.order.pop_front() {
                w.set.remove(&old);
            }
        }
        true
    }

    /// Check-and-insert in one step: `true` if `id` is new (and now remembered).
    pub fn first_time(&self, id: &str) -> bool {
        let new = self.insert(id);
        if !new {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// Duplicates detected so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .order
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_duplicates_within_window() {
        let d = Dedup::new(2);
        assert!(d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(!d.first_time("a"));
        assert_eq!(d.duplicates(), 1);
        assert!(d.first_time("c")); // evicts a
        assert!(d.first_time("a"));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn seen_does_not_insert() {
        let d = Dedup::new(4);
        assert!(!d.seen("x"));
        assert!(d.insert("x"));
        assert!(d.seen("x"));
        assert_eq!(d.duplicates(), 1);
    }
}
