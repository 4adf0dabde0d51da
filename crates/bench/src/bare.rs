//! The producer saturation's floor for our raw path: a plain rust-rdkafka `ThreadedProducer` loop, the code a user
//! would write without orderstream. Same librdkafka properties, same pre-encoded keys and values,
//! the same `event_id` and `content-type` headers per record; delivery reports only counted (no per-record
//! outcome, span, metric or latency), so anything our producer costs above it is ours.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};

use crate::produce::{Pre, Run};
use crate::util;

/// Counts delivery reports.
#[derive(Debug, Default)]
pub(crate) struct Counting {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) type Bare = ThreadedProducer<Counting>;

/// A producer with exactly `config` (our producer's librdkafka properties).
pub(crate) fn producer(config: &ClientConfig) -> Result<Bare> {
    ThreadedProducer::from_config_and_context(config, Counting::default())
        .context("creating the bare rust-rdkafka producer")
}

/// The same producer without rust-rdkafka's polling thread: the sending thread serves delivery
/// reports itself, as `rdkafka_performance` does.
pub(crate) type BareInline = BaseProducer<Counting>;

/// A [`BareInline`] with exactly `config`.
pub(crate) fn inline_producer(config: &ClientConfig) -> Result<BareInline> {
    BaseProducer::from_config_and_context(config, Counting::default())
        .context("creating the bare rust-rdkafka base producer")
}

/// Sends every record (sleeping briefly on a full queue, as a user would), then waits for every
/// delivery report. Blocking: run it off the async threads.
pub(crate) fn run(p: &Bare, topic: &str, records: &[Pre]) -> Result<Run> {
    let threaded = Waits {
        on_full: || std::thread::sleep(Duration::from_micros(500)),
        after_send: || {},
        until_done: || std::thread::sleep(Duration::from_micros(200)),
    };
    run_with(p.context(), topic, records, |r| sent(p.send(r)), threaded)
}

/// [`run`] on a [`BareInline`]: delivery reports are served after every send and while the queue
/// is full.
pub(crate) fn run_inline(p: &BareInline, topic: &str, records: &[Pre]) -> Result<Run> {
    let inline = Waits {
        on_full: || p.poll(Duration::from_millis(1)),
        after_send: || p.poll(Duration::ZERO),
        until_done: || p.poll(Duration::from_millis(1)),
    };
    run_with(p.context(), topic, records, |r| sent(p.send(r)), inline)
}

type Record<'a> = BaseRecord<'a, [u8], [u8], ()>;

/// What became of one send.
enum Sent<'a> {
    Taken,
    /// librdkafka's queue is full: the record, to send again.
    Full(Record<'a>),
    Refused(KafkaError),
}

fn sent<'a>(result: Result<(), (KafkaError, Record<'a>)>) -> Sent<'a> {
    match result {
        Ok(()) => Sent::Taken,
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => Sent::Full(back),
        Err((e, _)) => Sent::Refused(e),
    }
}

/// What the sending thread does besides sending.
struct Waits<F, A, U> {
    /// While librdkafka's queue is full.
    on_full: F,
    /// After each record it took.
    after_send: A,
    /// After the last record, until every report is in.
    until_done: U,
}

fn run_with<'a>(
    ctx: &Counting,
    topic: &'a str,
    records: &'a [Pre],
    send: impl Fn(Record<'a>) -> Sent<'a>,
    waits: Waits<impl Fn(), impl Fn(), impl Fn()>,
) -> Result<Run> {
    let (d0, f0) = (
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    let cpu0 = util::process_cpu();
    let started = Instant::now();
    let content_type = orderstream_orders::CONTENT_TYPE.as_bytes();
    for (key, value, event_id) in records {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "event_id",
                value: Some(event_id.as_slice()),
            })
            .insert(Header {
                key: "content-type",
                value: Some(content_type),
            });
        let mut record: Record<'a> = BaseRecord::to(topic)
            .key(key.as_slice())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match send(record) {
                Sent::Taken => break,
                Sent::Full(back) => {
                    record = back;
                    (waits.on_full)();
                }
                Sent::Refused(e) => bail!("bare rust-rdkafka: enqueue refused: {e}"),
            }
        }
        (waits.after_send)();
    }
    let n = records.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done =
        || ctx.delivered.load(Ordering::Relaxed) - d0 + ctx.failed.load(Ordering::Relaxed) - f0;
    while done() < n && Instant::now() < deadline {
        (waits.until_done)();
    }
    let s = started.elapsed().as_secs_f64();
    let cpu = util::process_cpu().saturating_sub(cpu0);
    let delivered = ctx.delivered.load(Ordering::Relaxed) - d0;
    if delivered != n {
        bail!("bare rust-rdkafka: {delivered} of {n} delivered");
    }
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    Ok(Run {
        msgs_s: n as f64 / s,
        mb_s: bytes as f64 / s / 1e6,
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n as f64,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
    })
}
