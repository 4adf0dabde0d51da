//! Workloads with a consumer: W2 fixed-rate end-to-end latency, W3 drain, memory under a slow
//! handler, W5 rebalance. All use the consumer crate's `run` (frontier commits).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use orderstream_consumer::{
    BatchProcessor, ConsumerConfig, GroupProtocol, OrderingMode, ProcessError, Processor, Record,
    Topics, run, run_batched,
};
use orderstream_orders::OrderProducer;
use orderstream_producer::{ProducerConfig, ProducerTopic};
use orderstream_schema::{OrderCodec, OrderEvent};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{self, Mmm, PARTITIONS, Tools, number_after, number_before, ratio};

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn decode(codec: &OrderCodec, rec: &Record) -> Result<OrderEvent, ProcessError> {
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

fn spawn_member<P: Processor>(
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
/// acknowledged.
pub(crate) async fn open_loop(
    p: &OrderProducer,
    rate: f64,
    n: u64,
    phase: i64,
    first_id: u64,
    pad: usize,
) {
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
            tasks.push(tokio::spawn(async move { p.send_batch(&batch).await }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}

// ---------------------------------------------------------------- W2

struct LatencyProc {
    codec: OrderCodec,
    hists: Mutex<BTreeMap<i64, Histogram<u64>>>,
    seen: AtomicU64,
}

impl Processor for LatencyProc {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        let e = decode(&self.codec, rec).await?;
        let lat = (now_us() - e.occurred_at_micros).max(1) as u64;
        if let Ok(mut h) = self.hists.lock() {
            let _ = h
                .entry(e.sequence)
                .or_insert_with(|| {
                    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
                })
                .record(lat);
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lat {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) count: u64,
}

#[derive(Debug)]
pub(crate) struct W2 {
    pub(crate) max_rate: f64,
    /// (level name, offered rate, achieved rate, per-round latencies in µs)
    pub(crate) levels: Vec<(String, f64, f64, Vec<Lat>)>,
    pub(crate) linger_ms: u64,
}

pub(crate) async fn w2(
    bootstrap: &str,
    codec: &OrderCodec,
    max_rate: f64,
    secs: f64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<W2> {
    let topic = format!("bench-w2-{}", std::process::id());
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    let linger_ms = 5;
    let p = producer(bootstrap, codec, &topic, linger_ms).await?;
    let proc_ = Arc::new(LatencyProc {
        codec: codec.clone(),
        hists: Mutex::new(BTreeMap::new()),
        seen: AtomicU64::new(0),
    });
    let cancel = CancellationToken::new();
    let member = spawn_member(
        consumer_cfg(bootstrap, &format!("{topic}-g"), &topic),
        Arc::clone(&proc_),
        cancel.clone(),
    );
    // Warm-up (phase -1): until the consumer has the partitions and processes.
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc_.seen.load(Ordering::Relaxed) == 0 {
        open_loop(&p, 500.0, 250, -1, sent, 0).await;
        sent += 250;
        if Instant::now() > deadline {
            cancel.cancel();
            bail!("W2: consumer processed nothing within 30 s");
        }
    }
    open_loop(&p, max_rate * 0.1, (max_rate * 0.1) as u64, -1, sent, 0).await;
    sent += (max_rate * 0.1) as u64;
    while proc_.seen.load(Ordering::Relaxed) < sent
        && Instant::now() < deadline + Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 10/50/80 % of W1's max, plus a fixed 1 000 msgs/s reference level (the floor of the
    // pipeline's latency on this machine, independent of the max).
    let fracs: Vec<(String, f64)> = vec![
        ("1 000 msgs/s (reference)".to_owned(), 1000.0),
        ("10%".to_owned(), max_rate * 0.1),
        ("50%".to_owned(), max_rate * 0.5),
        ("80%".to_owned(), max_rate * 0.8),
    ];
    let mut phase = 0i64;
    let mut plan = Vec::new();
    for _ in 0..rounds {
        for (i, (_, rate)) in fracs.iter().enumerate() {
            plan.push((phase, i, *rate));
            phase += 1;
        }
    }
    let mut achieved: Vec<Vec<f64>> = vec![Vec::new(); fracs.len()];
    let mut total_sent = sent;
    for (phase, i, rate) in &plan {
        let rate = *rate;
        let n = (rate * secs) as u64;
        let t = Instant::now();
        open_loop(&p, rate, n, *phase, total_sent, 0).await;
        achieved[*i].push(n as f64 / t.elapsed().as_secs_f64());
        total_sent += n;
        // Let the consumer catch up with everything sent so far before the next level, so a
        // backlog never leaks into the next level's histogram.
        let wait_until = Instant::now() + Duration::from_secs(45);
        while proc_.seen.load(Ordering::Relaxed) < total_sent && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let behind = total_sent.saturating_sub(proc_.seen.load(Ordering::Relaxed));
        if behind > 0 {
            eprintln!("  W2: consumer still {behind} records behind after 45 s");
        }
        eprintln!(
            "  W2 phase {phase}: {} ({rate:.0}/s), {n} records",
            fracs[*i].0
        );
    }
    cancel.cancel();
    let _ = member.await;
    p.shutdown(Duration::from_secs(10)).await;
    let hists = proc_.hists.lock().map(|h| h.clone()).unwrap_or_default();
    let mut levels = Vec::new();
    for (i, (name, rate)) in fracs.iter().enumerate() {
        let lats: Vec<Lat> = plan
            .iter()
            .filter(|(_, j, _)| *j == i)
            .filter_map(|(ph, _, _)| hists.get(ph))
            .map(|h| Lat {
                p50: h.value_at_quantile(0.5) as f64,
                p99: h.value_at_quantile(0.99) as f64,
                p999: h.value_at_quantile(0.999) as f64,
                max: h.max() as f64,
                count: h.len(),
            })
            .collect();
        levels.push((name.clone(), *rate, Mmm::of(&achieved[i]).med, lats));
    }
    Ok(W2 {
        max_rate,
        levels,
        linger_ms,
    })
}

// ---------------------------------------------------------------- W3

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

/// The W3 handler: decode, then check that each order's sequence never goes backwards.
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
pub(crate) struct W3 {
    pub(crate) records: u64,
    pub(crate) interval: Vec<f64>,
    pub(crate) batch: Vec<f64>,
    pub(crate) every100: Vec<f64>,
    pub(crate) no_commit: Vec<f64>,
    pub(crate) java: Vec<f64>,
    pub(crate) rdk: Vec<f64>,
    pub(crate) errors: Vec<String>,
    pub(crate) out_of_order: u64,
    pub(crate) commits: Vec<(String, u64)>,
    /// Per variant: CPU µs per record, context switches per record (one entry per round).
    pub(crate) usage: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

impl W3 {
    pub(crate) fn vs_java(&self) -> Mmm {
        ratio(&self.interval, &self.java)
    }
    pub(crate) fn vs_rdk(&self) -> Mmm {
        ratio(&self.interval, &self.rdk)
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
        run(cfg, Arc::clone(&p), cancel).await?
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

fn drain_rdk(tools: &Tools, bootstrap: &str, topic: &str, n: u64) -> Result<f64> {
    let out = tools.rdkperf(&[
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
    ])?;
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

pub(crate) async fn w3(
    tools: &Tools,
    bootstrap: &str,
    codec: &OrderCodec,
    n: u64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<W3> {
    let topic = format!("bench-w3-{}", std::process::id());
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    prefill(bootstrap, codec, &topic, n).await?;
    let mut r = W3 {
        records: n,
        ..W3::default()
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
            let (t, b, tl) = (topic.clone(), bootstrap.to_owned(), tools.clone());
            let k = tokio::task::spawn_blocking(move || drain_rdk(&tl, &b, &t, n)).await?;
            push(&mut r.rdk, &mut r.errors, "rdkafka_performance -G", k);
        }
        eprintln!(
            "  W3 round {round}: interval {:.0}/s batch {:.0}/s no-commit {:.0}/s every-100 {:.0}/s ConsumerPerformance {:.0}/s rdkafka_performance {:.0}/s",
            r.interval.last().copied().unwrap_or(f64::NAN),
            r.batch.last().copied().unwrap_or(f64::NAN),
            r.no_commit.last().copied().unwrap_or(f64::NAN),
            r.every100.last().copied().unwrap_or(f64::NAN),
            r.java.last().copied().unwrap_or(f64::NAN),
            r.rdk.last().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(r)
}

// ---------------------------------------------------------------- memory

struct SlowProc {
    codec: OrderCodec,
    delay: Duration,
    done: AtomicU64,
}

impl Processor for SlowProc {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        let _ = decode(&self.codec, rec).await?;
        tokio::time::sleep(self.delay).await;
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Mem {
    pub(crate) produce_rate: f64,
    pub(crate) handler_rate: f64,
    pub(crate) secs: f64,
    pub(crate) record_bytes: usize,
    pub(crate) produced: u64,
    pub(crate) processed: u64,
    pub(crate) base_rss_mib: f64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) rss_half_mib: f64,
    pub(crate) rss_end_mib: f64,
    pub(crate) hwm_reset: bool,
    pub(crate) window: usize,
    pub(crate) budget_mib: f64,
    pub(crate) concurrency: usize,
}

impl Mem {
    /// One line for the parent process (see [`Mem::parse`]).
    pub(crate) fn line(&self) -> String {
        format!(
            "mem {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            self.produce_rate,
            self.handler_rate,
            self.secs,
            self.record_bytes,
            self.produced,
            self.processed,
            self.base_rss_mib,
            self.peak_rss_mib,
            self.rss_half_mib,
            self.rss_end_mib,
            u8::from(self.hwm_reset),
            self.window,
            self.budget_mib,
            self.concurrency
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Mem> {
        let f: Vec<f64> = line
            .strip_prefix("mem ")?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [
            rate,
            hrate,
            secs,
            rb,
            prod,
            proc_,
            base,
            peak,
            half,
            end,
            hwm,
            win,
            budget,
            conc,
        ] = f[..]
        else {
            return None;
        };
        Some(Mem {
            produce_rate: rate,
            handler_rate: hrate,
            secs,
            record_bytes: rb as usize,
            produced: prod as u64,
            processed: proc_ as u64,
            base_rss_mib: base,
            peak_rss_mib: peak,
            rss_half_mib: half,
            rss_end_mib: end,
            hwm_reset: hwm > 0.0,
            window: win as usize,
            budget_mib: budget,
            concurrency: conc as usize,
        })
    }
}

/// The memory phase in a fresh process of this binary (`--mem-phase-secs`), so its RSS holds
/// the consumer alone and nothing left over from earlier workloads.
pub(crate) async fn mem_in_child(
    bootstrap: &str,
    registry: &str,
    rate: f64,
    secs: f64,
) -> Result<Mem> {
    let mut child = crate::procs::child(
        bootstrap,
        registry,
        &[
            "--mem-phase-secs".into(),
            secs.to_string(),
            "--rate".into(),
            rate.to_string(),
        ],
    )?;
    let out = child.stdout.take().context("child stdout")?;
    let mem = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| Mem::parse(&l))
    })
    .await?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    mem.with_context(|| format!("the memory phase process reported nothing ({status})"))
}

/// Longest span over which the memory phase's half-time and end RSS are taken (their highest
/// sample).
const RSS_WINDOW_SECS: f64 = 10.0;

/// The consumer's memory budget in the memory phase.
const MEM_BUDGET: usize = 32 << 20;
/// Fixed overhead allowed above the budget and the RSS before the member started: thread
/// stacks and librdkafka's own buffers of two consumers and a producer.
pub(crate) const MEM_OVERHEAD_MIB: f64 = 24.0;

pub(crate) async fn mem(
    bootstrap: &str,
    registry: &str,
    codec: &OrderCodec,
    rate: f64,
    secs: f64,
    topics: &mut Vec<String>,
) -> Result<Mem> {
    let topic = format!("bench-mem-{}", std::process::id());
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    // Handler throughput = partitions × per-partition concurrency / delay = rate / 10.
    let conc = 2usize;
    let delay = Duration::from_secs_f64((conc * PARTITIONS as usize) as f64 * 10.0 / rate);
    let proc_ = Arc::new(SlowProc {
        codec: codec.clone(),
        delay,
        done: AtomicU64::new(0),
    });
    let cancel = CancellationToken::new();
    let cfg = ConsumerConfig {
        max_concurrency: conc,
        memory_budget: MEM_BUDGET,
        ..consumer_cfg(bootstrap, &format!("{topic}-g"), &topic)
    };
    let window = cfg.max_in_flight_per_partition;
    let base = util::status_kib("VmRSS:") as f64 / 1024.0;
    let hwm_reset = util::reset_peak_rss();
    let member = spawn_member(cfg, Arc::clone(&proc_), cancel.clone());
    let pad = 900;
    let n = (rate * secs) as u64;
    let sampler = tokio::spawn(async move {
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed().as_secs_f64() < secs + 1.0 {
            samples.push((
                start.elapsed().as_secs_f64(),
                util::status_kib("VmRSS:") as f64 / 1024.0,
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        samples
    });
    // The producer runs in its own process: this process's RSS is the consumer's alone.
    let mut child = crate::procs::child(
        bootstrap,
        registry,
        &[
            "--produce-only".into(),
            topic.clone(),
            "--rate".into(),
            rate.to_string(),
            "--count".into(),
            n.to_string(),
            "--pad".into(),
            pad.to_string(),
        ],
    )?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    if !status.success() {
        cancel.cancel();
        bail!("the producer process failed: {status}");
    }
    let samples = sampler.await.unwrap_or_default();
    let processed = proc_.done.load(Ordering::Relaxed);
    let peak_sampled = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    let peak = if hwm_reset {
        (util::status_kib("VmHWM:") as f64 / 1024.0).max(peak_sampled)
    } else {
        peak_sampled
    };
    // RSS swings by a fetch's worth of buffers within a second (a paused partition's prefetch
    // is dropped and fetched again on resume, freed memory is returned after mimalloc's purge
    // delay): growth is judged on the highest sample of a span before each point (a quarter of
    // the phase, at most 10 s, so the half-time and end spans never overlap), not one sample.
    let span = (secs / 4.0).min(RSS_WINDOW_SECS);
    let at = |t: f64| {
        samples
            .iter()
            .filter(|s| s.0 > t - span && s.0 <= t)
            .map(|s| s.1)
            .reduce(f64::max)
            .or_else(|| samples.iter().rev().find(|s| s.0 <= t).map(|s| s.1))
            .unwrap_or(f64::NAN)
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), member).await;
    Ok(Mem {
        produce_rate: rate,
        handler_rate: (conc * PARTITIONS as usize) as f64 / delay.as_secs_f64(),
        secs,
        record_bytes: util::event(0, pad).note.map_or(0, |s| s.len()) + 100,
        produced: n,
        processed,
        base_rss_mib: base,
        peak_rss_mib: peak,
        rss_half_mib: at(secs / 2.0),
        rss_end_mib: at(secs),
        hwm_reset,
        window,
        budget_mib: (MEM_BUDGET >> 20) as f64,
        concurrency: conc,
    })
}

// ---------------------------------------------------------------- W5

struct TraceProc {
    codec: OrderCodec,
    log: Arc<Mutex<Vec<(i32, i64, Instant)>>>,
}

impl Processor for TraceProc {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        let _ = decode(&self.codec, rec).await?;
        if let Ok(mut l) = self.log.lock() {
            l.push((rec.partition(), rec.offset(), Instant::now()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RebalanceEvent {
    pub(crate) what: &'static str,
    /// Longest per-partition processing gap spanning or following the change, ms.
    pub(crate) max_gap_ms: f64,
    /// Median over partitions of that gap, ms.
    pub(crate) median_gap_ms: f64,
    /// Until the last stall (> 200 ms) after the change ended, ms.
    pub(crate) time_to_stable_ms: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct W5 {
    pub(crate) protocol: &'static str,
    pub(crate) rate: f64,
    pub(crate) events: Vec<RebalanceEvent>,
    pub(crate) processed: u64,
    pub(crate) reprocessed: u64,
    pub(crate) error: Option<String>,
}

fn analyse(
    log: &[(i32, i64, Instant)],
    what: &'static str,
    at: Instant,
    window: Duration,
) -> RebalanceEvent {
    let mut per: BTreeMap<i32, Vec<Instant>> = BTreeMap::new();
    for (p, _, t) in log {
        per.entry(*p).or_default().push(*t);
    }
    let mut gaps = Vec::new();
    let mut stable = Duration::ZERO;
    for p in 0..PARTITIONS {
        let mut ts = per.remove(&p).unwrap_or_default();
        ts.sort();
        let before = ts.iter().rev().find(|t| **t <= at).copied().unwrap_or(at);
        let mut prev = before;
        let mut max_gap = Duration::ZERO;
        for t in ts.iter().filter(|t| **t > at && **t <= at + window) {
            let g = *t - prev;
            if g > max_gap {
                max_gap = g;
            }
            if g > Duration::from_millis(200) {
                stable = stable.max(*t - at);
            }
            prev = *t;
        }
        gaps.push(max_gap.as_secs_f64() * 1e3);
    }
    let m = Mmm::of(&gaps);
    RebalanceEvent {
        what,
        max_gap_ms: m.max,
        median_gap_ms: m.med,
        time_to_stable_ms: stable.as_secs_f64() * 1e3,
    }
}

pub(crate) async fn w5(
    bootstrap: &str,
    codec: &OrderCodec,
    protocol: GroupProtocol,
    rate: f64,
    hold: Duration,
    topics: &mut Vec<String>,
) -> W5 {
    let name = match protocol {
        GroupProtocol::Consumer => "consumer (KIP-848)",
        _ => "classic cooperative-sticky",
    };
    let mut out = W5 {
        protocol: name,
        rate,
        events: Vec::new(),
        processed: 0,
        reprocessed: 0,
        error: None,
    };
    if let Err(e) = w5_inner(bootstrap, codec, protocol, rate, hold, topics, &mut out).await {
        out.error = Some(format!("{e:#}"));
    }
    out
}

async fn w5_inner(
    bootstrap: &str,
    codec: &OrderCodec,
    protocol: GroupProtocol,
    rate: f64,
    hold: Duration,
    topics: &mut Vec<String>,
    out: &mut W5,
) -> Result<()> {
    let topic = format!(
        "bench-w5-{}-{}",
        matches!(protocol, GroupProtocol::Consumer),
        std::process::id()
    );
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    let p = producer(bootstrap, codec, &topic, 5).await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let group = format!("{topic}-g");
    let cfg = ConsumerConfig {
        group_protocol: protocol,
        session_timeout: Duration::from_secs(45),
        ..consumer_cfg(bootstrap, &group, &topic)
    };
    let member = |c: CancellationToken| {
        spawn_member(
            cfg.clone(),
            Arc::new(TraceProc {
                codec: codec.clone(),
                log: Arc::clone(&log),
            }),
            c,
        )
    };
    let all = CancellationToken::new();
    let total = hold.as_secs_f64() * 4.0 + 10.0;
    let sender = {
        let p = p.clone();
        tokio::spawn(async move { open_loop(&p, rate, (rate * total) as u64, 0, 0, 0).await })
    };
    let m1 = member(all.child_token());
    let m2 = member(all.child_token());
    // Stable with two members: every partition processing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts: HashSet<i32> = log
            .lock()
            .map(|l| l.iter().map(|r| r.0).collect())
            .unwrap_or_default();
        if parts.len() == PARTITIONS as usize {
            break;
        }
        if Instant::now() > deadline {
            all.cancel();
            bail!("two members did not cover all partitions within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(hold).await;
    let joined = Instant::now();
    let c3 = all.child_token();
    let m3 = member(c3.clone());
    tokio::time::sleep(hold * 2).await;
    let left = Instant::now();
    c3.cancel();
    let _ = m3.await;
    tokio::time::sleep(hold * 2).await;
    sender.abort();
    all.cancel();
    let _ = m1.await;
    let _ = m2.await;
    p.shutdown(Duration::from_secs(5)).await;
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    out.events
        .push(analyse(&log, "2→3 (join)", joined, hold * 2));
    out.events
        .push(analyse(&log, "3→2 (leave)", left, hold * 2));
    out.processed = log.len() as u64;
    let uniq: HashSet<(i32, i64)> = log.iter().map(|r| (r.0, r.1)).collect();
    out.reprocessed = log.len() as u64 - uniq.len() as u64;
    Ok(())
}
