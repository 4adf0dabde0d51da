//! Per-partition commit frontier: a pure data structure (no I/O).
//!
//! Offsets are *dispatched* in increasing order (the order the consumer hands them out) and
//! *completed* in any order. [`CommitFrontier::committable`] is the contiguous low-water mark in
//! Kafka's convention: the offset of the **next** record to consume, i.e. the lowest dispatched
//! offset that is not yet complete, or `highest dispatched + 1` when everything is complete.
//! A slow record therefore never lets a later, already finished one commit past it.
//!
//! Offsets need not be contiguous (compaction, transaction markers): only dispatched offsets are
//! tracked. Memory is `O(in-flight window)`: completed offsets at the front are dropped as soon as
//! they become contiguous.

use std::collections::VecDeque;

/// Errors from misuse of a [`CommitFrontier`] (bugs in the caller, never I/O).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    /// An offset was dispatched that is not above the highest already dispatched.
    #[error("offset {offset} dispatched out of order (highest dispatched {highest})")]
    OutOfOrder {
        /// The offending offset.
        offset: i64,
        /// The highest offset dispatched before it.
        highest: i64,
    },
    /// An offset was completed that is not in flight (never dispatched, or already completed).
    #[error("offset {offset} completed but not in flight")]
    NotInFlight {
        /// The offending offset.
        offset: i64,
    },
}

/// Tracks dispatched and completed offsets of one partition; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct CommitFrontier {
    /// Dispatched offsets not yet released, ascending, with their completion flag.
    window: VecDeque<(i64, bool)>,
    /// Highest offset ever dispatched.
    highest: Option<i64>,
    /// Number of dispatched, not completed offsets.
    in_flight: usize,
    /// The last offset confirmed committed (or sent for commit), Kafka convention.
    committed: Option<i64>,
}

impl CommitFrontier {
    /// An empty frontier (nothing dispatched yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was handed out for processing.
    pub fn dispatched(&mut self, offset: i64) -> Result<(), FrontierError> {
        if let Some(highest) = self.highest
            && offset <= highest
        {
            return Err(FrontierError::OutOfOrder { offset, highest });
        }
        self.highest = Some(offset);
        self.window.push_back((offset, false));
        self.in_flight += 1;
        Ok(())
    }

    /// Records that processing of `offset` finished (successfully or by being handed to the
    /// retry / dead-letter topic: anything that means "never needs to be consumed again").
    pub fn completed(&mut self, offset: i64) -> Result<(), FrontierError> {
        // Offsets are contiguous unless compaction or transaction markers left gaps: then the
        // index follows from the front's offset, and the search runs only after a gap.
        let guess = self
            .window
            .front()
            .and_then(|(front, _)| usize::try_from(offset.checked_sub(*front)?).ok());
        let idx = match guess {
            Some(i) if self.window.get(i).is_some_and(|(o, _)| *o == offset) => i,
            _ => self
                .window
                .binary_search_by_key(&offset, |(o, _)| *o)
                .map_err(|_| FrontierError::NotInFlight { offset })?,
        };
        let slot = &mut self.window[idx];
        if slot.1 {
            return Err(FrontierError::NotInFlight { offset });
        }
        slot.1 = true;
        self.in_flight -= 1;
        while matches!(self.window.front(), Some((_, true))) {
            self.window.pop_front();
        }
        Ok(())
    }

    /// The offset to commit (next to consume): the lowest unfinished dispatched offset, or
    /// `highest + 1` if all are finished; `None` if nothing was ever dispatched.
    pub fn committable(&self) -> Option<i64> {
        match self.window.front() {
            Some((offset, _)) => Some(*offset),
            None => self.highest.map(|h| h + 1),
        }
    }

    /// Number of dispatched offsets not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Highest offset ever dispatched.
    pub fn highest_dispatched(&self) -> Option<i64> {
        self.highest
    }

    /// The last offset recorded with [`CommitFrontier::mark_committed`].
    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// Records that `offset` (Kafka convention) was committed or sent for commit.
    pub fn mark_committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// Forgets a commit that failed, so the next [`CommitFrontier::pending_commit`] re-sends it.
    pub fn commit_failed(&mut self, offset: i64) {
        if self.committed == Some(offset) {
            self.committed = None;
        }
    }

    /// The committable offset if it is ahead of the last commit (i.e. a commit is due).
    pub fn pending_commit(&self) -> Option<i64> {
        let c = self.committable()?;
        match self.committed {
            Some(done) if done >= c => None,
            _ => Some(c),
        }
    }

    /// The range `[committable, highest + 1)` that is dispatched but not committable yet
    /// (reported on a forced close); `None` when empty.
    pub fn uncommitted_range(&self) -> Option<std::ops::Range<i64>> {
        let start = self.committable()?;
        let end = self.highest? + 1;
        (start < end).then_some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_has_nothing_to_commit() {
        let f = CommitFrontier::new();
        assert_eq!(f.committable(), None);
        assert_eq!(f.pending_commit(), None);
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn slow_record_holds_the_frontier() {
        let mut f = CommitFrontier::new();
        for o in 10..15 {
            f.dispatched(o).unwrap();
        }
        f.completed(12).unwrap();
        f.completed(13).unwrap();
        assert_eq!(f.committable(), Some(10));
        f.completed(10).unwrap();
        assert_eq!(f.committable(), Some(11));
        f.completed(11).unwrap();
        assert_eq!(f.committable(), Some(14));
        f.completed(14).unwrap();
        assert_eq!(f.committable(), Some(15));
        assert_eq!(f.in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut f = CommitFrontier::new();
        f.dispatched(5).unwrap();
        f.dispatched(9).unwrap();
        f.completed(9).unwrap();
        assert_eq!(f.committable(), Some(5));
        f.completed(5).unwrap();
        assert_eq!(f.committable(), Some(10));
    }

    #[test]
    fn misuse_is_reported() {
        let mut f = CommitFrontier::new();
        f.dispatched(3).unwrap();
        assert_eq!(
            f.dispatched(3),
            Err(FrontierError::OutOfOrder {
                offset: 3,
                highest: 3
            })
        );
        assert_eq!(
            f.completed(4),
            Err(FrontierError::NotInFlight { offset: 4 })
        );
        f.completed(3).unwrap();
        assert_eq!(
            f.completed(3),
            Err(FrontierError::NotInFlight { offset: 3 })
        );
    }

    #[test]
    fn pending_commit_tracks_marked_commits() {
        let mut f = CommitFrontier::new();
        f.dispatched(0).unwrap();
        f.completed(0).unwrap();
        assert_eq!(f.pending_commit(), Some(1));
        f.mark_committed(1);
        assert_eq!(f.pending_commit(), None);
        f.dispatched(1).unwrap();
        f.dispatched(2).unwrap();
        f.completed(2).unwrap();
        assert_eq!(f.pending_commit(), None);
        assert_eq!(f.uncommitted_range(), Some(1..3));
        f.completed(1).unwrap();
        assert_eq!(f.pending_commit(), Some(3));
        f.mark_committed(3);
        f.commit_failed(3);
        assert_eq!(f.pending_commit(), Some(3));
    }

    proptest! {
        /// For any completion order, the committable offset never exceeds the lowest unfinished
        /// offset, never regresses, and reaches `end` once all are done.
        #[test]
        fn committed_never_passes_lowest_unfinished(
            start in 0i64..1_000,
            gaps in proptest::collection::vec(1i64..4, 1..200),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::with_capacity(gaps.len());
            let mut o = start;
            for g in &gaps { offsets.push(o); o += g; }
            let mut f = CommitFrontier::new();
            for &o in &offsets { f.dispatched(o).unwrap(); }
            // deterministic shuffle from the seed
            let mut order = offsets.clone();
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                let j = (s % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let mut done = std::collections::BTreeSet::new();
            let mut last = f.committable().unwrap();
            for &o in &order {
                f.completed(o).unwrap();
                done.insert(o);
                let c = f.committable().unwrap();
                let lowest_unfinished = offsets.iter().copied().find(|x| !done.contains(x));
                if let Some(lu) = lowest_unfinished { prop_assert!(c <= lu, "committable {c} > lowest unfinished {lu}"); }
                prop_assert!(c >= last, "frontier regressed {last} -> {c}");
                // every offset below the frontier is done
                prop_assert!(offsets.iter().filter(|&&x| x < c).all(|x| done.contains(x)));
                last = c;
            }
            prop_assert_eq!(f.committable(), Some(offsets[offsets.len() - 1] + 1));
            prop_assert_eq!(f.in_flight(), 0);
        }

        /// Interleaving dispatch and completion keeps in_flight exact.
        #[test]
        fn in_flight_is_exact(ops in proptest::collection::vec(any::<bool>(), 1..300)) {
            let mut f = CommitFrontier::new();
            let mut next = 0i64;
            let mut open: Vec<i64> = Vec::new();
            for (i, dispatch) in ops.iter().enumerate() {
                if *dispatch || open.is_empty() {
                    f.dispatched(next).unwrap(); open.push(next); next += 1;
                } else {
                    let o = open.remove(i % open.len());
                    f.completed(o).unwrap();
                }
                prop_assert_eq!(f.in_flight(), open.len());
                let expect = open.iter().min().copied().unwrap_or(next);
                prop_assert_eq!(f.committable(), Some(expect));
            }
        }
    }
}
