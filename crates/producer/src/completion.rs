//! Delivery reports collected per batch of sends, with one wake-up per batch.
//!
//! rust-rdkafka's `FutureProducer` gives every record its own oneshot channel, and every
//! delivery report wakes the awaiting task from librdkafka's polling thread: at ~100 B records
//! the wake-ups and channel allocations cost more than librdkafka itself (the Python client,
//! which serves reports inline, was ~1.6× faster in the same benchmark run). Here a send hands
//! librdkafka a [`Slot`] (its batch and index) as the delivery opaque; the report is stored in
//! the batch and only the batch's last report wakes the waiting task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Instant;

use futures::task::AtomicWaker;
use rdkafka::error::KafkaError;

/// What librdkafka reported for one record.
#[derive(Debug)]
pub(crate) enum Report {
    /// Acknowledged at `partition`/`offset`.
    Delivered {
        partition: i32,
        offset: i64,
        at: Instant,
    },
    /// Failed with `error` (boxed: failures are rare, and a report is kept per record of a batch).
    Failed { error: Box<KafkaError>, at: Instant },
}

/// Reports of a group of sends. Each index completes exactly once: when its [`Slot`] is
/// dropped, whether librdkafka reported on it or the send never reached librdkafka.
#[derive(Debug)]
pub(crate) struct Batch {
    remaining: AtomicUsize,
    waker: AtomicWaker,
    reports: Box<[OnceLock<Report>]>,
}

impl Batch {
    /// A batch of `len` sends; each index must be turned into a [`Slot`] exactly once.
    pub(crate) fn new(len: usize) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicUsize::new(len),
            waker: AtomicWaker::new(),
            reports: (0..len).map(|_| OnceLock::new()).collect(),
        })
    }

    /// The slot of `index`, to travel with the record as its delivery opaque.
    pub(crate) fn slot(self: &Arc<Self>, index: usize) -> Box<Slot> {
        Box::new(Slot {
            batch: Arc::clone(self),
            index,
        })
    }

    /// How many sends the batch was made for.
    pub(crate) fn len(&self) -> usize {
        self.reports.len()
    }

    /// The report of `index`, once the batch is complete (`None`: never reached librdkafka, or
    /// librdkafka dropped it without a report).
    pub(crate) fn report(&self, index: usize) -> Option<&Report> {
        self.reports.get(index).and_then(OnceLock::get)
    }

    /// Resolves when every slot of the batch has completed.
    pub(crate) async fn complete(&self) {
        std::future::poll_fn(|cx| {
            if self.remaining.load(Ordering::Acquire) == 0 {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A completion between the check and the registration would otherwise be missed.
            if self.remaining.load(Ordering::Acquire) == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    fn complete_one(&self) {
        // AcqRel: the report stored before this decrement is visible to whoever sees zero.
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }
}

/// One record's place in its batch: librdkafka's delivery opaque.
#[derive(Debug)]
pub(crate) struct Slot {
    batch: Arc<Batch>,
    index: usize,
}

impl Slot {
    /// Stores librdkafka's report (called from the delivery callback; the slot is dropped right
    /// after, which completes it).
    pub(crate) fn set(&self, report: Report) {
        if let Some(cell) = self.batch.reports.get(self.index) {
            let _ = cell.set(report);
        }
    }

    /// The batch and index, for the waiting side.
    pub(crate) fn position(&self) -> (Arc<Batch>, usize) {
        (Arc::clone(&self.batch), self.index)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.batch.complete_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_once_every_slot_is_dropped_and_keeps_reports() {
        let batch = Batch::new(3);
        let slots: Vec<_> = (0..3).map(|i| batch.slot(i)).collect();
        let waiter = {
            let batch = Arc::clone(&batch);
            tokio::spawn(async move { batch.complete().await })
        };
        let mut slots = slots.into_iter();
        let first = slots.next().expect("slot 0");
        first.set(Report::Delivered {
            partition: 2,
            offset: 7,
            at: Instant::now(),
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "two slots still open");
        // A slot dropped without a report (the send never reached librdkafka) completes too.
        drop(slots.next());
        drop(slots.next());
        waiter.await.expect("join");
        assert!(matches!(
            batch.report(0),
            Some(Report::Delivered {
                partition: 2,
                offset: 7,
                ..
            })
        ));
        assert!(batch.report(1).is_none());
        assert!(
            batch.report(3).is_none(),
            "out of range is none, not a panic"
        );
    }

    #[tokio::test]
    async fn empty_batch_is_complete() {
        Batch::new(0).complete().await;
    }
}
