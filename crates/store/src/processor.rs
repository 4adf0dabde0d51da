//! [`StoreProcessor`]: decodes a partition's batch and applies it to the [`OrderStore`] in one
//! transaction; the consumer commits the offsets after it returns.

use std::sync::atomic::{AtomicU64, Ordering};

use orderstream_consumer::{BatchProcessor, ProcessError, Record};
use orderstream_orders::classify_decode_error;
use orderstream_schema::{OrderCodec, OrderEvent};

use crate::{Effect, Input, OrderStore};

/// What a [`StoreProcessor`] saw (this process only; the store holds the truth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorCounts {
    /// Events applied by this process.
    pub applied: u64,
    /// Redelivered events the store recognised (inbox or sequence): no second effect.
    pub duplicates: u64,
    /// Events of a kind this build does not know, recorded without effect.
    pub unknown_kinds: u64,
    /// Events illegal in their order's state (dead-lettered).
    pub illegal: u64,
    /// Events that came before a predecessor of their order (retried, as the predecessor may
    /// still come).
    pub early: u64,
    /// Batches the store failed to apply (retried).
    pub store_failures: u64,
}

/// The order projection as a [`BatchProcessor`]: effects in the database, exactly once per
/// event id.
#[derive(Debug)]
pub struct StoreProcessor {
    codec: OrderCodec,
    store: OrderStore,
    unknown_schema_max_attempts: u32,
    applied: AtomicU64,
    duplicates: AtomicU64,
    unknown_kinds: AtomicU64,
    illegal: AtomicU64,
    early: AtomicU64,
    store_failures: AtomicU64,
}

impl StoreProcessor {
    /// A processor decoding with `codec` and applying to `store`.
    pub fn new(codec: OrderCodec, store: OrderStore) -> Self {
        StoreProcessor {
            codec,
            store,
            unknown_schema_max_attempts: 5,
            applied: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown_kinds: AtomicU64::new(0),
            illegal: AtomicU64::new(0),
            early: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &OrderStore {
        &self.store
    }

    /// Counts of this process.
    pub fn counts(&self) -> ProcessorCounts {
        ProcessorCounts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            unknown_kinds: self.unknown_kinds.load(Ordering::Relaxed),
            illegal: self.illegal.load(Ordering::Relaxed),
            early: self.early.load(Ordering::Relaxed),
            store_failures: self.store_failures.load(Ordering::Relaxed),
        }
    }
}

impl BatchProcessor for StoreProcessor {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        let mut results: Vec<Result<(), ProcessError>> = vec![Ok(()); records.len()];
        let mut decoded: Vec<(usize, OrderEvent, Option<u32>)> = Vec::with_capacity(records.len());
        for (i, rec) in records.iter().enumerate() {
            let Some(bytes) = rec.payload() else {
                results[i] = Err(ProcessError::permanent("empty", "null value"));
                continue;
            };
            match self.codec.decode(bytes).await {
                Ok(d) => decoded.push((i, d.event, Some(d.schema_id))),
                Err(e) => {
                    results[i] = Err(classify_decode_error(
                        &e,
                        rec.attempt(),
                        self.unknown_schema_max_attempts,
                    ));
                }
            }
        }
        let inputs: Vec<Input<'_>> = decoded
            .iter()
            .map(|(i, event, _)| Input {
                event,
                topic: records[*i].topic(),
                partition: records[*i].partition(),
                offset: records[*i].offset(),
            })
            .collect();
        match self.store.apply_batch(&inputs).await {
            Ok(effects) => {
                for ((i, event, schema_id), effect) in decoded.iter().zip(effects) {
                    let counter = match effect {
                        Effect::Applied => &self.applied,
                        Effect::Duplicate => &self.duplicates,
                        Effect::UnknownKind => &self.unknown_kinds,
                        Effect::Early { expected } => {
                            results[*i] = Err(ProcessError::Transient {
                                class: "predecessor_missing",
                                message: format!(
                                    "order {}: {:?} (sequence {}) came before sequence {expected}",
                                    event.order_id, event.event_type, event.sequence
                                ),
                                schema_id: *schema_id,
                            });
                            &self.early
                        }
                        Effect::Illegal { from } => {
                            let err = ProcessError::permanent(
                                "illegal_transition",
                                format!(
                                    "order {}: {:?} is illegal in state {from:?} (sequence {})",
                                    event.order_id, event.event_type, event.sequence
                                ),
                            );
                            results[*i] = Err(match schema_id {
                                Some(id) => err.with_schema_id(*id),
                                None => err,
                            });
                            &self.illegal
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                // Nothing of the batch was applied: every decoded record waits and comes again.
                self.store_failures.fetch_add(1, Ordering::Relaxed);
                let message = orderstream_schema::error_chain(&e);
                tracing::warn!(
                    topic = records.first().map(Record::topic),
                    partition = records.first().map(Record::partition),
                    records = records.len(),
                    error = %message,
                    "store unavailable: batch retried"
                );
                for (i, _, _) in &decoded {
                    results[*i] = Err(ProcessError::Transient {
                        class: "store_unavailable",
                        message: message.clone(),
                        schema_id: None,
                    });
                }
            }
        }
        results
    }
}
