//! A librdkafka producer whose delivery reports are served by the threads that send, and by a
//! thread of its own only while none of them does.
//!
//! Why: with rust-rdkafka's `ThreadedProducer` every report is served by its polling thread,
//! woken by librdkafka for each batch of reports, while the sending thread allocates the
//! messages that the polling thread then frees. `rdkafka_performance` serves its reports on the
//! thread that sends, between sends: no wake-ups, and messages freed where they were allocated.
//! Senders here serve what is ready after every few records; the thread of its own stays out of
//! their way while they do, and keeps reports flowing when nobody sends (a batch awaiting its
//! outcomes, an idle producer). Reports of one partition may then be served by different
//! threads; each record's outcome is unaffected.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// How long the thread of its own waits for reports before checking whether senders polled (as
/// long as rust-rdkafka's own polling thread waits: each wait ends in up to a millisecond of
/// spinning, so shorter waits would cost an idle producer CPU).
const OWN_POLL: Duration = Duration::from_millis(100);
/// Most events (a delivery-report event holds a partition's records of one produce response)
/// one sender's poll serves: bounds the time a sending task spends on others' reports.
const MAX_EVENTS_PER_POLL: usize = 64;
/// How long it stays away after seeing a sender poll: the longest a report can wait for it when
/// the senders stop.
const STAY_AWAY: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Bumped by every poll a sender makes.
    sender_polls: AtomicU64,
}

/// A `BaseProducer` polled by its senders ([`Polled::poll_now`]) and by a thread of its own.
pub(crate) struct Polled<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    /// Delivery reports the context has served so far (its delivery callback counts them).
    served: fn(&C) -> u64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl<C: ProducerContext + 'static> Polled<C> {
    /// Starts the thread of its own for `producer`; `served` reads how many delivery reports its
    /// context has served.
    pub(crate) fn new(producer: BaseProducer<C>, served: fn(&C) -> u64) -> std::io::Result<Self> {
        let producer = Arc::new(producer);
        let shared = Arc::new(Shared::default());
        let thread = {
            let (producer, shared) = (Arc::clone(&producer), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("producer reports".to_owned())
                .spawn(move || own_polls(&producer, &shared))?
        };
        Ok(Self {
            producer,
            served,
            shared,
            thread: Some(thread),
        })
    }

    /// Serves the reports that are ready, without waiting: for a thread that just sent. A
    /// zero-timeout poll takes one event, so it polls again while the last one served reports.
    pub(crate) fn poll_now(&self) {
        self.shared.sender_polls.fetch_add(1, Ordering::Relaxed);
        let served = || (self.served)(self.producer.context());
        for _ in 0..MAX_EVENTS_PER_POLL {
            let before = served();
            self.producer.poll(Duration::ZERO);
            if served() == before {
                break;
            }
        }
    }

    /// The producer itself, shareable with blocking work (flush, metadata).
    pub(crate) fn shared_producer(&self) -> Arc<BaseProducer<C>> {
        Arc::clone(&self.producer)
    }
}

fn own_polls<C: ProducerContext>(producer: &BaseProducer<C>, shared: &Shared) {
    let mut seen = shared.sender_polls.load(Ordering::Relaxed);
    while !shared.stop.load(Ordering::Relaxed) {
        let now = shared.sender_polls.load(Ordering::Relaxed);
        if now == seen {
            producer.poll(OWN_POLL);
        } else {
            seen = now;
            std::thread::sleep(STAY_AWAY);
        }
    }
}

impl<C: ProducerContext + 'static> Deref for Polled<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for Polled<C> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic in a delivery callback ended the thread early; nothing is left to stop.
            let _ = thread.join();
        }
    }
}
