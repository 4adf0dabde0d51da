//! The poll thread's table of owned partitions: hand-off to owners, backpressure decisions,
//! commit lists and draining.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

use super::owner::OwnerLink;
use crate::Record;

/// How long a cancelled owner gets to drop its handlers before the poll thread goes on without
/// it (a handler that blocks its thread instead of awaiting cannot be cancelled sooner).
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Most records a partition's next batch is allocated for up front: about a poll burst's share
/// of one partition. It also bounds the unused capacity a batch carries to the owner (a batch
/// that gathered while the owner's channel was full can be far longer than the next one).
const MAX_RESERVE: usize = 256;

/// How long after its last records a partition under half its window still counts as waiting
/// for the poll: one that gets none (caught up, no traffic) has nothing for the poll to bring.
/// Seconds, not less: a partition whose records queue in librdkafka behind another's, which
/// the poll thread feeds at its handler's pace, gets none for a while and still has a backlog
/// (at 1 s the memory benchmark's slow handler processed 12 % fewer records, its owners idle).
const FED_RECENTLY: Duration = Duration::from_secs(10);

/// One owned partition as the poll thread sees it.
#[derive(Debug)]
pub(crate) struct Owned {
    pub(crate) link: OwnerLink,
    /// Records polled and not yet handed to the owner (its channel was full).
    pending: Vec<Record>,
    /// Bytes of `pending`.
    pending_bytes: usize,
    /// Length of the last batch handed over: the next one is allocated at that size when its
    /// first record comes.
    last_batch: usize,
    pub(crate) paused: bool,
    /// When records last came for it (stamped once per poll burst).
    fed: Option<Instant>,
    /// First and highest offset handed to the owner.
    first: Option<i64>,
    highest: i64,
    /// Last offset sent for commit (Kafka convention), `-1` for none.
    pub(crate) sent_commit: i64,
}

impl Owned {
    pub(crate) fn new(link: OwnerLink) -> Self {
        Self {
            link,
            pending: Vec::new(),
            pending_bytes: 0,
            last_batch: 0,
            paused: false,
            fed: None,
            first: None,
            highest: -1,
            sent_commit: -1,
        }
    }

    /// The committable offset published by the owner, `None` before any record finished.
    pub(crate) fn committable(&self) -> Option<i64> {
        let c = self.link.ctx.committable.load(Ordering::Acquire);
        (c >= 0).then_some(c)
    }

    /// Offsets from the lowest unfinished record to the highest handed over.
    fn span(&self) -> usize {
        let Some(first) = self.first else {
            return 0;
        };
        let low = self.committable().unwrap_or(first).max(first);
        usize::try_from(self.highest + 1 - low).unwrap_or(0)
    }

    /// Bytes of the records handed to the owner and not finished, plus those not handed over.
    fn bytes(&self) -> usize {
        self.link.ctx.unfinished_bytes.load(Ordering::Relaxed) + self.pending_bytes
    }

    /// Takes a polled record; `false` if it was handed over before (ignored).
    pub(crate) fn push(&mut self, rec: Record) -> bool {
        if rec.offset() <= self.highest {
            return false;
        }
        self.highest = rec.offset();
        self.first.get_or_insert(rec.offset());
        self.pending_bytes += rec.size();
        if self.pending.capacity() == 0 {
            // Each batch goes to the owner whole: grown from empty, a batch of a few hundred
            // records would be reallocated and copied eight times or so on the poll thread.
            self.pending.reserve(self.last_batch);
        }
        self.pending.push(rec);
        true
    }

    /// Hands pending records to the owner if its channel has room.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let permit = match self.link.tx.try_reserve() {
            Ok(permit) => permit,
            Err(TrySendError::Full(())) => return,
            // the owner is gone (stopping): nothing of this partition is processed any more
            Err(TrySendError::Closed(())) => {
                self.pending = Vec::new();
                self.pending_bytes = 0;
                return;
            }
        };
        // Counted once per batch, and before the owner can see the batch (its subtractions
        // must never run ahead of this addition): the count is shared with the owner's thread,
        // and a shared counter touched per record bounces between the two cores.
        self.link
            .ctx
            .unfinished_bytes
            .fetch_add(std::mem::take(&mut self.pending_bytes), Ordering::Relaxed);
        self.last_batch = self.pending.len().min(MAX_RESERVE);
        permit.send(std::mem::take(&mut self.pending));
    }

    /// Whether the offset window or the byte window is full.
    pub(crate) fn full(&self, max_span: usize, window: usize) -> bool {
        self.span() >= max_span || self.bytes() >= window
    }

    /// Whether to pause: a window is full, or the owner could not take the last records.
    pub(crate) fn over(&self, max_span: usize, window: usize) -> bool {
        !self.pending.is_empty() || self.full(max_span, window)
    }

    /// Stamps `now` if records came since the last hand-over (call before [`Owned::flush`]).
    pub(crate) fn note_fed(&mut self, now: Instant) {
        if !self.pending.is_empty() {
            self.fed = Some(now);
        }
    }

    /// Whether it waits for the poll: half empty, and paused (its records are still to be
    /// fetched) or fed recently (more are likely to come).
    pub(crate) fn hungry(&self, max_span: usize, window: usize, now: Instant) -> bool {
        self.under(max_span, window)
            && (self.paused
                || self
                    .fed
                    .is_some_and(|t| now.saturating_duration_since(t) < FED_RECENTLY))
    }

    /// Whether a paused partition may resume: both windows half empty.
    pub(crate) fn under(&self, max_span: usize, window: usize) -> bool {
        self.pending.is_empty() && self.span() <= max_span / 2 && self.bytes() <= window / 2
    }
}

/// The owned partitions of one consumer (one topic), indexed by partition number.
#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Vec<Option<Owned>>,
}

impl Table {
    pub(crate) fn get_mut(&mut self, partition: i32) -> Option<&mut Owned> {
        self.slots
            .get_mut(usize::try_from(partition).ok()?)
            .and_then(Option::as_mut)
    }

    pub(crate) fn insert(&mut self, partition: i32, owned: Owned) -> Option<Owned> {
        let i = usize::try_from(partition).unwrap_or(0);
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace(owned)
    }

    pub(crate) fn remove(&mut self, partition: i32) -> Option<Owned> {
        self.slots
            .get_mut(usize::try_from(partition).ok()?)
            .and_then(Option::take)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Owned> {
        self.slots.iter_mut().flatten()
    }
}

/// A stopped owner's last word: what may be committed and what stays uncommitted.
#[derive(Debug)]
pub(crate) struct Drained {
    pub(crate) partition: i32,
    pub(crate) committable: Option<i64>,
    pub(crate) uncommitted: Option<std::ops::Range<i64>>,
    /// A handler was still running when the partition was released (it did not yield to its
    /// cancellation).
    pub(crate) stuck: bool,
}

/// Stops `owners` and waits until each has finished its running records or `deadline` passed;
/// then cancels what still runs (and waits for that, briefly). Queued records are dropped. The
/// committable offsets are read only after the owners ended, so a cancelled handler can never
/// have its offset committed or keep applying after this returns.
pub(crate) fn drain(owners: Vec<Owned>, deadline: Instant) -> Vec<Drained> {
    struct Waiting {
        ctx: std::sync::Arc<super::handler::PartCtx>,
        done: std::sync::mpsc::Receiver<()>,
        kill: tokio_util::sync::CancellationToken,
        first: Option<i64>,
        highest: i64,
    }
    let waiting: Vec<Waiting> = owners
        .into_iter()
        .map(|o| {
            o.link.ctx.stop.cancel();
            // closing the channel tells an idle owner it is done
            let OwnerLink {
                ctx,
                tx,
                done,
                kill,
                ..
            } = o.link;
            drop(tx);
            Waiting {
                ctx,
                done,
                kill,
                first: o.first,
                highest: o.highest,
            }
        })
        .collect();
    let timed_out = |w: &Waiting, d: Duration| {
        w.done.recv_timeout(d) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    };
    let mut killed = Vec::new();
    for w in &waiting {
        if timed_out(w, deadline.saturating_duration_since(Instant::now())) {
            w.kill.cancel();
            killed.push(w);
        }
    }
    let mut stuck = std::collections::BTreeSet::new();
    for w in killed {
        if timed_out(w, KILL_GRACE) {
            warn!(topic = %w.ctx.topic, partition = w.ctx.partition, "a handler does not yield: its partition is released while it still runs");
            stuck.insert(w.ctx.partition);
        }
    }
    waiting
        .iter()
        .map(|w| {
            let c = w.ctx.committable.load(Ordering::Acquire);
            let committable = (c >= 0).then_some(c);
            let uncommitted = w.first.and_then(|first| {
                let low = committable.unwrap_or(first).max(first);
                (low <= w.highest).then(|| low..w.highest + 1)
            });
            Drained {
                partition: w.ctx.partition,
                committable,
                uncommitted,
                stuck: stuck.contains(&w.ctx.partition),
            }
        })
        .collect()
}
