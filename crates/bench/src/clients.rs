//! The producer and consumer set-ups the workloads with a broker share: clients, an open-loop
//! sender and pre-filled topics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use orderstream_consumer::{ConsumerConfig, ProcessError, Processor, Record, Topics, run};
use orderstream_orders::OrderProducer;
use orderstream_producer::{DeliveryOutcome, ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{self, PARTITIONS};

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub(crate) async fn decode(codec: &OrderCodec, rec: &Record) -> Result<OrderEvent, ProcessError> {
    let bytes = rec
        .payload()
        .ok_or_else(|| ProcessError::permanent("empty", "null value"))?;
    if let Some(r) = codec.try_decode_cached(bytes) {
        return r
            .map(|d| d.event)
            .map_err(|e| ProcessError::permanent("decode", e.to_string()));
    }
    codec
        .decode(bytes)
        .await
        .map(|d| d.event)
        .map_err(|e| ProcessError::transient(e.to_string()))
}

pub(crate) fn consumer_cfg(bootstrap: &str, group: &str, topic: &str) -> ConsumerConfig {
    ConsumerConfig {
        consume_retry_topic: false,
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(
            bootstrap,
            group,
            Topics::new(topic, format!("{topic}-retry"), format!("{topic}-dlq")),
        )
    }
}

pub(crate) fn spawn_member<P: Processor>(
    cfg: ConsumerConfig,
    p: Arc<P>,
    cancel: CancellationToken,
) -> JoinHandle<Result<orderstream_consumer::RunSummary, orderstream_consumer::ConsumerError>> {
    tokio::spawn(run(cfg, p, cancel))
}

pub(crate) async fn producer(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    linger_ms: u64,
) -> Result<OrderProducer> {
    let cfg = ProducerConfig {
        bootstrap_servers: bootstrap.to_owned(),
        linger: Duration::from_millis(linger_ms),
        ..ProducerConfig::default()
    };
    Ok(OrderProducer::new(cfg, codec.clone(), ProducerTopic::new(topic, PARTITIONS)).await?)
}

/// Open-loop sender: `n` events at `rate`/s; event `k` carries its *scheduled* send time in
/// `occurred_at_micros` and `phase` in `sequence`. Returns when every send was enqueued and
/// acknowledged, with each delivered event's scheduled send → acknowledgement in µs (so a
/// sender that falls behind its schedule shows up, as it does end to end).
pub(crate) async fn open_loop(
    p: &OrderProducer,
    rate: f64,
    n: u64,
    phase: i64,
    first_id: u64,
    pad: usize,
) -> Histogram<u64> {
    let start = Instant::now();
    let epoch = now_us();
    let mut next = 0u64;
    let mut tasks = Vec::new();
    while next < n {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(n);
        if due > next {
            let batch: Vec<OrderEvent> = (next..due)
                .map(|k| {
                    let mut e = util::event(first_id + k, pad);
                    e.sequence = phase;
                    e.occurred_at_micros = epoch + (k as f64 * 1e6 / rate) as i64;
                    e
                })
                .collect();
            next = due;
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let called = now_us();
                let outcomes = p.send_batch(&batch).await;
                outcomes
                    .iter()
                    .zip(&batch)
                    .filter_map(|(o, e)| match o {
                        DeliveryOutcome::Delivered { latency, .. } => {
                            let acked = called + latency.as_micros() as i64;
                            Some((acked - e.occurred_at_micros).max(1) as u64)
                        }
                        _ => None,
                    })
                    .collect::<Vec<u64>>()
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut acks = latency_histogram();
    for t in tasks {
        for us in t.await.unwrap_or_default() {
            let _ = acks.record(us);
        }
    }
    acks
}

/// A histogram of latencies in µs, up to 10 minutes.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Writes `n` events to `topic` and waits for every acknowledgement.
pub(crate) async fn prefill(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    n: u64,
) -> Result<()> {
    prefill_with(bootstrap, codec, topic, n, |i| util::event(i, 0)).await
}

/// Writes events `event(0..n)` to `topic` and waits for every acknowledgement.
pub(crate) async fn prefill_with(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    n: u64,
    event: impl Fn(u64) -> OrderEvent,
) -> Result<()> {
    let p = producer(bootstrap, codec, topic, 5).await?;
    let events: Vec<OrderEvent> = (0..n).map(event).collect();
    for c in events.chunks(20_000) {
        let ok = p
            .send_batch(c)
            .await
            .iter()
            .filter(|o| o.is_delivered())
            .count();
        if ok != c.len() {
            bail!("pre-fill of {topic}: {ok} of {} delivered", c.len());
        }
    }
    p.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
