//! Consumer drain: a pre-filled topic drained by the consumer crate's `run` and `run_batched`
//! at several commit policies, against `ConsumerPerformance` and `rdkafka_performance -G`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use orderstream_consumer::{
    BatchProcessor, ConsumerConfig, OrderingMode, ProcessError, Processor, Record, run_batched,
};
use orderstream_schema::{OrderCodec, OrderEvent};
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, decode, now_us, prefill};
use crate::util::{self, Mmm, PARTITIONS, Tools, number_after, number_before, ratio};

thread_local! {
    /// Decode target reused per thread, as the sample processor does.
    static EVENT: std::cell::RefCell<OrderEvent> = std::cell::RefCell::new(OrderEvent::default());
}

/// CPU time and context switches of this process at one moment.
#[derive(Debug, Clone, Default)]
struct Usage {
    cpu: Duration,
    switches: HashMap<u32, u64>,
}

impl Usage {
    fn now() -> Usage {
        Usage {
            cpu: util::process_cpu(),
            switches: util::thread_switches(),
        }
    }

    /// (CPU µs, context switches) from `self` to `later`, per record.
    fn per_record(&self, later: &Usage, n: u64) -> (f64, f64) {
        let cpu = (later.cpu.saturating_sub(self.cpu)).as_secs_f64() * 1e6 / n as f64;
        let sw: u64 = later
            .switches
            .iter()
            .map(|(tid, c)| c.saturating_sub(self.switches.get(tid).copied().unwrap_or(0)))
            .sum();
        (cpu, sw as f64 / n as f64)
    }
}

/// The drain handler: decode, then check that each order's sequence never goes backwards.
/// Per-partition maps: records of one partition run on one owner, so the locks are uncontended.
struct DrainProc {
    codec: OrderCodec,
    target: u64,
    done: AtomicU64,
    first: Mutex<Option<(Instant, Usage)>>,
    last: Mutex<Option<(Instant, Usage)>>,
    last_seq: Vec<Mutex<HashMap<String, i64>>>,
    out_of_order: AtomicU64,
    cancel: CancellationToken,
}

impl DrainProc {
    fn new(codec: &OrderCodec, target: u64, cancel: CancellationToken) -> Self {
        Self {
            codec: codec.clone(),
            target,
            done: AtomicU64::new(0),
            first: Mutex::new(None),
            last: Mutex::new(None),
            last_seq: (0..PARTITIONS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            out_of_order: AtomicU64::new(0),
            cancel,
        }
    }

    fn check(&self, partition: i32, e: &OrderEvent) {
        let Some(m) = self.last_seq.get(partition as usize) else {
            return;
        };
        if let Ok(mut m) = m.lock() {
            match m.get_mut(&e.order_id) {
                Some(prev) => {
                    if *prev > e.sequence {
                        self.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    *prev = e.sequence;
                }
                None => {
                    m.insert(e.order_id.clone(), e.sequence);
                }
            }
        }
    }

    async fn one(&self, rec: &Record) -> Result<(), ProcessError> {
        let bytes = rec
            .payload()
            .ok_or_else(|| ProcessError::permanent("empty", "null value"))?;
        let fast = EVENT.with(|ev| {
            let mut ev = ev.borrow_mut();
            self.codec.try_decode_cached_into(bytes, &mut ev).map(|r| {
                r.map(|_| self.check(rec.partition(), &ev))
                    .map_err(|e| ProcessError::permanent("decode", e.to_string()))
            })
        });
        match fast {
            Some(r) => r?,
            None => {
                let e = decode(&self.codec, rec).await?;
                self.check(rec.partition(), &e);
            }
        }
        self.count(1);
        Ok(())
    }

    fn count(&self, n: u64) {
        if self.done.load(Ordering::Relaxed) == 0
            && let Ok(mut f) = self.first.lock()
            && f.is_none()
        {
            let u = Usage::now();
            *f = Some((Instant::now(), u));
        }
        if self.done.fetch_add(n, Ordering::Relaxed) + n >= self.target {
            let t = Instant::now();
            if let Ok(mut l) = self.last.lock()
                && l.is_none()
            {
                *l = Some((t, Usage::now()));
            }
            self.cancel.cancel();
        }
    }
}

impl Processor for DrainProc {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        self.one(rec).await
    }
}

impl BatchProcessor for DrainProc {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(self.one(r).await);
        }
        out
    }
}

#[derive(Debug, Default)]
pub(crate) struct Drain {
    pub(crate) records: u64,
    pub(crate) interval: Vec<f64>,
    pub(crate) batch: Vec<f64>,
    pub(crate) every100: Vec<f64>,
    pub(crate) no_commit: Vec<f64>,
    pub(crate) java: Vec<f64>,
    pub(crate) rdk: Vec<f64>,
    /// `rdkafka_performance -G -H parse`: it also parses every record's headers, which a
    /// `Record` carries (and the plain run never asks librdkafka for).
    pub(crate) rdk_headers: Vec<f64>,
    pub(crate) errors: Vec<String>,
    pub(crate) out_of_order: u64,
    pub(crate) commits: Vec<(String, u64)>,
    /// Per variant: CPU µs per record, context switches per record (one entry per round).
    pub(crate) usage: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

impl Drain {
    pub(crate) fn vs_java(&self) -> Mmm {
        ratio(&self.interval, &self.java)
    }
    pub(crate) fn vs_rdk(&self) -> Mmm {
        ratio(&self.interval, &self.rdk)
    }
    pub(crate) fn vs_rdk_headers(&self) -> Mmm {
        ratio(&self.interval, &self.rdk_headers)
    }
    pub(crate) fn batch_vs_java(&self) -> Mmm {
        ratio(&self.batch, &self.java)
    }
    pub(crate) fn batch_vs_rdk(&self) -> Mmm {
        ratio(&self.batch, &self.rdk)
    }
    pub(crate) fn interval_vs_none(&self) -> Mmm {
        ratio(&self.interval, &self.no_commit)
    }
}

/// One drain: (msgs/s, out-of-order, commits, CPU µs/record, context switches/record).
pub(crate) async fn drain_ours(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    n: u64,
    commit_every: usize,
    commit_interval: Duration,
    batched: bool,
) -> Result<(f64, u64, u64, f64, f64)> {
    let cancel = CancellationToken::new();
    let p = Arc::new(DrainProc::new(codec, n, cancel.clone()));
    let group = format!("{topic}-g-{}", now_us());
    let cfg = ConsumerConfig {
        commit_every,
        commit_interval,
        ordering: OrderingMode::Key,
        ..consumer_cfg(bootstrap, &group, topic)
    };
    let watchdog = {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            c.cancel();
        })
    };
    let summary = if batched {
        run_batched(cfg, Arc::clone(&p), cancel).await?
    } else {
        orderstream_consumer::run(cfg, Arc::clone(&p), cancel).await?
    };
    watchdog.abort();
    let done = p.done.load(Ordering::Relaxed);
    if done < n {
        bail!("drain: {done} of {n} processed before the 120 s watchdog");
    }
    let (t0, u0) = p
        .first
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .context("no first")?;
    let (t1, u1) = p
        .last
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .context("no last")?;
    let (cpu, sw) = u0.per_record(&u1, n);
    Ok((
        n as f64 / (t1 - t0).as_secs_f64(),
        p.out_of_order.load(Ordering::Relaxed),
        summary.commits,
        cpu,
        sw,
    ))
}

fn drain_java(tools: &Tools, bootstrap: &str, topic: &str, n: u64) -> Result<f64> {
    let out = tools.kafka_tool(&[
        "consumer-perf-test".into(),
        "--bootstrap-server".into(),
        bootstrap.into(),
        "--topic".into(),
        topic.into(),
        "--messages".into(),
        n.to_string(),
        "--group".into(),
        format!("{topic}-cp-{}", now_us()),
        "--timeout".into(),
        "60000".into(),
    ])?;
    let mut lines = out.lines().filter(|l| l.contains(','));
    let header: Vec<&str> = lines
        .find(|l| l.contains("fetch.nMsg.sec"))
        .context("no header")?
        .split(',')
        .map(str::trim)
        .collect();
    let data: Vec<&str> = lines
        .next_back()
        .context("no data line")?
        .split(',')
        .map(str::trim)
        .collect();
    let i = header
        .iter()
        .position(|h| *h == "fetch.nMsg.sec")
        .context("column")?;
    let v: f64 = data.get(i).context("value")?.parse()?;
    Ok(v)
}

fn drain_rdk(
    tools: &Tools,
    bootstrap: &str,
    topic: &str,
    n: u64,
    parse_headers: bool,
) -> Result<f64> {
    let mut args: Vec<String> = vec![
        "-G".into(),
        format!("{topic}-rdk-{}", now_us()),
        "-t".into(),
        topic.into(),
        "-b".into(),
        bootstrap.into(),
        "-c".into(),
        n.to_string(),
        "-X".into(),
        "auto.offset.reset=earliest".into(),
        "-q".into(),
    ];
    if parse_headers {
        args.extend(["-H".into(), "parse".into()]);
    }
    let out = tools.rdkperf(&args)?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("msgs/s"))
        .context("no summary")?;
    let got = number_after(line, "% ").unwrap_or(0.0);
    if (got as u64) < n {
        bail!("rdkafka_performance -G consumed {got} of {n}");
    }
    number_before(line, " msgs/s").context("msgs/s")
}

fn push(v: &mut Vec<f64>, errs: &mut Vec<String>, what: &str, r: Result<f64>) {
    match r {
        Ok(x) => v.push(x),
        Err(e) => errs.push(format!("{what}: {e:#}")),
    }
}

pub(crate) async fn run(
    tools: &Tools,
    bootstrap: &str,
    codec: &OrderCodec,
    n: u64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Drain> {
    let topic = format!("bench-drain-{}", std::process::id());
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    prefill(bootstrap, codec, &topic, n).await?;
    let mut r = Drain {
        records: n,
        ..Drain::default()
    };
    // (label, commit_every, commit_interval); the order rotates every round so no variant
    // always runs first or last.
    let variants: [(&str, usize, Duration, bool); 4] = [
        ("interval", 1000, Duration::from_secs(1), false),
        ("no-commit", usize::MAX, Duration::from_secs(3600), false),
        ("every-100", 100, Duration::from_secs(1), false),
        ("batch", 1000, Duration::from_secs(1), true),
    ];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let (label, every, interval, batched) = variants[(k + round) % variants.len()];
            match drain_ours(bootstrap, codec, &topic, n, every, interval, batched).await {
                Ok((rate, ooo, commits, cpu, sw)) => {
                    r.out_of_order += ooo;
                    r.commits.push((label.to_owned(), commits));
                    let u = r.usage.entry(label.to_owned()).or_default();
                    u.0.push(cpu);
                    u.1.push(sw);
                    match label {
                        "interval" => r.interval.push(rate),
                        "no-commit" => r.no_commit.push(rate),
                        "batch" => r.batch.push(rate),
                        _ => r.every100.push(rate),
                    }
                }
                Err(e) => r.errors.push(format!("{label}: {e:#}")),
            }
        }
        let (t, b, tl) = (topic.clone(), bootstrap.to_owned(), tools.clone());
        let j = tokio::task::spawn_blocking(move || drain_java(&tl, &b, &t, n)).await?;
        push(&mut r.java, &mut r.errors, "ConsumerPerformance", j);
        if tools.rdkafka_performance.is_some() {
            for (parse, into, what) in [
                (false, &mut r.rdk, "rdkafka_performance -G"),
                (true, &mut r.rdk_headers, "rdkafka_performance -G -H parse"),
            ] {
                let (t, b, tl) = (topic.clone(), bootstrap.to_owned(), tools.clone());
                let k =
                    tokio::task::spawn_blocking(move || drain_rdk(&tl, &b, &t, n, parse)).await?;
                push(into, &mut r.errors, what, k);
            }
        }
        eprintln!(
            "  drain round {round}: interval {:.0}/s batch {:.0}/s no-commit {:.0}/s every-100 {:.0}/s ConsumerPerformance {:.0}/s rdkafka_performance {:.0}/s (parsing headers {:.0}/s)",
            r.interval.last().copied().unwrap_or(f64::NAN),
            r.batch.last().copied().unwrap_or(f64::NAN),
            r.no_commit.last().copied().unwrap_or(f64::NAN),
            r.every100.last().copied().unwrap_or(f64::NAN),
            r.java.last().copied().unwrap_or(f64::NAN),
            r.rdk.last().copied().unwrap_or(f64::NAN),
            r.rdk_headers.last().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(r)
}
