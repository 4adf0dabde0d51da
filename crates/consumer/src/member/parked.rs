//! The per-key order rule's registry: which keys of which source partitions have records parked
//! in the retry topic and not yet final (see the crate docs). Shared by the member's source and
//! retry consumers; touched only while something is parked or being parked.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// (topic, partition) of a source partition.
pub(crate) type Tp = (String, i32);

#[derive(Debug, Default)]
struct Inner {
    /// Source partitions this member owns: ids are tracked only for those.
    owned: HashSet<Tp>,
    /// (origin, key) -> pending park ids (they grow with source order).
    pending: HashMap<(Tp, Vec<u8>), BTreeSet<u64>>,
}

#[derive(Debug, Default)]
pub(crate) struct Parked {
    inner: Mutex<Inner>,
    /// `pending.len()`, written under the lock: lets the hot path skip the lock while nothing
    /// is parked.
    keys: AtomicUsize,
    next_id: AtomicU64,
}

impl Parked {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, inner: &Inner) {
        self.keys.store(inner.pending.len(), Ordering::Release);
    }

    /// A fresh park id (ids grow with the order records are parked in).
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether no key has a record parked (the hot path's check, before it builds a lookup).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.load(Ordering::Acquire) == 0
    }

    /// Whether a record of `key` from `origin` must follow a parked predecessor: a fresh record
    /// (`park_id` None) follows if anything of its key is pending; a parked one only if a record
    /// parked *before it* (smaller id) is.
    pub(crate) fn must_follow(
        &self,
        (topic, partition): (&str, i32),
        key: &[u8],
        park_id: Option<u64>,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let inner = self.lock();
        let Some(set) = inner
            .pending
            .get(&((topic.to_owned(), partition), key.to_vec()))
        else {
            return false;
        };
        match park_id {
            None => !set.is_empty(),
            Some(id) => set.range(..id).next().is_some(),
        }
    }

    /// Registers `id` before its record is sent to the retry topic, so a later record of the
    /// key that is processed while the send is still in flight already follows it.
    pub(crate) fn add(&self, (topic, partition): (&str, i32), key: &[u8], id: u64) {
        let mut inner = self.lock();
        let origin = (topic.to_owned(), partition);
        if inner.owned.contains(&origin) {
            inner
                .pending
                .entry((origin, key.to_vec()))
                .or_default()
                .insert(id);
            self.publish(&inner);
        }
    }

    /// The parked record reached a final state (processed or dead-lettered).
    pub(crate) fn remove(&self, (topic, partition): (&str, i32), key: &[u8], id: u64) {
        if self.keys.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut inner = self.lock();
        let k = ((topic.to_owned(), partition), key.to_vec());
        if let Some(set) = inner.pending.get_mut(&k) {
            set.remove(&id);
            if set.is_empty() {
                inner.pending.remove(&k);
            }
        }
        self.publish(&inner);
    }

    /// Source partitions assigned: their keys are tracked from now on.
    pub(crate) fn own(&self, tps: &[Tp]) {
        let mut inner = self.lock();
        inner.owned.extend(tps.iter().cloned());
    }

    /// Source partitions revoked or lost: their pending ids are forgotten (see the crate docs
    /// for what that means for order).
    pub(crate) fn disown(&self, tps: &[Tp]) {
        let mut inner = self.lock();
        for tp in tps {
            inner.owned.remove(tp);
        }
        inner.pending.retain(|(tp, _), _| !tps.contains(tp));
        self.publish(&inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_rule() {
        let p = Parked::default();
        let tp: Tp = ("o".into(), 1);
        let o = ("o", 1);
        p.add(o, b"k", 5);
        assert!(!p.must_follow(o, b"k", None), "not owned: not tracked");
        p.own(std::slice::from_ref(&tp));
        p.add(o, b"k", 5);
        assert!(p.must_follow(o, b"k", None));
        assert!(!p.must_follow(o, b"other", None));
        assert!(
            !p.must_follow(o, b"k", Some(5)),
            "a record never follows itself"
        );
        assert!(p.must_follow(o, b"k", Some(6)));
        p.remove(o, b"k", 5);
        assert!(!p.must_follow(o, b"k", None));
        p.add(o, b"k", 7);
        p.disown(std::slice::from_ref(&tp));
        assert!(!p.must_follow(o, b"k", None));
    }
}
