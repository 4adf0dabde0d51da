//! A librdkafka producer instance that is replaced after a fatal error, for every producer in the
//! workspace (the order producer, the consumer's retry/dead-letter forwards, dead-letter replay).
//!
//! Why: librdkafka raises a *fatal* error on an idempotent producer when it can no longer reason
//! about its sequence state (e.g. a head-of-line `OUT_OF_ORDER_SEQUENCE_NUMBER`). A fatal
//! instance refuses every later send for good; the only way out is a fresh instance from the
//! same configuration. [`Generations`] holds the current instance with its generation number,
//! replaces it at most once per generation however many sends saw it fail, and retires the old
//! one off the async threads: it fails what the old instance still holds, so sends awaiting it
//! resolve now, waits (bounded) until no send holds it, then drops it (dropping a librdkafka
//! producer blocks while it purges and flushes).
//!
//! Tested through its users: the producer's mock-cluster fatal-error tests and the consumer's
//! forward producer (several tasks meeting one fatal error rebuild once).

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer, Producer, ProducerContext, PurgeConfig};

/// A librdkafka producer instance [`Generations`] can retire.
pub trait Instance: Send + Sync + 'static {
    /// Fails what the instance still holds, queued and in flight, so their sends resolve now.
    fn purge_all(&self);
}

impl<C: ProducerContext + 'static> Instance for BaseProducer<C> {
    fn purge_all(&self) {
        self.purge(PurgeConfig::default().queue().inflight());
    }
}

impl<C: ClientContext + 'static> Instance for FutureProducer<C> {
    fn purge_all(&self) {
        self.purge(PurgeConfig::default().queue().inflight());
    }
}

/// One instance and its generation number (1 for the first). Dereferences to the instance.
#[derive(Debug)]
pub struct Generation<T> {
    number: u64,
    instance: T,
}

impl<T> Generation<T> {
    /// 1 for the first instance, one more for each replacement.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl<T> Deref for Generation<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.instance
    }
}

/// What [`Generations::replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replaced {
    /// This call built the next generation; the old one is being retired.
    Now,
    /// Another caller already replaced that generation.
    Already,
}

type Build<T> = Box<dyn Fn() -> Result<T, KafkaError> + Send + Sync>;

/// The current instance, replaced once per generation after a fatal error (see the module docs).
pub struct Generations<T> {
    build: Build<T>,
    current: RwLock<Arc<Generation<T>>>,
    rebuilds: AtomicU64,
    retire_bound: Duration,
}

impl<T> std::fmt::Debug for Generations<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations")
            .field("rebuilds", &self.rebuilds.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Instance> Generations<T> {
    /// Builds generation 1 with `build`, which also builds every replacement. `retire_bound`:
    /// how long a replaced instance is kept for sends still holding it (the delivery timeout).
    pub fn new(
        build: impl Fn() -> Result<T, KafkaError> + Send + Sync + 'static,
        retire_bound: Duration,
    ) -> Result<Self, KafkaError> {
        let first = build()?;
        Ok(Self {
            build: Box::new(build),
            current: RwLock::new(Arc::new(Generation {
                number: 1,
                instance: first,
            })),
            rebuilds: AtomicU64::new(0),
            retire_bound,
        })
    }

    /// The instance to send with. Hold it only for the send: a replaced instance is retired once
    /// no one holds it (or after the retire bound).
    pub fn current(&self) -> Arc<Generation<T>> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces generation `number` with a fresh instance unless another caller already did;
    /// the error when the fresh instance cannot be built (the caller retries later).
    pub fn replace(&self, number: u64) -> Result<Replaced, KafkaError> {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.number != number {
            return Ok(Replaced::Already);
        }
        let fresh = (self.build)()?;
        let old = std::mem::replace(
            &mut *guard,
            Arc::new(Generation {
                number: number + 1,
                instance: fresh,
            }),
        );
        drop(guard);
        self.rebuilds.fetch_add(1, Ordering::SeqCst);
        retire(old, self.retire_bound);
        Ok(Replaced::Now)
    }

    /// Replacements so far.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::SeqCst)
    }
}

/// Purges `old`, waits (bounded) until no send holds it, then drops it, off the async threads.
fn retire<T: Instance>(old: Arc<Generation<T>>, bound: Duration) {
    let drop_it = move || {
        old.purge_all();
        let deadline = Instant::now() + bound + Duration::from_secs(5);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(old);
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(drop_it));
    } else {
        drop_it();
    }
}
