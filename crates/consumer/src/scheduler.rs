//! Key-ordered dispatch inside one partition (pure, no I/O).
//!
//! Every record maps to a [`Slot`]. A slot has at most one worker at a time; the worker takes
//! the slot's records one by one in offset order. Different slots run in parallel (bounded
//! elsewhere by a semaphore). With [`OrderingMode::Partition`] every record of the partition maps
//! to the same slot, so the partition is strictly sequential. Records without a key get their own
//! slot (keyed by offset): they have no ordering relation to anything.

use std::collections::{HashMap, VecDeque};

use crate::config::OrderingMode;

/// The ordering unit a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Records sharing this key.
    Key(Vec<u8>),
    /// A key-less record (identified by its offset).
    Unkeyed(i64),
    /// The whole partition ([`OrderingMode::Partition`]).
    Partition,
}

impl Slot {
    pub(crate) fn for_record(mode: OrderingMode, key: Option<&[u8]>, offset: i64) -> Slot {
        match (mode, key) {
            (OrderingMode::Partition, _) => Slot::Partition,
            (_, Some(k)) => Slot::Key(k.to_vec()),
            (_, None) => Slot::Unkeyed(offset),
        }
    }
}

/// Per-slot FIFO queues. The presence of a slot means a worker owns it.
#[derive(Debug)]
pub(crate) struct KeyScheduler<T> {
    queues: HashMap<Slot, VecDeque<T>>,
}

impl<T> Default for KeyScheduler<T> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
        }
    }
}

impl<T> KeyScheduler<T> {
    /// Queues `item`; returns `true` when no worker owns `slot` yet (the caller must start one).
    pub(crate) fn push(&mut self, slot: Slot, item: T) -> bool {
        match self.queues.get_mut(&slot) {
            Some(q) => {
                q.push_back(item);
                false
            }
            None => {
                self.queues.insert(slot, VecDeque::from([item]));
                true
            }
        }
    }

    /// The worker of `slot` takes its next item; `None` releases the slot (the worker must stop).
    pub(crate) fn next(&mut self, slot: &Slot) -> Option<T> {
        let q = self.queues.get_mut(slot)?;
        match q.pop_front() {
            Some(item) => Some(item),
            None => {
                self.queues.remove(slot);
                None
            }
        }
    }

    /// Drops every queued (not started) item; workers keep their slots until their next
    /// [`KeyScheduler::next`]. Returns how many items were dropped.
    pub(crate) fn clear_queued(&mut self) -> usize {
        self.queues
            .values_mut()
            .map(|q| {
                let n = q.len();
                q.clear();
                n
            })
            .sum()
    }

    /// Number of slots owned by a worker.
    #[cfg(test)]
    pub(crate) fn active_slots(&self) -> usize {
        self.queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_key_is_sequential_different_keys_parallel() {
        let mut s = KeyScheduler::default();
        assert!(s.push(Slot::Key(b"a".to_vec()), 0));
        assert!(!s.push(Slot::Key(b"a".to_vec()), 1));
        assert!(s.push(Slot::Key(b"b".to_vec()), 2));
        let a = Slot::Key(b"a".to_vec());
        assert_eq!(s.next(&a), Some(0));
        assert_eq!(s.next(&a), Some(1));
        assert_eq!(s.next(&a), None);
        assert_eq!(s.active_slots(), 1);
        // after release a new push starts a new worker
        assert!(s.push(a.clone(), 3));
    }

    #[test]
    fn partition_mode_uses_one_slot() {
        assert_eq!(
            Slot::for_record(OrderingMode::Partition, Some(b"x"), 1),
            Slot::for_record(OrderingMode::Partition, None, 2)
        );
        assert_ne!(
            Slot::for_record(OrderingMode::Key, None, 1),
            Slot::for_record(OrderingMode::Key, None, 2)
        );
    }

    #[test]
    fn clear_keeps_slots_owned_until_next() {
        let mut s = KeyScheduler::default();
        let a = Slot::Key(b"a".to_vec());
        s.push(a.clone(), 1);
        s.push(a.clone(), 2);
        assert_eq!(s.next(&a), Some(1)); // running
        assert_eq!(s.clear_queued(), 1);
        // the running worker still owns the slot: a new push must not start a second worker
        assert!(!s.push(a.clone(), 3));
        assert_eq!(s.next(&a), Some(3));
        assert_eq!(s.next(&a), None);
    }

    proptest! {
        /// Random interleavings of arrivals and worker steps: per key, items are processed in
        /// arrival order, and a key never has two items running at once.
        #[test]
        fn per_key_order_and_exclusivity(ops in proptest::collection::vec((0u8..4, any::<bool>()), 1..400)) {
            let mut s: KeyScheduler<(u8, u32)> = KeyScheduler::default();
            let mut running: HashMap<u8, Option<(u8, u32)>> = HashMap::new(); // key -> current item
            let mut workers: Vec<u8> = Vec::new();
            let mut seq = [0u32; 4];
            let mut seen: HashMap<u8, Vec<u32>> = HashMap::new();
            for (k, arrive) in ops {
                if arrive {
                    let item = (k, seq[k as usize]);
                    seq[k as usize] += 1;
                    if s.push(Slot::Key(vec![k]), item) {
                        prop_assert!(!workers.contains(&k), "second worker for key {}", k);
                        workers.push(k);
                    }
                } else if !workers.is_empty() {
                    let w = workers[(k as usize) % workers.len()];
                    // finish current, take next
                    running.insert(w, None);
                    match s.next(&Slot::Key(vec![w])) {
                        Some(item) => { prop_assert_eq!(item.0, w); seen.entry(w).or_default().push(item.1); running.insert(w, Some(item)); }
                        None => { workers.retain(|x| *x != w); }
                    }
                }
            }
            for (_, v) in seen { prop_assert!(v.windows(2).all(|p| p[0] < p[1])); }
        }
    }
}
