//! Key-ordered dispatch inside one partition (pure, no I/O).
//!
//! Every record maps to a [`Slot`]. A slot has at most one owner (worker) at a time, and its
//! records are taken one by one in offset order. Different slots run in parallel: a partition
//! has a small pool of workers (bounded elsewhere). A worker that finished a record releases its
//! slot and takes the *oldest* ready record (lowest offset among slots with queued records and
//! no owner), not its own slot's next one: the commit frontier advances only as the lowest
//! offsets finish, so chasing one key's later records would leave everything above an old gap
//! applied but uncommitted, to be redelivered after a rebalance. With
//! [`OrderingMode::Partition`] every record of the partition maps to the same slot, so the
//! partition is strictly sequential. Records without a key get their own slot (keyed by
//! offset): they have no ordering relation to anything.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::OrderingMode;

/// The ordering unit a record belongs to. (`Ord` only breaks ties in the ready queue, which do
/// not occur: offsets are unique within a partition.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Slot {
    /// Records sharing this key (a 64-bit hash of it: two keys that collide merely share a
    /// slot, which orders them more strictly than needed, never less).
    Key(u64),
    /// A key-less record (identified by its offset).
    Unkeyed(i64),
    /// The whole partition ([`OrderingMode::Partition`]).
    Partition,
}

impl Slot {
    pub(crate) fn for_record(mode: OrderingMode, key: Option<&[u8]>, offset: i64) -> Slot {
        match (mode, key) {
            (OrderingMode::Partition, _) => Slot::Partition,
            (_, Some(k)) => Slot::Key(key_hash(k)),
            (_, None) => Slot::Unkeyed(offset),
        }
    }
}

/// A 64-bit hash of a record key, once per record on the hot path. foldhash reads the key a
/// word at a time (a byte-at-a-time FNV took ~4 % of the partition owners' time on 36-byte
/// order ids); the seed is fixed, so a key maps to the same slot in every owner and run.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::fast::FixedState::with_seed(0x6f72_6465_7273_7472).hash_one(key)
}

/// Hasher of [`Slot`]s: their keys are already hashed, so SipHash again is wasted per record.
#[derive(Debug, Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // FxHash's step: enough to spread the enum tag and an already mixed value
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

#[derive(Debug)]
struct SlotQueue<T> {
    items: Fifo<(i64, T)>,
    /// A worker owns the slot (is processing one of its records).
    owned: bool,
}

/// A FIFO that holds its oldest item inline. Why: most keys have one record queued at a time,
/// and a `VecDeque` would allocate for it on every record; an empty `VecDeque` does not.
#[derive(Debug)]
struct Fifo<T> {
    /// The oldest item; set only while `more` is empty, so it is always older than `more`.
    first: Option<T>,
    more: VecDeque<T>,
}

impl<T> Fifo<T> {
    fn one(item: T) -> Self {
        Self {
            first: Some(item),
            more: VecDeque::new(),
        }
    }

    fn push_back(&mut self, item: T) {
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(item);
        } else {
            self.more.push_back(item);
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.more.pop_front())
    }

    fn front(&self) -> Option<&T> {
        self.first.as_ref().or_else(|| self.more.front())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    #[cfg(test)]
    fn clear(&mut self) {
        self.first = None;
        self.more.clear();
    }
}

/// The ready slots, each with the offset of its oldest queued record; the oldest comes out
/// first. Records arrive in offset order, so a slot that becomes ready on a push is nearly
/// always younger than every ready one: those go to a FIFO (O(1) both ways), and only the slots
/// readied again on a release, older than the FIFO's youngest, go to a heap. (The partition
/// owners queue only records of busy keys, so there slots become ready on a release.)
#[derive(Debug, Default)]
struct Ready {
    /// Ascending offsets.
    fifo: VecDeque<(i64, Slot)>,
    heap: BinaryHeap<Reverse<(i64, Slot)>>,
}

impl Ready {
    fn push(&mut self, offset: i64, slot: Slot) {
        if self
            .fifo
            .back()
            .is_none_or(|(youngest, _)| *youngest < offset)
        {
            self.fifo.push_back((offset, slot));
        } else {
            self.heap.push(Reverse((offset, slot)));
        }
    }

    fn pop(&mut self) -> Option<(i64, Slot)> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(Reverse(h))) if h < f => self.heap.pop().map(|Reverse(e)| e),
            (Some(_), _) => self.fifo.pop_front(),
            (None, _) => self.heap.pop().map(|Reverse(e)| e),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.heap.is_empty()
    }

    #[cfg(test)]
    fn clear(&mut self) {
        self.fifo.clear();
        self.heap.clear();
    }
}

/// Per-slot FIFO queues plus the ready slots, oldest queued record first.
///
/// Invariants: a slot is in `slots` iff it is owned or has queued items; a slot is in `ready`
/// (exactly once, with the offset of its oldest queued item) iff it is not owned and has queued
/// items (after [`KeyScheduler::clear_queued`] stale entries are dropped with the queues).
#[derive(Debug)]
pub(crate) struct KeyScheduler<T> {
    slots: HashMap<Slot, SlotQueue<T>, BuildHasherDefault<SlotHasher>>,
    ready: Ready,
}

impl<T> Default for KeyScheduler<T> {
    fn default() -> Self {
        Self {
            slots: HashMap::default(),
            ready: Ready::default(),
        }
    }
}

impl<T> KeyScheduler<T> {
    /// Queues `item` at `offset` (offsets of one slot arrive ascending); returns `true` when
    /// `slot` became ready (no owner, first queued item): a worker is needed for it.
    pub(crate) fn push(&mut self, slot: Slot, offset: i64, item: T) -> bool {
        match self.slots.get_mut(&slot) {
            Some(q) => {
                q.items.push_back((offset, item));
                false
            }
            None => {
                self.ready.push(offset, slot);
                self.slots.insert(
                    slot,
                    SlotQueue {
                        items: Fifo::one((offset, item)),
                        owned: false,
                    },
                );
                true
            }
        }
    }

    /// Whether `slot` is owned or has queued items: a newer record of it must queue
    /// ([`KeyScheduler::push`]) instead of starting at once.
    pub(crate) fn holds(&self, slot: Slot) -> bool {
        self.slots.contains_key(&slot)
    }

    /// Owns `slot` for a record started without passing through the queue (the slot was not
    /// [held](KeyScheduler::holds)), or keeps it owned; ended by [`KeyScheduler::release`].
    pub(crate) fn own(&mut self, slot: Slot) {
        self.slots
            .entry(slot)
            .or_insert_with(|| SlotQueue {
                items: Fifo {
                    first: None,
                    more: VecDeque::new(),
                },
                owned: true,
            })
            .owned = true;
    }

    /// Whether some slot waits for a worker.
    #[cfg(test)]
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Ends the ownership of `slot` (its record finished): it becomes ready again if it has
    /// queued items, and is forgotten otherwise.
    pub(crate) fn release(&mut self, slot: Slot) {
        let Some(q) = self.slots.get_mut(&slot).filter(|q| q.owned) else {
            return;
        };
        q.owned = false;
        match q.items.front() {
            Some((offset, _)) => self.ready.push(*offset, slot),
            None => {
                self.slots.remove(&slot);
            }
        }
    }

    /// Takes the oldest ready item and owns its slot. `None`: nothing is ready.
    pub(crate) fn take(&mut self) -> Option<(Slot, T)> {
        while let Some((_, slot)) = self.ready.pop() {
            let Some(q) = self.slots.get_mut(&slot) else {
                continue;
            };
            if q.owned {
                continue;
            }
            match q.items.pop_front() {
                Some((_, item)) => {
                    q.owned = true;
                    return Some((slot, item));
                }
                None => {
                    self.slots.remove(&slot);
                }
            }
        }
        None
    }

    /// Drops every queued (not started) item; owners keep their slots until their next
    /// [`KeyScheduler::take`]. Returns how many items were dropped.
    #[cfg(test)]
    pub(crate) fn clear_queued(&mut self) -> usize {
        let mut n = 0;
        self.slots.retain(|_, q| {
            n += q.items.len();
            q.items.clear();
            q.owned
        });
        self.ready.clear();
        n
    }

    /// Number of slots owned by a worker or with queued items.
    #[cfg(test)]
    pub(crate) fn active_slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(s: &[u8]) -> Slot {
        Slot::Key(key_hash(s))
    }

    /// Items are their own offsets here.
    fn push(s: &mut KeyScheduler<i64>, slot: Slot, offset: i64) -> bool {
        s.push(slot, offset, offset)
    }

    #[test]
    fn same_key_is_sequential_different_keys_parallel() {
        let mut s = KeyScheduler::default();
        assert!(push(&mut s, k(b"a"), 0));
        assert!(!push(&mut s, k(b"a"), 1));
        assert!(push(&mut s, k(b"b"), 2));
        assert_eq!(s.take(), Some((k(b"a"), 0)));
        // a second worker gets b (a is owned)
        assert_eq!(s.take(), Some((k(b"b"), 2)));
        assert!(!s.has_ready());
        assert_eq!(s.take(), None);
        s.release(k(b"a"));
        assert_eq!(s.take(), Some((k(b"a"), 1)));
        // a runs empty: released and forgotten, nothing else ready
        s.release(k(b"a"));
        assert_eq!(s.take(), None);
        assert_eq!(s.active_slots(), 1);
        // a new push makes it ready again
        assert!(push(&mut s, k(b"a"), 3));
        s.release(k(b"b"));
        assert_eq!(s.take(), Some((k(b"a"), 3)));
        s.release(k(b"a"));
        assert_eq!(s.take(), None);
        assert_eq!(s.active_slots(), 0);
    }

    #[test]
    fn a_released_slot_waits_behind_older_records() {
        // Key a has records at 0 and 10; b at 1..=3. After a's first record the worker takes
        // b's (older than a's next), so the lowest offsets finish first.
        let mut s = KeyScheduler::default();
        push(&mut s, k(b"a"), 0);
        push(&mut s, k(b"b"), 1);
        push(&mut s, k(b"c"), 2);
        push(&mut s, k(b"a"), 10);
        assert_eq!(s.take(), Some((k(b"a"), 0)));
        s.release(k(b"a"));
        assert_eq!(s.take(), Some((k(b"b"), 1)));
        assert_eq!(s.take(), Some((k(b"c"), 2)));
        assert_eq!(s.take(), Some((k(b"a"), 10)));
        // releasing twice does not make a slot ready twice
        s.release(k(b"b"));
        s.release(k(b"b"));
        assert_eq!(s.take(), None);
    }

    #[test]
    fn a_slot_owned_directly_queues_newer_records_until_released() {
        let mut s = KeyScheduler::default();
        let (a, b) = (k(b"a"), k(b"b"));
        assert!(!s.holds(a));
        s.own(a);
        assert!(s.holds(a) && !s.holds(b));
        // nothing queued: nothing to take, and a newer record of a waits
        assert_eq!(s.take(), None);
        assert!(!push(&mut s, a, 5));
        assert_eq!(s.take(), None);
        s.release(a);
        assert_eq!(s.take(), Some((a, 5)));
        // owning an owned slot changes nothing; its release hands nothing out twice
        s.own(a);
        s.release(a);
        assert_eq!(s.take(), None);
        assert!(!s.holds(a));
        assert_eq!(s.active_slots(), 0);
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
        let a = k(b"a");
        push(&mut s, a, 1);
        push(&mut s, a, 2);
        push(&mut s, k(b"b"), 5);
        assert_eq!(s.take(), Some((a, 1))); // running
        assert_eq!(s.clear_queued(), 2);
        assert!(!s.has_ready());
        // the running worker still owns the slot: a new push must not make it ready
        assert!(!push(&mut s, a, 3));
        assert_eq!(s.take(), None);
        s.release(a);
        assert_eq!(s.take(), Some((a, 3)));
        s.release(a);
        assert_eq!(s.take(), None);
        assert_eq!(s.active_slots(), 0);
    }

    proptest! {
        /// The ready queue gives what one heap would: the oldest entry first, whatever the mix
        /// of young entries (pushes) and older ones (releases).
        #[test]
        fn ready_queue_pops_the_oldest_like_a_heap(
            ops in proptest::collection::vec((any::<bool>(), 0i64..50), 1..300),
        ) {
            let mut ready = Ready::default();
            let mut model = BinaryHeap::new();
            let mut next = 0i64;
            for (push, back) in ops {
                if push {
                    // mostly the next offset; sometimes an older one, as a release brings
                    next += 1;
                    let offset = if back % 3 == 0 { next - back } else { next };
                    let entry = (offset, Slot::Unkeyed(next));
                    ready.push(entry.0, entry.1);
                    model.push(Reverse(entry));
                } else {
                    prop_assert_eq!(ready.pop(), model.pop().map(|Reverse(e)| e));
                }
            }
            while let Some(Reverse(e)) = model.pop() {
                prop_assert_eq!(ready.pop(), Some(e));
            }
            prop_assert!(ready.is_empty());
        }

        /// Random interleavings of arrivals and steps of a pool of workers: per key, items are
        /// processed in arrival order, a key never has two items running at once, a worker
        /// always gets the oldest item it may run, and every item is processed exactly once
        /// once the pool drains.
        #[test]
        fn per_key_order_exclusivity_and_liveness(
            ops in proptest::collection::vec((0u8..6, any::<bool>()), 1..400),
            pool in 1usize..4,
        ) {
            let mut s: KeyScheduler<(u8, u32)> = KeyScheduler::default();
            let mut workers: Vec<Option<u8>> = vec![None; pool];
            let mut seq = [0u32; 6];
            let mut seen: HashMap<u8, Vec<u32>> = HashMap::new();
            // (offset, key) of every item not taken yet
            let mut queued: Vec<(i64, u8)> = Vec::new();
            let step = |s: &mut KeyScheduler<(u8, u32)>, workers: &mut Vec<Option<u8>>, w: usize,
                            seen: &mut HashMap<u8, Vec<u32>>, queued: &mut Vec<(i64, u8)>|
                            -> Result<bool, TestCaseError> {
                if let Some(x) = workers[w].take() {
                    s.release(Slot::Key(u64::from(x)));
                }
                // the oldest item whose key no other worker runs
                let oldest = queued.iter().find(|(_, key)| !workers.contains(&Some(*key))).copied();
                match s.take() {
                    Some((slot, item)) => {
                        prop_assert_eq!(slot, Slot::Key(u64::from(item.0)));
                        prop_assert!(!workers.contains(&Some(item.0)), "second worker for key {}", item.0);
                        prop_assert_eq!(oldest.map(|o| o.1), Some(item.0), "not the oldest runnable item");
                        queued.retain(|q| Some(*q) != oldest);
                        workers[w] = Some(item.0);
                        seen.entry(item.0).or_default().push(item.1);
                        Ok(true)
                    }
                    None => {
                        prop_assert_eq!(oldest, None, "an item could run");
                        Ok(false)
                    }
                }
            };
            let mut offset = 0i64;
            for (key, arrive) in ops {
                if arrive {
                    let item = (key, seq[key as usize]);
                    seq[key as usize] += 1;
                    s.push(Slot::Key(u64::from(key)), offset, item);
                    queued.push((offset, key));
                    offset += 1;
                } else {
                    step(&mut s, &mut workers, key as usize % pool, &mut seen, &mut queued)?;
                }
            }
            // drain: step every worker until nobody gets anything
            loop {
                let mut any = false;
                for w in 0..pool {
                    any |= step(&mut s, &mut workers, w, &mut seen, &mut queued)?;
                }
                if !any { break; }
            }
            prop_assert_eq!(s.active_slots(), 0);
            for key in 0..6u8 {
                let v = seen.remove(&key).unwrap_or_default();
                prop_assert_eq!(v, (0..seq[key as usize]).collect::<Vec<_>>());
            }
        }
    }
}
