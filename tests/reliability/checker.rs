//! The reliability checker: compares what the producer was told (acked, possibly persisted) with
//! what a consumer read or applied, and reports one row of figures per scenario.
//!
//! Definitions (each figure is a count of records unless its name says otherwise):
//! * `acked`: records the producer reported [`DeliveryOutcome::Delivered`], with their position.
//! * `consumed_distinct`: distinct event ids the consumer side saw.
//! * `lost`: acked event ids never consumed. Must be 0.
//! * `misplaced`: acked records whose reported (partition, offset) holds another event id.
//! * `dup_raw`: consumed records minus distinct event ids (redeliveries, producer resends).
//! * `dup_after_dedup`: effects applied more than once per event id, counted from a list of
//!   effects the product itself recorded (its durable store). `None` (rendered `–`) when the
//!   scenario has no such list: a count from the test's own dedup, or from a dedup big enough to
//!   hold every record, is 0 by construction and measures nothing.
//! * `reorderings`: per (partition, key), a sequence lower than the previous one in the order
//!   records were first consumed (redeliveries of already-seen event ids are skipped).
//! * `rewinds`: per partition, times the consumed offset went backwards in consumption order
//!   (a redelivery after a restart or rebalance). Reported, not a failure: the frontier replays
//!   unfinished work by design. Figures below ignore redeliveries; this one makes them visible.
//! * `sequence_gaps`: per key, sequences missing between the lowest and highest consumed one
//!   (scenarios send each key's sequences 0, 1, 2, … in order).
//! * `unexplained_gaps`: gaps whose event the producer was never told failed: the missing
//!   sequence was acked (then it is also `lost`) or never attempted. Must be 0. `None` when the
//!   scenario did not record its unacknowledged attempts.
//! * `phantoms`: consumed event ids that were never sent (neither acked nor an unacknowledged
//!   attempt). Must be 0. `None` as for `unexplained_gaps`.
//! * `possibly_persisted`: timed-out / in-doubt sends; settled downstream by dedup.
//! * `recover_ms`: the scenario's time to recover (defined per scenario in `extra`).
//!
//! [`DeliveryOutcome::Delivered`]: orderstream_producer::DeliveryOutcome::Delivered
#![allow(unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

/// One event as the producer acked it or the consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub event_id: String,
    pub key: String,
    pub sequence: i64,
    pub partition: i32,
    pub offset: i64,
}

/// What a scenario observed.
#[derive(Debug, Default)]
pub struct Observed {
    pub acked: Vec<Ev>,
    /// Every send that was not acknowledged (failed, possibly persisted, not sent), with its key
    /// and sequence; `None` when the scenario did not record them.
    pub unacked: Option<Vec<Ev>>,
    pub possibly_persisted: usize,
    /// In consumption order, redeliveries included.
    pub consumed: Vec<Ev>,
    /// Event ids whose effect was applied (in order), when the consumer side tracked effects.
    pub effects: Option<Vec<String>>,
    pub recover: Option<Duration>,
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct Figures {
    pub scenario: String,
    pub acked: usize,
    pub consumed_raw: usize,
    pub consumed_distinct: usize,
    pub lost: usize,
    pub misplaced: usize,
    pub dup_raw: usize,
    pub dup_after_dedup: Option<usize>,
    pub reorderings: usize,
    pub rewinds: usize,
    pub sequence_gaps: usize,
    pub unexplained_gaps: Option<usize>,
    pub phantoms: Option<usize>,
    pub possibly_persisted: usize,
    pub recover_ms: Option<u128>,
    pub elapsed_s: f64,
    pub extra: BTreeMap<String, Value>,
    /// `false` for a scenario that sends and reads no events (its figures are its `extra`):
    /// the delivery columns then render `–` rather than zeros that measured nothing.
    pub delivery: bool,
}

/// Computes the figures.
pub fn check(scenario: &str, obs: &Observed) -> Figures {
    let mut distinct: HashSet<&str> = HashSet::with_capacity(obs.consumed.len());
    let mut at: HashMap<(i32, i64), &str> = HashMap::with_capacity(obs.consumed.len());
    let mut last_seq: HashMap<(i32, &str), i64> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut seqs: HashMap<&str, std::collections::BTreeSet<i64>> = HashMap::new();
    let mut reorderings = 0;
    let mut rewinds = 0;
    for e in &obs.consumed {
        at.entry((e.partition, e.offset)).or_insert(&e.event_id);
        if let Some(prev) = last_offset.insert(e.partition, e.offset)
            && e.offset < prev
        {
            rewinds += 1;
        }
        seqs.entry(&e.key).or_default().insert(e.sequence);
        if !distinct.insert(&e.event_id) {
            continue; // a redelivery: not an ordering event
        }
        if let Some(prev) = last_seq.insert((e.partition, &e.key), e.sequence)
            && e.sequence < prev
        {
            reorderings += 1;
        }
    }
    let lost = obs
        .acked
        .iter()
        .filter(|a| !distinct.contains(a.event_id.as_str()))
        .count();
    let misplaced = obs
        .acked
        .iter()
        .filter(|a| {
            at.get(&(a.partition, a.offset))
                .is_some_and(|id| *id != a.event_id)
        })
        .count();
    // Per key, the sequences missing between the lowest and highest consumed one.
    let missing: Vec<(&str, i64)> = seqs
        .iter()
        .flat_map(|(key, s)| {
            let (lo, hi) = (
                s.first().copied().unwrap_or(0),
                s.last().copied().unwrap_or(0),
            );
            (lo..hi).filter(|q| !s.contains(q)).map(move |q| (*key, q))
        })
        .collect();
    let (unexplained_gaps, phantoms) = match &obs.unacked {
        None => (None, None),
        Some(unacked) => {
            let told: HashSet<(&str, i64)> = unacked
                .iter()
                .map(|e| (e.key.as_str(), e.sequence))
                .collect();
            let sent: HashSet<&str> = obs
                .acked
                .iter()
                .chain(unacked)
                .map(|e| e.event_id.as_str())
                .collect();
            (
                Some(missing.iter().filter(|m| !told.contains(*m)).count()),
                Some(distinct.iter().filter(|id| !sent.contains(*id)).count()),
            )
        }
    };
    let dup_after_dedup = obs.effects.as_ref().map(|effects| {
        let unique: HashSet<&str> = effects.iter().map(String::as_str).collect();
        effects.len() - unique.len()
    });
    Figures {
        scenario: scenario.to_owned(),
        acked: obs.acked.len(),
        consumed_raw: obs.consumed.len(),
        consumed_distinct: distinct.len(),
        lost,
        misplaced,
        dup_raw: obs.consumed.len() - distinct.len(),
        dup_after_dedup,
        reorderings,
        rewinds,
        sequence_gaps: missing.len(),
        unexplained_gaps,
        phantoms,
        possibly_persisted: obs.possibly_persisted,
        recover_ms: obs.recover.map(|d| d.as_millis()),
        elapsed_s: 0.0,
        extra: BTreeMap::new(),
        delivery: true,
    }
}

/// The row of a scenario that checks something other than delivery (e.g. refusals of bad
/// input): no delivery figure, only its `extra` ones.
pub fn without_delivery(scenario: &str) -> Figures {
    Figures {
        delivery: false,
        ..check(scenario, &Observed::default())
    }
}

impl Figures {
    /// Adds a scenario-specific figure.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The JSON row written to `results.jsonl`.
    pub fn to_json(&self) -> Value {
        if !self.delivery {
            return json!({
                "scenario": self.scenario,
                "elapsed_s": (self.elapsed_s * 10.0).round() / 10.0,
                "extra": self.extra,
            });
        }
        json!({
            "scenario": self.scenario,
            "acked": self.acked,
            "consumed_raw": self.consumed_raw,
            "consumed_distinct": self.consumed_distinct,
            "lost": self.lost,
            "misplaced": self.misplaced,
            "dup_raw": self.dup_raw,
            "dup_after_dedup": self.dup_after_dedup,
            "reorderings": self.reorderings,
            "rewinds": self.rewinds,
            "sequence_gaps": self.sequence_gaps,
            "unexplained_gaps": self.unexplained_gaps,
            "phantoms": self.phantoms,
            "possibly_persisted": self.possibly_persisted,
            "recover_ms": self.recover_ms,
            "elapsed_s": (self.elapsed_s * 10.0).round() / 10.0,
            "extra": self.extra,
        })
    }

    /// Prints the table row and appends the JSON row to `target/reliability/results.jsonl`.
    pub fn report(&self) {
        println!(
            "| {:<28} | acked {:>7} | consumed {:>7} | lost {:>3} | misplaced {:>3} | dup raw {:>5} | dup dedup {:>3} | reorder {:>3} | poss.pers {:>4} | recover {:>6} ms | {:>6.1} s | {}",
            self.scenario,
            self.acked,
            self.consumed_distinct,
            self.lost,
            self.misplaced,
            self.dup_raw,
            self.dup_after_dedup
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            self.reorderings,
            self.possibly_persisted,
            self.recover_ms
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            self.elapsed_s,
            serde_json::to_string(&self.extra).unwrap_or_default()
        );
        let dir = results_dir();
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("results.jsonl"))
        {
            let _ = writeln!(f, "{}", self.to_json());
        }
    }

    /// The promise: nothing acked lost or misplaced, no duplicate effect, no per-key reordering.
    pub fn assert_promise(&self) {
        assert_eq!(
            self.lost, 0,
            "{}: acked events lost: {self:?}",
            self.scenario
        );
        assert_eq!(
            self.misplaced, 0,
            "{}: acked positions hold other events: {self:?}",
            self.scenario
        );
        assert!(
            self.dup_after_dedup.is_none_or(|d| d == 0),
            "{}: duplicate effects after dedup: {self:?}",
            self.scenario
        );
        assert_eq!(
            self.reorderings, 0,
            "{}: per-key reorderings: {self:?}",
            self.scenario
        );
        assert!(
            self.unexplained_gaps.is_none_or(|g| g == 0),
            "{}: per-key sequence gaps the producer was not told about: {self:?}",
            self.scenario
        );
        assert!(
            self.phantoms.is_none_or(|p| p == 0),
            "{}: consumed events that were never sent: {self:?}",
            self.scenario
        );
    }
}

/// `target/reliability` (next to the test binary's target dir).
pub fn results_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| orderstream_testkit::repo_root().join("target"))
        .join("reliability")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, key: &str, seq: i64, p: i32, o: i64) -> Ev {
        Ev {
            event_id: id.into(),
            key: key.into(),
            sequence: seq,
            partition: p,
            offset: o,
        }
    }

    #[test]
    fn counts_loss_dups_and_reorderings() {
        let obs = Observed {
            acked: vec![
                ev("a", "k", 0, 0, 0),
                ev("b", "k", 1, 0, 1),
                ev("c", "k", 2, 0, 9),
            ],
            consumed: vec![
                ev("a", "k", 0, 0, 0),
                ev("b", "k", 1, 0, 1),
                ev("a", "k", 0, 0, 0), // redelivery: not a reordering
                ev("d", "k", 0, 0, 2), // a reordering
            ],
            ..Observed::default()
        };
        let f = check("t", &obs);
        assert_eq!(f.lost, 1);
        assert_eq!(f.dup_raw, 1);
        assert_eq!(f.dup_after_dedup, None, "no effect list: not measured");
        assert_eq!(f.reorderings, 1);
        assert_eq!(f.misplaced, 0);
        assert_eq!(f.rewinds, 1, "the redelivery of offset 0 after offset 1");
        assert_eq!(
            f.unexplained_gaps, None,
            "attempts not recorded: not measured"
        );
    }

    #[test]
    fn gaps_must_be_failed_sends_and_nothing_appears_unsent() {
        let obs = Observed {
            acked: vec![
                ev("a", "k", 0, 0, 0),
                ev("c", "k", 2, 0, 1),
                ev("e", "k", 4, 0, 2),
            ],
            // seq 1 failed and the producer said so; seq 3 nobody reported
            unacked: Some(vec![ev("b", "k", 1, -1, -1)]),
            consumed: vec![
                ev("a", "k", 0, 0, 0),
                ev("c", "k", 2, 0, 1),
                ev("e", "k", 4, 0, 2),
                ev("x", "other", 0, 1, 0), // never sent
            ],
            ..Observed::default()
        };
        let f = check("t", &obs);
        assert_eq!(f.sequence_gaps, 2);
        assert_eq!(f.unexplained_gaps, Some(1), "seq 3");
        assert_eq!(f.phantoms, Some(1), "x");
        assert_eq!(f.lost, 0);
        let promise = std::panic::catch_unwind(|| f.assert_promise());
        assert!(
            promise.is_err(),
            "an unexplained gap and a phantom break the promise"
        );
    }
}
