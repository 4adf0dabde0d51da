//! One record's way through the pipeline: the handler call, in-place retries with backoff, the
//! per-key order rule, parking in the retry topic and dead-lettering.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::forward::{self, BAD_RETRY_HEADERS, Origin, RetryInfo, sleep_or_cancel};
use super::parked::Parked;
use super::summary::{Counters, bump};
use crate::config::ConsumerConfig;
use crate::forward_producer::ForwardProducer;
use crate::metric as m;
use crate::{BatchProcessor, ProcessError, Processor, Record};

/// The user's handler seen by the pipeline: per record or per batch.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Source records are handed over in batches.
    const BATCHED: bool;
    /// Processes one record.
    fn one(&self, rec: &Record) -> impl Future<Output = Result<(), ProcessError>> + Send;
    /// Processes ready records of one partition (at most one per key); one result per record.
    fn many(&self, recs: &[Record]) -> impl Future<Output = Vec<Result<(), ProcessError>>> + Send;
}

/// A [`Processor`] as a [`Handler`].
#[derive(Debug)]
pub(crate) struct PerRecord<P>(pub(crate) Arc<P>);

impl<P: Processor> Handler for PerRecord<P> {
    const BATCHED: bool = false;

    fn one(&self, rec: &Record) -> impl Future<Output = Result<(), ProcessError>> + Send {
        guarded(self.0.process(rec), |m| Err(panicked(m)))
    }

    async fn many(&self, recs: &[Record]) -> Vec<Result<(), ProcessError>> {
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            out.push(self.one(r).await);
        }
        out
    }
}

/// A [`BatchProcessor`] as a [`Handler`].
#[derive(Debug)]
pub(crate) struct Batched<B>(pub(crate) Arc<B>);

impl<B: BatchProcessor> Handler for Batched<B> {
    const BATCHED: bool = true;

    async fn one(&self, rec: &Record) -> Result<(), ProcessError> {
        let call = self.0.process_batch(std::slice::from_ref(rec));
        let mut res = guarded(call, |m| vec![Err(panicked(m))]).await;
        match (res.pop(), res.is_empty()) {
            (Some(r), true) => r,
            _ => Err(result_count_error(1)),
        }
    }

    fn many(&self, recs: &[Record]) -> impl Future<Output = Vec<Result<(), ProcessError>>> + Send {
        // Which record made the batch panic is unknown: each is retried on its own, so only
        // that one fails.
        let n = recs.len();
        guarded(self.0.process_batch(recs), move |m| {
            let e = ProcessError::Transient {
                class: BATCH_PANICKED,
                message: format!(
                    "the batch handler panicked ({m}); its records are retried one by one"
                ),
                schema_id: None,
            };
            vec![Err(e); n]
        })
    }
}

/// Error class of the records of a batch whose call panicked (each is then tried on its own;
/// records the batch had applied before the panic are applied again, at least once as always).
pub(crate) const BATCH_PANICKED: &str = "batch_handler_panicked";

/// Runs a handler call, turning a panic into `on_panic(message)`. Why: the call runs inside the
/// partition's owner task, and a panic there would end the owner while the partition stays
/// assigned, so the partition would sit paused and uncommitted for good. A handler bug becomes
/// the failure of the record that hit it (dead-lettered with class `handler_panicked`).
async fn guarded<T>(call: impl Future<Output = T>, on_panic: impl FnOnce(String) -> T) -> T {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(v) => v,
        Err(payload) => on_panic(panic_message(payload.as_ref())),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn panicked(message: String) -> ProcessError {
    ProcessError::permanent(
        "handler_panicked",
        format!("the handler panicked: {message}"),
    )
}

/// A batch handler that returned the wrong number of results: every record of that batch is
/// retried on its own.
pub(crate) fn result_count_error(expected: usize) -> ProcessError {
    ProcessError::Transient {
        class: "batch_result_count",
        message: format!("the batch handler must return {expected} result(s), one per record"),
        schema_id: None,
    }
}

/// What a member's partition owners share.
#[derive(Debug)]
pub(crate) struct Shared<H> {
    pub(crate) cfg: ConsumerConfig,
    pub(crate) handler: H,
    pub(crate) producer: ForwardProducer,
    pub(crate) parked: Parked,
    pub(crate) counters: Counters,
}

/// Metric handles of one owned partition, registered once at assignment (not per record).
///
/// Its gauges are looked up again on every tick instead ([`PartMetrics::gauges`]): a recorder
/// drops a gauge left unset for [`m::GAUGE_IDLE_TIMEOUT`], and a handle kept across that (an
/// owner held up longer than the timeout) would go on setting a series no longer exported.
#[derive(Debug)]
pub(crate) struct PartMetrics {
    labels: Vec<metrics::Label>,
    pub(crate) processed: metrics::Counter,
    pub(crate) pauses: metrics::Counter,
    pub(crate) retries: metrics::Counter,
    pub(crate) handler_latency: metrics::Histogram,
}

/// A partition's gauge values at one tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GaugeValues {
    /// From the latest statistics; `None` before the first (or with statistics off).
    pub(crate) lag_records: Option<i64>,
    pub(crate) lag_seconds: f64,
    pub(crate) in_flight: usize,
}

impl PartMetrics {
    /// Sets the partition's gauges (lag in records, lag in seconds, records in flight).
    pub(crate) fn gauges(&self, v: GaugeValues) {
        if let Some(lag) = v.lag_records {
            metrics::gauge!(m::LAG_OFFSETS, self.labels.iter()).set(lag as f64);
        }
        metrics::gauge!(m::LAG_SECONDS, self.labels.iter()).set(v.lag_seconds);
        metrics::gauge!(m::IN_FLIGHT, self.labels.iter()).set(v.in_flight as f64);
    }

    fn new(topic: &str, partition: i32) -> Self {
        let (t, p) = (topic.to_owned(), partition.to_string());
        Self {
            labels: vec![
                metrics::Label::new("topic", t.clone()),
                metrics::Label::new("partition", p.clone()),
            ],
            processed: metrics::counter!(m::PROCESSED, "topic" => t.clone(), "partition" => p.clone()),
            pauses: metrics::counter!(m::PAUSES, "topic" => t.clone(), "partition" => p),
            retries: metrics::counter!(m::RETRIES, "topic" => t.clone()),
            handler_latency: metrics::histogram!(m::HANDLER_LATENCY, "topic" => t),
        }
    }
}

/// One owned partition, as its owner task and the poll thread see it.
#[derive(Debug)]
pub(crate) struct PartCtx {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The partition belongs to the retry topic.
    pub(crate) from_retry: bool,
    /// Revoke, loss or shutdown: stop taking records; interrupts backoff sleeps, retry-topic
    /// delays and forward sends (the record then stays unfinished).
    pub(crate) stop: CancellationToken,
    pub(crate) metrics: PartMetrics,
    /// The offset to commit (Kafka convention), `-1` before the first record finishes.
    pub(crate) committable: AtomicI64,
    /// Bytes of records handed to the owner and not finished ([`Record::size`]).
    pub(crate) unfinished_bytes: AtomicUsize,
    /// Lag in records from the latest librdkafka statistics, `-1` before the first: the poll
    /// thread stores it, the owner sets the gauge from it on its tick.
    pub(crate) lag_records: AtomicI64,
    /// Records finished since the consumer's last commit (shared by its partitions).
    pub(crate) completed: Arc<AtomicUsize>,
}

impl PartCtx {
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        from_retry: bool,
        completed: Arc<AtomicUsize>,
    ) -> Self {
        let metrics = PartMetrics::new(&topic, partition);
        Self {
            topic,
            partition,
            from_retry,
            stop: CancellationToken::new(),
            metrics,
            committable: AtomicI64::new(-1),
            unfinished_bytes: AtomicUsize::new(0),
            lag_records: AtomicI64::new(-1),
            completed,
        }
    }
}

/// How a record's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Processed, parked or dead-lettered: its offset may be committed.
    Done,
    /// Interrupted by revoke, loss or shutdown: the record stays unfinished.
    Aborted,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl<H: Handler> Shared<H> {
    /// Runs `rec` to a final state. `first`: the result of a first call already made (in a
    /// batch); `None` calls the handler here.
    ///
    /// This future is created and moved into the owner's set once per record, so only a source
    /// record's first call is inline; everything else (retry-topic records, waits, retries,
    /// parking, dead-lettering) runs in [`Shared::settle`], boxed. Inline, those paths made
    /// this future ~2 KB, copied per record, for work a healthy record never does.
    pub(crate) async fn handle(
        &self,
        ctx: &PartCtx,
        mut rec: Record,
        first: Option<Result<(), ProcessError>>,
    ) -> Outcome {
        let first = match first {
            None if !ctx.from_retry && !self.follows_parked(&rec) => {
                rec.set_attempt(1);
                let res = self.call(ctx, &rec).await;
                if res.is_ok() {
                    // (a source record has no park id to release)
                    self.processed(ctx);
                    return Outcome::Done;
                }
                Some(res)
            }
            first => first,
        };
        Box::pin(self.settle(ctx, rec, first)).await
    }

    /// Whether a source record's key has a record parked before it.
    fn follows_parked(&self, rec: &Record) -> bool {
        // (checked first: the lookup below reads the record's topic, checked as UTF-8 per call)
        !self.parked.is_empty()
            && rec.key().is_some_and(|key| {
                self.parked
                    .must_follow((rec.topic(), rec.partition()), key, None)
            })
    }

    /// One handler call, timed.
    async fn call(&self, ctx: &PartCtx, rec: &Record) -> Result<(), ProcessError> {
        let t = Instant::now();
        let r = self.handler.one(rec).await;
        ctx.metrics
            .handler_latency
            .record(t.elapsed().as_secs_f64());
        r
    }

    fn processed(&self, ctx: &PartCtx) {
        bump(&self.counters.processed);
        ctx.metrics.processed.increment(1);
    }

    /// [`Shared::handle`] past the inline first call: `first` is its result when it was made.
    async fn settle(
        &self,
        ctx: &PartCtx,
        mut rec: Record,
        first: Option<Result<(), ProcessError>>,
    ) -> Outcome {
        if ctx.from_retry && forward::parked_by_another(&rec, &self.cfg.group_id) {
            // Groups share the retry topic: another group parked this copy, and this group
            // handled its own copy of the source record already.
            debug!("retry record of another group: passed over");
            metrics::counter!(m::RETRY_OTHER_GROUP, "topic" => ctx.topic.to_string()).increment(1);
            return Outcome::Done;
        }
        let info = match RetryInfo::of(&rec, ctx.from_retry) {
            Ok(info) => info,
            Err(msg) => {
                let origin = Origin::own(&rec);
                let err = ProcessError::permanent(BAD_RETRY_HEADERS, msg);
                return self.dead_letter(ctx, &rec, &origin, &err).await;
            }
        };
        if info.not_before.is_some() {
            let wait = info.wait(now_ms(), self.cfg.retry_topic_max_delay);
            if !wait.is_zero() && !sleep_or_cancel(wait, &ctx.stop).await {
                return Outcome::Aborted;
            }
        }
        if first.is_none()
            && let Some(key) = rec.key()
            && self.parked.must_follow(
                (info.origin.topic(&rec), info.origin.partition),
                key,
                info.park_id,
            )
        {
            debug!("key has a parked predecessor: following it to the retry topic");
            rec.set_attempt(info.attempts);
            let how = Parking {
                attempts: info.attempts,
                round: info.round,
                reason: None,
            };
            let out = self.park(ctx, &rec, &info, how).await;
            if out == Outcome::Done {
                bump(&self.counters.followed);
                metrics::counter!(m::PARKED, "reason" => "follow").increment(1);
            }
            return out;
        }
        self.attempts(ctx, rec, &info, first).await
    }

    async fn attempts(
        &self,
        ctx: &PartCtx,
        mut rec: Record,
        info: &RetryInfo,
        mut first: Option<Result<(), ProcessError>>,
    ) -> Outcome {
        let b = &self.cfg.backoff;
        let started = Instant::now();
        let mut in_place = 0u32;
        loop {
            in_place = in_place.saturating_add(1);
            rec.set_attempt(info.attempts.saturating_add(in_place));
            let res = match first.take() {
                Some(r) => r,
                None => self.call(ctx, &rec).await,
            };
            let err = match res {
                Ok(()) => {
                    self.processed(ctx);
                    self.release(&rec, info);
                    return Outcome::Done;
                }
                Err(e @ ProcessError::Permanent { .. }) => e,
                Err(e) => {
                    let delay = b.delay(in_place);
                    if in_place < b.max_attempts && started.elapsed() + delay <= b.max_elapsed {
                        debug!(attempt = rec.attempt(), ?delay, error = %e, "transient failure: retrying in place");
                        bump(&self.counters.retried);
                        ctx.metrics.retries.increment(1);
                        if !sleep_or_cancel(delay, &ctx.stop).await {
                            return Outcome::Aborted;
                        }
                        continue;
                    }
                    if self.cfg.retry_topic_enabled
                        && info.round < self.cfg.max_retry_topic_attempts
                    {
                        let how = Parking {
                            attempts: rec.attempt(),
                            round: info.round + 1,
                            reason: Some(&e),
                        };
                        let out = self.park(ctx, &rec, info, how).await;
                        if out == Outcome::Done {
                            bump(&self.counters.parked);
                            metrics::counter!(m::PARKED, "reason" => "failure").increment(1);
                        }
                        return out;
                    }
                    e
                }
            };
            let out = self.dead_letter(ctx, &rec, &info.origin, &err).await;
            if out == Outcome::Done {
                self.release(&rec, info);
            }
            return out;
        }
    }

    /// A parked record reached a final state: release its park id.
    fn release(&self, rec: &Record, info: &RetryInfo) {
        if let (Some(key), Some(id)) = (rec.key(), info.park_id) {
            self.parked
                .remove((info.origin.topic(rec), info.origin.partition), key, id);
        }
    }

    /// Parks `rec` in the retry topic.
    async fn park(
        &self,
        ctx: &PartCtx,
        rec: &Record,
        info: &RetryInfo,
        how: Parking<'_>,
    ) -> Outcome {
        let Parking {
            attempts,
            round,
            reason: err,
        } = how;
        let cfg = &self.cfg;
        let not_before = match err {
            Some(_) => now_ms().saturating_add(cfg.retry_delay(round).as_millis() as i64),
            None => now_ms(),
        };
        let id = info.park_id.unwrap_or_else(|| self.parked.new_id());
        if let Some(key) = rec.key() {
            self.parked
                .add((info.origin.topic(rec), info.origin.partition), key, id);
        }
        let how = forward::ParkedAs {
            group: &cfg.group_id,
            attempts,
            round,
            not_before,
            park_id: id,
        };
        let hs = forward::retry_headers(rec, info, &how, err);
        info!(
            topic = rec.topic(),
            partition = rec.partition(),
            offset = rec.offset(),
            round,
            attempts,
            follower = err.is_none(),
            "parking record in the retry topic"
        );
        let sent = forward::send(
            &self.producer,
            cfg,
            &cfg.topics.retry,
            rec,
            &hs,
            &ctx.stop,
            &self.counters.forwards_resent,
        )
        .await;
        if sent {
            Outcome::Done
        } else {
            bump(&self.counters.forwards_abandoned);
            Outcome::Aborted
        }
    }

    async fn dead_letter(
        &self,
        ctx: &PartCtx,
        rec: &Record,
        origin: &Origin,
        err: &ProcessError,
    ) -> Outcome {
        let cfg = &self.cfg;
        let hs = forward::dead_letter_headers(rec, origin, err, &cfg.group_id);
        warn!(topic = rec.topic(), partition = rec.partition(), offset = rec.offset(), class = err.class(), error = %err.message(), attempts = rec.attempt(), schema_id = ?err.schema_id(), "dead-lettering record");
        let sent = forward::send(
            &self.producer,
            cfg,
            &cfg.topics.dead_letter,
            rec,
            &hs,
            &ctx.stop,
            &self.counters.forwards_resent,
        )
        .await;
        if !sent {
            bump(&self.counters.forwards_abandoned);
            return Outcome::Aborted;
        }
        bump(&self.counters.dead_lettered);
        metrics::counter!(m::DEAD_LETTERS, "class" => err.class()).increment(1);
        Outcome::Done
    }
}

/// How a record is parked in the retry topic.
#[derive(Debug, Clone, Copy)]
struct Parking<'a> {
    /// Processing attempts made so far.
    attempts: u32,
    /// Times parked because of its own failure, including this one.
    round: u32,
    /// Its failure; `None` for a follower parked only to keep per-key order.
    reason: Option<&'a ProcessError>,
}
