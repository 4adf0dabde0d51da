//! Producer saturation. Per setting, interleaved per round: the keyed idempotent
//! Avro producer (`OrderProducer::send_batch`), the same binary sending the pre-encoded bytes
//! (`RawProducer::batch`, same keys and headers), a bare rust-rdkafka loop sending the
//! same records (`bare.rs`), a Python `confluent-kafka` producer
//! sending those same pre-encoded keys and values with the same librdkafka properties
//! (`python/produce_baseline.py`), librdkafka's `rdkafka_performance` and Kafka's
//! `ProducerPerformance` (both unkeyed: ceilings).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use hdrhistogram::Histogram;
use orderstream_orders::OrderProducer;
use orderstream_producer::{Compression, DeliveryOutcome, ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent};
use rdkafka::producer::Producer as _;

use crate::bare;
use crate::util::{self, Mmm, PARTITIONS, Tools, number_after, number_before, ratio};

/// 8 × 10 000 in flight at most: under librdkafka's queue (100 000), so the awaited window does
/// not bound us below the bare loop, which never waits for reports before sending more.
const WORKERS: usize = 8;
const CHUNK: usize = 10_000;
/// `rdkafka_performance` sends this many times the records of our runs (start-up amortised).
pub(crate) const RDK_FACTOR: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Setting {
    pub(crate) linger_ms: u64,
    /// `note` padding: 0 → ~100 B event, ~900 → ~1 KB.
    pub(crate) pad: usize,
    pub(crate) compression: Compression,
}

impl Setting {
    pub(crate) fn label(&self, size: usize) -> String {
        format!(
            "linger {} ms, {} B, {}",
            self.linger_ms,
            size,
            self.compression.as_librdkafka()
        )
    }
}

/// One producer run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    pub(crate) msgs_s: f64,
    pub(crate) mb_s: f64,
    pub(crate) cpu_us_per_msg: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Variant {
    pub(crate) runs: Vec<Run>,
    pub(crate) errors: Vec<String>,
}

impl Variant {
    pub(crate) fn m(&self, f: impl Fn(&Run) -> f64) -> Mmm {
        Mmm::of(&self.runs.iter().map(f).collect::<Vec<_>>())
    }
    pub(crate) fn rates(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.msgs_s).collect()
    }
}

#[derive(Debug)]
pub(crate) struct SettingResult {
    pub(crate) setting: Setting,
    pub(crate) size: usize,
    pub(crate) records: usize,
    pub(crate) avro: Variant,
    pub(crate) raw: Variant,
    /// A plain rust-rdkafka `ThreadedProducer` loop (`bare.rs`): the floor for `raw`.
    pub(crate) bare: Variant,
    /// Python `confluent-kafka` (empty when the baseline is not available).
    pub(crate) py: Variant,
    pub(crate) rdk: Variant,
    /// `rdkafka_performance` sending records of our shape: a key of an order id's length and
    /// the same two headers (constant values), spread over the partitions per message.
    pub(crate) rdk_shaped: Variant,
    pub(crate) java: Variant,
}

impl SettingResult {
    pub(crate) fn avro_vs_raw(&self) -> Mmm {
        ratio(&self.avro.rates(), &self.raw.rates())
    }
    pub(crate) fn raw_vs_bare(&self) -> Mmm {
        ratio(&self.raw.rates(), &self.bare.rates())
    }
    pub(crate) fn bare_vs_rdk(&self) -> Mmm {
        ratio(&self.bare.rates(), &self.rdk.rates())
    }
    pub(crate) fn raw_vs_rdk(&self) -> Mmm {
        ratio(&self.raw.rates(), &self.rdk.rates())
    }
    pub(crate) fn raw_vs_rdk_shaped(&self) -> Mmm {
        ratio(&self.raw.rates(), &self.rdk_shaped.rates())
    }
    pub(crate) fn raw_vs_py(&self) -> Mmm {
        ratio(&self.raw.rates(), &self.py.rates())
    }

    pub(crate) fn avro_vs_java(&self) -> Mmm {
        ratio(&self.avro.rates(), &self.java.rates())
    }
}

fn record_outcomes(h: &mut Histogram<u64>, outs: &[DeliveryOutcome]) -> usize {
    let mut ok = 0;
    for o in outs {
        if let DeliveryOutcome::Delivered { latency, .. } = o {
            ok += 1;
            let _ = h.record(latency.as_micros().max(1) as u64);
        }
    }
    ok
}

fn finish(started: Instant, cpu0: Duration, n: usize, bytes: usize, h: &Histogram<u64>) -> Run {
    let s = started.elapsed().as_secs_f64();
    let cpu = util::process_cpu().saturating_sub(cpu0);
    Run {
        msgs_s: n as f64 / s,
        mb_s: bytes as f64 / s / 1e6,
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n as f64,
        p50_us: h.value_at_quantile(0.5) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
        p999_us: h.value_at_quantile(0.999) as f64,
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

async fn run_avro(p: &OrderProducer, events: &[OrderEvent], bytes: usize) -> Result<Run> {
    let cpu0 = util::process_cpu();
    let started = Instant::now();
    let chunks: Vec<&[OrderEvent]> = events.chunks(CHUNK).collect();
    let per_worker = chunks.len().div_ceil(WORKERS);
    let work = chunks.chunks(per_worker).map(|mine| async move {
        let mut h = hist();
        let mut ok = 0usize;
        for c in mine {
            ok += record_outcomes(&mut h, &p.send_batch(c).await);
        }
        (ok, h)
    });
    let mut h = hist();
    let mut ok = 0;
    for (n, wh) in join_all(work).await {
        ok += n;
        let _ = h.add(&wh);
    }
    if ok != events.len() {
        bail!("avro: {} of {} delivered", ok, events.len());
    }
    Ok(finish(started, cpu0, ok, bytes, &h))
}

pub(crate) type Pre = (Vec<u8>, Vec<u8>, Vec<u8>); // key, value, event_id header

async fn run_raw(p: &OrderProducer, records: &[Pre]) -> Result<Run> {
    let cpu0 = util::process_cpu();
    let started = Instant::now();
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();
    let chunks: Vec<&[Pre]> = records.chunks(CHUNK).collect();
    let per_worker = chunks.len().div_ceil(WORKERS);
    let work = chunks.chunks(per_worker).map(|mine| async move {
        let mut h = hist();
        let mut ok = 0usize;
        for c in mine {
            // The same shape as `send_batch` (enqueue all, then await all) and the same
            // records: keys, values and headers (`event_id`, `content-type`); only the encoding
            // is not done here.
            let mut batch = p.raw().batch(c.len());
            for (k, v, event_id) in *c {
                let headers: [(&str, &[u8]); 2] = [
                    ("event_id", event_id.as_slice()),
                    ("content-type", orderstream_orders::CONTENT_TYPE.as_bytes()),
                ];
                batch.send(Some(k.as_slice()), v, &headers, None).await;
            }
            let outs = batch.outcomes(|i| c.get(i).map(|r| r.0.as_slice())).await;
            ok += record_outcomes(&mut h, &outs);
        }
        (ok, h)
    });
    let mut h = hist();
    let mut ok = 0;
    for (n, wh) in join_all(work).await {
        ok += n;
        let _ = h.add(&wh);
    }
    if ok != records.len() {
        bail!("raw: {} of {} delivered", ok, records.len());
    }
    Ok(finish(started, cpu0, ok, bytes, &h))
}

/// Writes `records` (key, value, `event_id` header) for `produce_baseline.py`: repeated
/// `[u32 BE len][bytes]` for each of the three.
fn write_records(path: &Path, records: &[Pre]) -> Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for (k, v, event_id) in records {
        for part in [k, v, event_id] {
            w.write_all(&u32::try_from(part.len())?.to_be_bytes())?;
            w.write_all(part)?;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// The Python `confluent-kafka` baseline (`python/produce_baseline.py`): one process per round,
/// warmed up (connections, producer id) before its timed window; `props` are our producer's
/// librdkafka properties. CPU is the Python process's (all threads), latency enqueue → delivery
/// report served by its `poll()` / `flush()`.
fn run_python(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
    file: &Path,
    props: &[String],
    n: usize,
    bytes: usize,
) -> Result<Run> {
    let mut args: Vec<String> = vec![
        "--bootstrap".into(),
        bootstrap.into(),
        "--topic".into(),
        topic.into(),
        "--records".into(),
        file.display().to_string(),
        "--header".into(),
        format!("content-type={}", orderstream_orders::CONTENT_TYPE),
        "--warmup".into(),
        n.min(10_000).to_string(),
    ];
    for p in props {
        args.push("-X".into());
        args.push(p.clone());
    }
    let out = tools.python_produce(&args)?;
    // "delivered=N errors=E elapsed_ms=T cpu_ms=C p50_us=.. p99_us=.. p999_us=.. librdkafka=.."
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("delivered="))
        .context("no result line from produce_baseline.py")?;
    let field = |k: &str| number_after(line, &format!("{k}="));
    let delivered = field("delivered").context("delivered")?;
    let errors = field("errors").context("errors")?;
    if delivered as usize != n || errors > 0.0 {
        bail!("python: {delivered} of {n} delivered, {errors} errors: {line}");
    }
    let s = field("elapsed_ms").context("elapsed_ms")? / 1e3;
    Ok(Run {
        msgs_s: delivered / s,
        mb_s: bytes as f64 / s / 1e6,
        cpu_us_per_msg: field("cpu_ms").map_or(f64::NAN, |ms| ms * 1e3 / delivered),
        p50_us: field("p50_us").unwrap_or(f64::NAN),
        p99_us: field("p99_us").unwrap_or(f64::NAN),
        p999_us: field("p999_us").unwrap_or(f64::NAN),
    })
}

/// What `rdkafka_performance` puts around each payload besides its constant pattern.
#[derive(Debug, Clone, Default)]
struct RdkShape {
    /// The same key for every record (`-k`); the random partitioner still spreads them.
    key: Option<String>,
    /// `name=value` headers added to every record (`-H`).
    headers: Vec<String>,
}

impl RdkShape {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(k) = &self.key {
            a.extend(["-k".into(), k.clone()]);
            a.extend(["-X".into(), "partitioner=random".into()]);
        }
        for h in &self.headers {
            a.extend(["-H".into(), h.clone()]);
        }
        a
    }
}

/// `rdkafka_performance -P`: the run and its elapsed ms (CPU is not measured: n/a).
fn run_rdk(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
    s: Setting,
    n: usize,
    size: usize,
    shape: &RdkShape,
) -> Result<(Run, f64)> {
    let mut args: Vec<String> = vec![
        "-P".into(),
        "-t".into(),
        topic.into(),
        "-b".into(),
        bootstrap.into(),
        "-s".into(),
        size.to_string(),
        "-c".into(),
        n.to_string(),
        "-a".into(),
        "-1".into(),
        "-z".into(),
        s.compression.as_librdkafka().into(),
        "-X".into(),
        format!("linger.ms={}", s.linger_ms),
        "-X".into(),
        "enable.idempotence=true".into(),
        "-X".into(),
        "max.in.flight.requests.per.connection=5".into(),
        "-X".into(),
        "batch.num.messages=10000".into(),
        "-X".into(),
        "batch.size=1000000".into(),
        "-X".into(),
        "queue.buffering.max.messages=100000".into(),
        // Unkeyed records spread over every partition per message, like our keyed ones (the
        // default sticky partitioner would fill one partition per 10 ms).
        "-X".into(),
        "sticky.partitioning.linger.ms=0".into(),
        "-q".into(),
    ];
    args.extend(shape.args());
    let out = tools.rdkperf(&args)?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("msgs/s"))
        .context("no summary line")?;
    let delivered = number_after(line, "), ").context("delivered count")?;
    if (delivered as usize) < n {
        bail!("rdkafka_performance: {delivered} of {n} delivered: {line}");
    }
    let ms = number_after(line, ") in ").context("elapsed ms")?;
    Ok((
        Run {
            msgs_s: number_before(line, " msgs/s").context("msgs/s")?,
            mb_s: number_before(line, " MB/s").context("MB/s")?,
            cpu_us_per_msg: f64::NAN,
            p50_us: f64::NAN,
            p99_us: f64::NAN,
            p999_us: f64::NAN,
        },
        ms,
    ))
}

/// Kafka's `ProducerPerformance` (defaults except acks/idempotence/linger/compression).
fn run_java(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
    s: Setting,
    n: usize,
    size: usize,
) -> Result<Run> {
    let out = tools.kafka_tool(&[
        "producer-perf-test".into(),
        "--topic".into(),
        topic.into(),
        "--num-records".into(),
        n.to_string(),
        "--record-size".into(),
        size.to_string(),
        "--throughput".into(),
        "-1".into(),
        "--producer-props".into(),
        format!("bootstrap.servers={bootstrap}"),
        "acks=all".into(),
        "enable.idempotence=true".into(),
        format!("linger.ms={}", s.linger_ms),
        format!("compression.type={}", s.compression.as_librdkafka()),
        "max.in.flight.requests.per.connection=5".into(),
    ])?;
    // "N records sent, X records/sec (Y MB/sec), A ms avg latency, B ms max latency, P ms 50th, .. 99th, .. 99.9th."
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .context("no summary line")?;
    let ms = |marker: &str| number_before(line, marker).map_or(f64::NAN, |v| v * 1000.0);
    Ok(Run {
        msgs_s: number_before(line, " records/sec").context("records/sec")?,
        mb_s: number_before(line, " MB/sec").context("MB/sec")? * 1.048_576,
        cpu_us_per_msg: f64::NAN,
        p50_us: ms(" ms 50th"),
        p99_us: ms(" ms 99th"),
        p999_us: ms(" ms 99.9th"),
    })
}

/// A failed round still takes its slot (all NaN, left out of every summary), so the per-round
/// ratios keep pairing round i with round i.
fn push(v: &mut Variant, r: Result<Run>) {
    match r {
        Ok(run) => v.runs.push(run),
        Err(e) => {
            v.runs.push(Run {
                msgs_s: f64::NAN,
                mb_s: f64::NAN,
                cpu_us_per_msg: f64::NAN,
                p50_us: f64::NAN,
                p99_us: f64::NAN,
                p999_us: f64::NAN,
            });
            v.errors.push(format!("{e:#}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_setting(
    tools: &Tools,
    bootstrap: &str,
    codec: &OrderCodec,
    s: Setting,
    records: usize,
    rounds: usize,
    java: bool,
    topics: &mut Vec<String>,
) -> Result<SettingResult> {
    let topic = format!(
        "bench-produce-{}-{}-{}-{}",
        s.linger_ms,
        s.pad,
        s.compression.as_librdkafka(),
        std::process::id()
    );
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    let cfg = ProducerConfig {
        bootstrap_servers: bootstrap.to_owned(),
        linger: Duration::from_millis(s.linger_ms),
        compression: s.compression,
        ..ProducerConfig::default()
    };
    // The Python baseline gets exactly our producer's librdkafka properties.
    let props: Vec<String> = cfg
        .to_client_config()?
        .config_map()
        .into_iter()
        .filter(|(k, _)| *k != "bootstrap.servers")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let client_config = cfg.to_client_config()?;
    let bare = std::sync::Arc::new(bare::producer(&client_config)?);
    let p = OrderProducer::new(cfg, codec.clone(), ProducerTopic::new(&topic, PARTITIONS)).await?;
    let events: Vec<OrderEvent> = (0..records as u64).map(|i| util::event(i, s.pad)).collect();
    let schema_id = codec.schema_id_for(&topic).await?;
    let mut pre: Vec<Pre> = Vec::with_capacity(records);
    for e in &events {
        let mut b = Vec::with_capacity(128 + s.pad);
        codec.encode_with_cached_id(schema_id, e, &mut b)?;
        pre.push((
            e.order_id.as_bytes().to_vec(),
            b,
            e.event_id.as_bytes().to_vec(),
        ));
    }
    let shaped = RdkShape {
        key: events.first().map(|e| e.order_id.clone()),
        headers: vec![
            format!(
                "event_id={}",
                events.first().map_or("", |e| e.event_id.as_str())
            ),
            format!("content-type={}", orderstream_orders::CONTENT_TYPE),
        ],
    };
    let pre = std::sync::Arc::new(pre);
    let bytes: usize = pre.iter().map(|r| r.1.len()).sum();
    let size = bytes / records.max(1);
    let py_file: Option<PathBuf> = if tools.python.is_ok() {
        let f = std::env::temp_dir().join(format!("{topic}.records"));
        write_records(&f, &pre)?;
        Some(f)
    } else {
        None
    };
    let run_bare = |n: usize| {
        let (b, t, recs) = (
            std::sync::Arc::clone(&bare),
            topic.clone(),
            std::sync::Arc::clone(&pre),
        );
        tokio::task::spawn_blocking(move || bare::run(&b, &t, &recs[..n]))
    };
    // Warm-up, not measured: connections, producer ids, and a full run of each in-process
    // variant, because the broker's JIT and page cache warm up over the first seconds of load
    // and the variant measured first would pay for it.
    run_avro(&p, &events, bytes).await?;
    run_raw(&p, &pre).await?;
    run_bare(records).await??;
    let mut res = SettingResult {
        setting: s,
        size,
        records,
        avro: Variant::default(),
        raw: Variant::default(),
        bare: Variant::default(),
        py: Variant::default(),
        rdk: Variant::default(),
        rdk_shaped: Variant::default(),
        java: Variant::default(),
    };
    for round in 0..rounds {
        // The in-process variants take turns going first: the first one after the external
        // tools of the round before meets a broker still busy with their records.
        for k in 0..3 {
            match (k + round) % 3 {
                0 => push(&mut res.avro, run_avro(&p, &events, bytes).await),
                1 => push(&mut res.raw, run_raw(&p, &pre).await),
                _ => push(&mut res.bare, run_bare(records).await?),
            }
        }
        if let Some(f) = &py_file {
            let (t, b, tl, f, pr) = (
                topic.clone(),
                bootstrap.to_owned(),
                tools.clone(),
                f.clone(),
                props.clone(),
            );
            let r = tokio::task::spawn_blocking(move || {
                run_python(&tl, &b, &t, &f, &pr, records, bytes)
            })
            .await?;
            push(&mut res.py, r);
        }
        if tools.rdkafka_performance.is_some() {
            // 5× the records: its ~0.5 s start-up (idempotent producer id) is amortised.
            let n = records * RDK_FACTOR;
            for (shape, into) in [
                (RdkShape::default(), &mut res.rdk),
                (shaped.clone(), &mut res.rdk_shaped),
            ] {
                let (t, b, tl) = (topic.clone(), bootstrap.to_owned(), tools.clone());
                let r =
                    tokio::task::spawn_blocking(move || run_rdk(&tl, &b, &t, s, n, size, &shape))
                        .await?;
                push(into, r.map(|(run, _)| run));
            }
        }
        if java {
            let (t, b, tl) = (topic.clone(), bootstrap.to_owned(), tools.clone());
            let r = tokio::task::spawn_blocking(move || run_java(&tl, &b, &t, s, records, size))
                .await?;
            push(&mut res.java, r);
        }
        eprintln!(
            "  produce [{}] round {round}: avro {:.0}/s raw {:.0}/s bare rust-rdkafka {:.0}/s python {:.0}/s rdkafka_performance {:.0}/s (our record shape {:.0}/s) ProducerPerformance {:.0}/s",
            s.label(size),
            res.avro.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.raw.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.bare.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.py.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.rdk.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.rdk_shaped.runs.last().map_or(f64::NAN, |r| r.msgs_s),
            res.java.runs.last().map_or(f64::NAN, |r| r.msgs_s),
        );
    }
    p.shutdown(Duration::from_secs(30)).await;
    let _ = tokio::task::spawn_blocking(move || bare.flush(Duration::from_secs(30))).await;
    if let Some(f) = &py_file {
        let _ = std::fs::remove_file(f);
    }
    Ok(res)
}

/// A producer variant run alone by `--profile-produce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Profiled {
    /// `OrderProducer::send_batch` (Avro encode included).
    Avro,
    /// `RawProducer::batch` with pre-encoded records (same headers as `Avro`).
    Raw,
    /// The bare rust-rdkafka loop.
    Bare,
    /// The bare loop on a `BaseProducer` that the sending thread polls.
    BareInline,
}

/// Sends `records` through one variant at `linger`, ~100 B, no compression (after a warm-up),
/// and prints its rate and CPU per message: a target for a profiler.
pub(crate) async fn profile(
    bootstrap: &str,
    codec: &OrderCodec,
    variant: Profiled,
    records: usize,
    linger: Duration,
    compression: Compression,
) -> Result<()> {
    let topic = format!("bench-produce-profile-{}", std::process::id());
    util::create_topic(bootstrap, &topic).await?;
    let cfg = ProducerConfig {
        bootstrap_servers: bootstrap.to_owned(),
        linger,
        compression,
        ..ProducerConfig::default()
    };
    let client_config = cfg.to_client_config()?;
    let bare = std::sync::Arc::new(bare::producer(&client_config)?);
    let p = OrderProducer::new(cfg, codec.clone(), ProducerTopic::new(&topic, PARTITIONS)).await?;
    let events: Vec<OrderEvent> = (0..records as u64).map(|i| util::event(i, 0)).collect();
    let schema_id = codec.schema_id_for(&topic).await?;
    let mut pre: Vec<Pre> = Vec::with_capacity(records);
    for e in &events {
        let mut b = Vec::with_capacity(128);
        codec.encode_with_cached_id(schema_id, e, &mut b)?;
        pre.push((
            e.order_id.as_bytes().to_vec(),
            b,
            e.event_id.as_bytes().to_vec(),
        ));
    }
    let pre = std::sync::Arc::new(pre);
    let bytes: usize = pre.iter().map(|r| r.1.len()).sum();
    run_raw(&p, &pre[..records.min(10_000)]).await?;
    let run_bare = |n: usize| {
        let (b, t, recs) = (
            std::sync::Arc::clone(&bare),
            topic.clone(),
            std::sync::Arc::clone(&pre),
        );
        tokio::task::spawn_blocking(move || bare::run(&b, &t, &recs[..n]))
    };
    run_bare(records.min(10_000)).await??;
    let run = match variant {
        Profiled::Avro => run_avro(&p, &events, bytes).await?,
        Profiled::Raw => run_raw(&p, &pre).await?,
        Profiled::Bare => run_bare(records).await??,
        Profiled::BareInline => {
            let inline = bare::inline_producer(&client_config)?;
            let recs = std::sync::Arc::clone(&pre);
            let t = topic.clone();
            tokio::task::spawn_blocking(move || {
                bare::run_inline(&inline, &t, &recs[..records.min(10_000)])?;
                bare::run_inline(&inline, &t, &recs)
            })
            .await??
        }
    };
    println!(
        "{variant:?}: {records} records, {:.0} msgs/s, {:.2} CPU µs/msg",
        run.msgs_s, run.cpu_us_per_msg
    );
    p.shutdown(Duration::from_secs(30)).await;
    util::delete_topics(bootstrap, &[topic]).await;
    Ok(())
}
