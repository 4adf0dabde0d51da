//! The outcome of asynchronous commits, from what the coordinator holds.
//!
//! librdkafka does not report the outcome of a commit the application issued to rust-rdkafka
//! (see `Side::committed`), so an asynchronous commit is settled when a read-back of the
//! committed offsets shows its offsets held (`ok`), or, after a quiet interval in which every
//! commit sent has had its answer, shows an answered partition held below it (`failed`). Pure:
//! the poll thread does the read-back and counts what this returns.

use std::collections::BTreeMap;

/// Removes from `pending` the asynchronous commits whose outcome `held` tells (see
/// `Side::resolve_async`) and returns how many succeeded and how many failed.
pub(super) fn settle(
    pending: &mut Vec<Vec<(i32, i64)>>,
    held: &BTreeMap<i32, i64>,
    quiet: bool,
) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    pending.retain(|commit| {
        let mut all_held = true;
        let mut short = false;
        for (p, o) in commit {
            match held.get(p) {
                Some(have) if have >= o => {}
                Some(_) => {
                    all_held = false;
                    short = true;
                }
                None => all_held = false,
            }
        }
        if all_held {
            ok += 1;
        } else if quiet && short {
            failed += 1;
        } else {
            return true;
        }
        false
    });
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(p: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        p.iter().copied().collect()
    }

    #[test]
    fn an_async_commit_is_settled_once_when_its_offsets_are_held() {
        let mut pending = vec![vec![(0, 10), (1, 5)], vec![(0, 20)]];
        // partition 1 not answered: the first commit stays pending; the second is below
        assert_eq!(settle(&mut pending, &held(&[(0, 12)]), false), (0, 0));
        assert_eq!(pending.len(), 2);
        assert_eq!(
            settle(&mut pending, &held(&[(0, 12), (1, 5)]), false),
            (1, 0)
        );
        assert_eq!(pending, vec![vec![(0, 20)]]);
        // the same answer again counts nothing more
        assert_eq!(
            settle(&mut pending, &held(&[(0, 12), (1, 5)]), false),
            (0, 0)
        );
        // later offsets held settle it too
        assert_eq!(settle(&mut pending, &held(&[(0, 30)]), false), (1, 0));
        assert!(pending.is_empty());
    }

    #[test]
    fn an_async_commit_held_below_fails_only_after_a_quiet_interval() {
        let mut pending = vec![vec![(0, 10), (1, 5)]];
        // still in flight, perhaps
        assert_eq!(
            settle(&mut pending, &held(&[(0, 3), (1, 5)]), false),
            (0, 0)
        );
        assert_eq!(pending.len(), 1);
        // one partition not answered, the other held below: failed
        assert_eq!(settle(&mut pending, &held(&[(0, -1)]), true), (0, 1));
        assert!(pending.is_empty());
        // not answered at all: no outcome
        let mut pending = vec![vec![(2, 7)]];
        assert_eq!(settle(&mut pending, &held(&[]), true), (0, 0));
        assert_eq!(pending.len(), 1);
    }
}
