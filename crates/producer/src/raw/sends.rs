//! The sends of one batch, awaited together.
//!
//! A batch can hold hundreds of thousands of records, so what is kept per record is only what
//! differs per record: when it was handed to librdkafka (or, rarely, an outcome known before it
//! got there). The handle the records went out on (it changes only when rebuilt), their tracing
//! spans (none unless a subscriber listens at `debug`) and the in-flight count are kept per batch.
//! Per-record bookkeeping of ~200 bytes (a waiting future each) made the producer spend more time
//! in page faults for fresh memory than in librdkafka on ~100-byte records.

use std::sync::Arc;
use std::time::Instant;

use tracing::Span;

use super::DeliveryOutcome;
use super::core::Core;
use super::handle::Handle;
use super::pending::Sent;
use super::trace::trace_outcome;
use crate::completion::{Batch, Slot};
use crate::error::ProducerError;

/// A batch serves the producer's ready delivery reports after every this many records: often
/// enough that reports never wait long behind a sending batch, rarely enough that an empty poll
/// costs nothing measurable per record.
const POLL_EVERY: usize = 32;

enum Entry {
    /// Handed to librdkafka at this instant; its report arrives through the batch.
    Sent(Instant),
    /// Never reached librdkafka (shutting down, refused, not encodable).
    Done(Box<DeliveryOutcome>),
}

/// The sends of one batch, in input order; built by [`super::RawProducer::batch`].
pub struct SendBatch {
    core: Arc<Core>,
    batch: Arc<Batch>,
    entries: Vec<Entry>,
    /// `(first index, handle)`: the handle each run of records went out on. Never empty: the
    /// last one is given to the next record (it starts with the live one).
    handles: Vec<(usize, Arc<Handle>)>,
    /// `(index, span)` of the records whose span is enabled.
    spans: Vec<(usize, Span)>,
    /// Records counted in the producer's in-flight figure until the outcomes are read.
    waiting: usize,
}

impl SendBatch {
    pub(super) fn new(core: &Arc<Core>, len: usize) -> Self {
        Self {
            core: Arc::clone(core),
            batch: Batch::new(len),
            entries: Vec::with_capacity(len),
            handles: vec![(0, core.current())],
            spans: Vec::new(),
            waiting: 0,
        }
    }

    /// Hands the next record to librdkafka, waiting while its queue is full (backpressure).
    /// Its outcome is read with the batch's, in [`SendBatch::outcomes`].
    pub async fn send(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
        schema_id: Option<u32>,
    ) {
        if self.is_full() {
            return;
        }
        let slot = self.next_slot();
        let current;
        let handle = match self.handles.last() {
            Some((_, h)) => h,
            None => {
                current = self.core.current();
                &current
            }
        };
        let handed_over = self
            .core
            .hand_over(key, payload, headers, schema_id, slot, handle)
            .await;
        if self.entries.len() % POLL_EVERY == POLL_EVERY - 1 {
            let took = match &handed_over {
                Ok(sent) => sent.other_handle.as_ref().unwrap_or(handle),
                Err(_) => handle,
            };
            took.producer.poll_now();
        }
        self.push(handed_over);
    }

    /// Past the batch's length a record has no slot: it is not sent, and its outcome says so.
    fn is_full(&mut self) -> bool {
        if self.entries.len() < self.batch.len() {
            return false;
        }
        self.core.metrics.not_sent.increment(1);
        self.entries
            .push(Entry::Done(Box::new(DeliveryOutcome::NotSent {
                error: ProducerError::BatchFull {
                    topic: self.core.topic.name.clone(),
                    len: self.batch.len(),
                },
                retriable: false,
            })));
        true
    }

    /// The slot of the next record, to travel with it as librdkafka's delivery opaque.
    fn next_slot(&self) -> Box<Slot> {
        self.batch.slot(self.entries.len())
    }

    /// What became of the record whose slot [`SendBatch::next_slot`] gave last.
    fn push(&mut self, handed_over: Result<Sent, DeliveryOutcome>) {
        let index = self.entries.len();
        match handed_over {
            Ok(sent) => {
                self.core.track_in_flight(1);
                self.waiting += 1;
                if let Some(other) = sent.other_handle {
                    self.handles.push((index, other));
                }
                if !sent.span.is_disabled() {
                    self.spans.push((index, sent.span));
                }
                self.entries.push(Entry::Sent(sent.started));
            }
            Err(outcome) => self.entries.push(Entry::Done(Box::new(outcome))),
        }
    }

    /// The next record never reaches librdkafka (e.g. it could not be encoded): `outcome` is
    /// its outcome; see [`super::RawProducer::not_sent`].
    pub fn not_handed_over(&mut self, outcome: DeliveryOutcome) {
        if self.entries.len() < self.batch.len() {
            drop(self.next_slot());
        }
        self.push(Err(outcome));
    }

    /// Waits for every report of the batch, then one outcome per record in input order.
    /// `key_of(i)` gives record `i`'s key for the error context.
    pub async fn outcomes<'k>(
        mut self,
        key_of: impl Fn(usize) -> Option<&'k [u8]>,
    ) -> Vec<DeliveryOutcome> {
        // Slots of a batch given fewer records than its length complete now, or it never would.
        for index in self.entries.len()..self.batch.len() {
            drop(self.batch.slot(index));
        }
        self.batch.complete().await;
        let entries = std::mem::take(&mut self.entries);
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut handles = self.handles.iter().peekable();
        let mut handle = handles.next().map(|(_, h)| h);
        let mut spans = self.spans.iter().peekable();
        for (index, entry) in entries.into_iter().enumerate() {
            let started = match entry {
                Entry::Done(outcome) => {
                    outcomes.push(*outcome);
                    continue;
                }
                Entry::Sent(started) => started,
            };
            while let Some((_, next)) = handles.next_if(|(first, _)| *first <= index) {
                handle = Some(next);
            }
            // Every sent record registered its handle; the live one is only a fallback.
            let current;
            let handle = match handle {
                Some(h) => h,
                None => {
                    current = self.core.handles.current();
                    &current
                }
            };
            let outcome =
                self.core
                    .classify(handle, self.batch.report(index), started, key_of(index));
            if let Some((_, span)) = spans.next_if(|(i, _)| *i == index) {
                trace_outcome(span, &outcome);
            }
            outcomes.push(outcome);
        }
        outcomes
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("records", &self.entries.len())
            .field("waiting", &self.waiting)
            .finish()
    }
}

impl Drop for SendBatch {
    fn drop(&mut self) {
        self.core.untrack_in_flight(self.waiting);
    }
}
