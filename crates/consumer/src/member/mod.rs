//! A group member: its two consumers (source topic; retry topic in its own group), the
//! partition owners they feed, and the run that ties them together. See the crate docs.

mod client;
mod commit_outcome;
mod commits;
pub(crate) mod forward;
mod handler;
mod lifecycle;
mod owner;
mod parked;
mod partitions;
mod rebalance;
mod shutdown;
mod side;
mod summary;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use owner::SPAN_TARGET;
pub use summary::{ConsumerError, RunSummary};

use crate::budget::MemoryBudget;
use crate::config::ConsumerConfig;
use crate::forward_producer::ForwardProducer;
use crate::{BatchProcessor, Processor};
use handler::{Batched, Handler, PerRecord, Shared};
use side::{Side, SideSummary};

/// Runs one group member with a per-record [`Processor`] until `cancel` fires, then drains,
/// commits and leaves the group.
///
/// Must be called inside a tokio runtime (any flavour): partition owners run as tasks on it
/// while each Kafka consumer is polled on a dedicated thread.
pub async fn run<P: Processor>(
    config: ConsumerConfig,
    processor: Arc<P>,
    cancel: CancellationToken,
) -> Result<RunSummary, ConsumerError> {
    start(config, PerRecord(processor), cancel).await
}

/// Like [`run`], with a [`BatchProcessor`]: source records reach the handler in batches of a
/// partition's ready records (at most one per key, at most
/// [`ConsumerConfig::max_batch_records`]); a partition's next batch starts when its previous one
/// is finished, so per-key order holds inside and across batches. Retried records (in place,
/// from the retry topic, or following a parked predecessor) are handed over one at a time.
pub async fn run_batched<B: BatchProcessor>(
    config: ConsumerConfig,
    processor: Arc<B>,
    cancel: CancellationToken,
) -> Result<RunSummary, ConsumerError> {
    start(config, Batched(processor), cancel).await
}

async fn start<H: Handler>(
    config: ConsumerConfig,
    handler: H,
    cancel: CancellationToken,
) -> Result<RunSummary, ConsumerError> {
    config.validate()?;
    let producer = ForwardProducer::new(client::producer_config(&config), config.produce_timeout)
        .map_err(|source| ConsumerError::Kafka {
        context: "creating the retry/dead-letter producer",
        source,
    })?;
    let with_retry = config.consume_retry_topic && config.retry_topic_enabled;
    // each consumer has its own prefetch queue: they share the budget
    let budget = MemoryBudget::split(if with_retry {
        config.memory_budget / 2
    } else {
        config.memory_budget
    });
    let shared = Arc::new(Shared {
        cfg: config.clone(),
        handler,
        producer,
        parked: parked::Parked::default(),
        counters: summary::Counters::default(),
    });
    // dropping the run future (or an early error) stops the poll threads too
    let stop = cancel.child_token();
    let _guard = stop.clone().drop_guard();
    let mut sides = vec![spawn_side(
        &shared,
        &config.topics.source,
        &config.group_id,
        false,
        budget,
        &stop,
    )?];
    if with_retry {
        sides.push(spawn_side(
            &shared,
            &config.topics.retry,
            &config.retry_group(),
            true,
            budget,
            &stop,
        )?);
    }
    info!(
        group = %config.group_id,
        retry_group = %config.retry_group(),
        source = %config.topics.source,
        with_retry,
        budget_bytes_per_consumer = budget.total,
        prefetch_kbytes = budget.prefetch_kbytes,
        fetch_max_bytes = budget.fetch_max_bytes,
        partition_fetch_max_bytes = budget.partition_fetch_max_bytes,
        window_bytes = budget.window_bytes,
        "consumer member started"
    );
    let mut outs: Vec<SideSummary> = Vec::new();
    let mut failure = None;
    for (rx, (topic, group)) in sides.into_iter().zip([
        (config.topics.source.clone(), config.group_id.clone()),
        (config.topics.retry.clone(), config.retry_group()),
    ]) {
        match rx.await {
            Ok(mut s) => {
                if let Some((code, reason)) = s.refused.take() {
                    failure.get_or_insert(ConsumerError::Refused {
                        group,
                        topic,
                        code,
                        reason,
                    });
                }
                outs.push(s);
            }
            Err(_) => {
                // one consumer failed: stop the other one too, then report
                stop.cancel();
                failure = Some(ConsumerError::PollThread("poll thread panicked".to_owned()));
            }
        }
    }
    let mut summary = shared.counters.summary();
    for s in outs {
        summary.committed.extend(s.committed);
        summary.uncommitted.extend(s.uncommitted);
        summary.forced_close |= s.forced_close;
        summary.shutdown_commit_failed |= s.shutdown_commit_failed;
    }
    summary.producer_rebuilds = shared.producer.rebuilds();
    // flush anything the producer still holds (all sends were awaited, so normally none)
    let sh = Arc::clone(&shared);
    let _ = tokio::task::spawn_blocking(move || sh.producer.flush(Duration::from_secs(5))).await;
    if let Some(e) = failure {
        // Drained, committed and flushed like a normal stop; the summary says what was kept.
        warn!(error = &e as &dyn std::error::Error, processed = summary.processed, committed = ?summary.committed, uncommitted = ?summary.uncommitted, "member stopped on an error");
        return Err(e);
    }
    Ok(summary)
}

/// Creates, subscribes and starts one consumer on its own poll thread.
fn spawn_side<H: Handler>(
    shared: &Arc<Shared<H>>,
    topic: &str,
    group: &str,
    from_retry: bool,
    budget: MemoryBudget,
    stop: &CancellationToken,
) -> Result<tokio::sync::oneshot::Receiver<SideSummary>, ConsumerError> {
    let side = Side::new(
        Arc::clone(shared),
        tokio::runtime::Handle::current(),
        topic,
        from_retry,
        budget,
    );
    let consumer: BaseConsumer<Side<H>> = client::consumer_config(&shared.cfg, group, &budget)
        .create_with_context(side)
        .map_err(|source| ConsumerError::Kafka {
            context: "creating the consumer",
            source,
        })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| ConsumerError::Kafka {
            context: "subscribing",
            source,
        })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stop = stop.clone();
    std::thread::Builder::new()
        .name(format!("orderstream-poll-{group}"))
        .spawn(move || {
            let _ = tx.send(side::poll_loop(consumer, &stop));
        })
        .map_err(|e| ConsumerError::PollThread(e.to_string()))?;
    Ok(rx)
}
