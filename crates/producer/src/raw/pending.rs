//! A record handed to librdkafka whose delivery report is awaited on its own.

use std::sync::Arc;
use std::time::Instant;

use tracing::Span;

use crate::completion::Batch;

use super::DeliveryOutcome;
use super::core::Core;
use super::handle::Handle;
use super::trace::trace_outcome;

/// The key of an in-flight record, kept for the error context of its outcome. Keys up to
/// [`INLINE_KEY`] bytes (order ids) are stored inline: no allocation per record.
pub(super) const INLINE_KEY: usize = 46;

pub(super) enum KeyCopy {
    None,
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyCopy {
    pub(super) fn new(key: Option<&[u8]>) -> Self {
        match key {
            None => KeyCopy::None,
            Some(k) if k.len() <= INLINE_KEY => {
                let mut buf = [0u8; INLINE_KEY];
                buf[..k.len()].copy_from_slice(k);
                KeyCopy::Inline {
                    len: u8::try_from(k.len()).unwrap_or(0),
                    buf,
                }
            }
            Some(k) => KeyCopy::Heap(k.into()),
        }
    }

    pub(super) fn get(&self) -> Option<&[u8]> {
        match self {
            KeyCopy::None => None,
            KeyCopy::Inline { len, buf } => buf.get(..usize::from(*len)),
            KeyCopy::Heap(k) => Some(k),
        }
    }
}

/// A record handed to librdkafka whose delivery report has not been awaited yet. Counts in
/// the in-flight figure until it completes or is dropped.
pub(crate) struct Waiting {
    pub(super) core: Arc<Core>,
    pub(super) handle: Arc<Handle>,
    pub(super) batch: Arc<Batch>,
    pub(super) index: usize,
    pub(super) started: Instant,
    pub(super) key: KeyCopy,
    pub(super) span: Span,
}

impl Waiting {
    /// `given`: the handle given to `hand_over` for it.
    pub(super) fn new(
        core: &Arc<Core>,
        sent: Sent,
        given: Arc<Handle>,
        (batch, index): (Arc<Batch>, usize),
        key: Option<&[u8]>,
    ) -> Self {
        core.track_in_flight(1);
        Self {
            core: Arc::clone(core),
            handle: sent.other_handle.unwrap_or(given),
            batch,
            index,
            started: sent.started,
            key: KeyCopy::new(key),
            span: sent.span,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.core.untrack_in_flight(1);
    }
}

/// A record librdkafka took: the handle it went out on, when, and its tracing span.
pub(crate) struct Sent {
    /// The handle that took the record when it was not the one given to `hand_over`.
    pub(super) other_handle: Option<Arc<Handle>>,
    pub(super) started: Instant,
    pub(super) span: Span,
}

/// A record's outcome: known already, or awaiting its delivery report.
pub(crate) enum Pending {
    Done(DeliveryOutcome),
    Waiting(Waiting),
}

impl Pending {
    pub(crate) async fn outcome(self) -> DeliveryOutcome {
        match self {
            Pending::Done(outcome) => outcome,
            Pending::Waiting(w) => {
                w.batch.complete().await;
                let report = w.batch.report(w.index);
                let outcome = w.core.classify(&w.handle, report, w.started, w.key.get());
                trace_outcome(&w.span, &outcome);
                outcome
            }
        }
    }
}

/// A queued send; [`PendingDelivery::outcome`] waits for its delivery report.
pub struct PendingDelivery(pub(super) Pending);

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingDelivery")
    }
}

impl PendingDelivery {
    /// An outcome known before the record reached librdkafka (e.g. it could not be encoded).
    pub fn done(outcome: DeliveryOutcome) -> Self {
        Self(Pending::Done(outcome))
    }

    /// Waits for the delivery report (acknowledged, failed, or possibly persisted).
    pub async fn outcome(self) -> DeliveryOutcome {
        self.0.outcome().await
    }
}

pub(super) fn lossy_key(key: Option<&[u8]>) -> Option<String> {
    key.map(|k| String::from_utf8_lossy(k).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_copy_keeps_short_and_long_keys() {
        assert_eq!(KeyCopy::new(None).get(), None);
        assert_eq!(KeyCopy::new(Some(b"")).get(), Some(&b""[..]));
        let short = b"order-000123";
        assert_eq!(KeyCopy::new(Some(short)).get(), Some(&short[..]));
        let edge = [7u8; INLINE_KEY];
        assert_eq!(KeyCopy::new(Some(&edge)).get(), Some(&edge[..]));
        let long = vec![9u8; INLINE_KEY + 1];
        assert_eq!(KeyCopy::new(Some(&long)).get(), Some(long.as_slice()));
    }
}
