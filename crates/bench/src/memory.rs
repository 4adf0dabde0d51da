//! Memory with a slow handler: RSS of a fresh member process while an open-loop producer in
//! another process outpaces its handler tenfold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use orderstream_consumer::{ConsumerConfig, ProcessError, Processor, Record};
use orderstream_schema::OrderCodec;
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, decode, spawn_member};
use crate::util::{self, PARTITIONS};

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
pub(crate) struct Memory {
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
    /// Partition pauses of the member (each drops the partition's prefetch, fetched again on
    /// resume).
    pub(crate) pauses: u64,
}

impl Memory {
    /// One line for the parent process (see [`Memory::parse`]).
    pub(crate) fn line(&self) -> String {
        format!(
            "mem {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
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
            self.concurrency,
            self.pauses
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Memory> {
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
            pauses,
        ] = f[..]
        else {
            return None;
        };
        Some(Memory {
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
            pauses: pauses as u64,
        })
    }
}

/// The memory phase in a fresh process of this binary (`--mem-phase-secs`), so its RSS holds
/// the consumer alone and nothing left over from earlier workloads.
pub(crate) async fn run(bootstrap: &str, registry: &str, rate: f64, secs: f64) -> Result<Memory> {
    let mut child = util::child(
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
            .find_map(|l| Memory::parse(&l))
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

pub(crate) async fn phase(
    bootstrap: &str,
    registry: &str,
    codec: &OrderCodec,
    rate: f64,
    secs: f64,
    topics: &mut Vec<String>,
) -> Result<Memory> {
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
    let mut child = util::child(
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
    // RSS swings by a fetch's worth of buffers within a second (responses come and go, a
    // paused partition's prefetch is dropped and fetched again on resume, freed memory is
    // returned after mimalloc's purge delay): growth is judged on the highest sample of a span
    // before each point (a quarter of the phase, at most 10 s, so the half-time and end spans
    // never overlap), not one sample.
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
    let summary = tokio::time::timeout(Duration::from_secs(30), member)
        .await
        .context("the member did not stop within 30 s")?
        .context("the member task")?
        .context("the member")?;
    Ok(Memory {
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
        pauses: summary.pauses,
    })
}

/// Child role: produce `count` events of `pad` bytes to `topic` at `rate`/s, then exit.
pub(crate) async fn produce_only(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    rate: f64,
    count: u64,
    pad: usize,
) -> Result<()> {
    let p = crate::clients::producer(bootstrap, codec, topic, 5).await?;
    crate::clients::open_loop(&p, rate, count, 0, 0, pad).await;
    p.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
