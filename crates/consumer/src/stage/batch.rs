//! The records one transaction covers, and the offsets it commits or rewinds to.

use std::collections::BTreeMap;

use crate::Record;

/// Records polled since the last committed transaction, in poll order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    records: Vec<Record>,
    /// Per partition: (first offset in the batch, next offset after the batch).
    spans: BTreeMap<i32, (i64, i64)>,
    /// Per partition: the assignment epoch its records were polled under.
    epochs: BTreeMap<i32, u64>,
}

impl Batch {
    /// Adds a record polled while its partition was in assignment epoch `epoch`.
    pub(crate) fn push(&mut self, rec: Record, epoch: u64) {
        let (p, o) = (rec.partition(), rec.offset());
        self.epochs.insert(p, epoch);
        self.spans
            .entry(p)
            .and_modify(|s| s.1 = s.1.max(o + 1))
            .or_insert((o, o + 1));
        self.records.push(rec);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// Drops the records of every partition whose assignment epoch moved on since they were
    /// polled (revoked, or revoked and assigned again, which restarts it from the committed
    /// offset). Returns how many were dropped.
    pub(crate) fn drop_stale(&mut self, current: impl Fn(i32) -> u64) -> usize {
        let stale: Vec<i32> = self
            .epochs
            .iter()
            .filter(|(p, e)| current(**p) != **e)
            .map(|(p, _)| *p)
            .collect();
        self.drop_partitions(&stale)
    }

    fn drop_partitions(&mut self, revoked: &[i32]) -> usize {
        if revoked.is_empty() || self.records.is_empty() {
            return 0;
        }
        let before = self.records.len();
        self.records.retain(|r| !revoked.contains(&r.partition()));
        for p in revoked {
            self.spans.remove(p);
            self.epochs.remove(p);
        }
        before - self.records.len()
    }

    /// The offsets a successful transaction commits: the next offset of every partition.
    pub(crate) fn commit_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.spans.iter().map(|(p, (_, next))| (*p, *next))
    }

    /// Where each partition's consumer position goes back to when the transaction is aborted,
    /// with the assignment epoch its records were polled under.
    pub(crate) fn rewind_offsets(&self) -> impl Iterator<Item = (i32, i64, u64)> + '_ {
        self.spans
            .iter()
            .map(|(p, (first, _))| (*p, *first, self.epochs.get(p).copied().unwrap_or(0)))
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.spans.clear();
        self.epochs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(p: i32, o: i64) -> Record {
        Record::from_parts("t", p, o, None, None, std::iter::empty(), None)
    }

    proptest! {
        /// Whatever is polled and revoked, a commit covers exactly the kept records (never an
        /// offset past one that was dropped or not polled) and a rewind goes back to the first
        /// kept record of each partition.
        #[test]
        fn commits_and_rewinds_cover_exactly_the_kept_records(
            lens in proptest::collection::vec(0usize..20, 1..5),
            starts in proptest::collection::vec(0i64..1000, 5),
            revoked in proptest::collection::vec(0i32..5, 0..3),
        ) {
            let mut b = Batch::default();
            // interleave partitions as a poll loop sees them
            let max = lens.iter().copied().max().unwrap_or(0);
            for i in 0..max {
                for (p, len) in lens.iter().enumerate() {
                    if i < *len {
                        b.push(rec(p as i32, starts[p] + i as i64), 1);
                    }
                }
            }
            let dropped = b.drop_stale(|p| if revoked.contains(&p) { 2 } else { 1 });
            let expected_dropped: usize = lens
                .iter()
                .enumerate()
                .filter(|(p, _)| revoked.contains(&(*p as i32)))
                .map(|(_, l)| *l)
                .sum();
            prop_assert_eq!(dropped, expected_dropped);
            let commits: BTreeMap<i32, i64> = b.commit_offsets().collect();
            let rewinds: BTreeMap<i32, i64> = b.rewind_offsets().map(|(p, o, _)| (p, o)).collect();
            for (p, len) in lens.iter().enumerate() {
                let p32 = p as i32;
                if revoked.contains(&p32) || *len == 0 {
                    prop_assert!(!commits.contains_key(&p32));
                    prop_assert!(!rewinds.contains_key(&p32));
                } else {
                    prop_assert_eq!(commits[&p32], starts[p] + *len as i64);
                    prop_assert_eq!(rewinds[&p32], starts[p]);
                }
            }
            prop_assert!(b.records().iter().all(|r| !revoked.contains(&r.partition())));
            b.clear();
            prop_assert!(b.is_empty() && b.commit_offsets().next().is_none());
        }
    }
}
