//! End-to-end latency at a fixed rate: an open-loop producer (its own process, see `sender.rs`)
//! at levels of the producer saturation's Avro max, and the consumer crate's `run` recording
//! scheduled send → handler; beside it, on a topic of its own with a sender of its own, a bare
//! rust-rdkafka consumer loop at the same levels.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use orderstream_consumer::{ProcessError, Processor, Record};
use orderstream_schema::OrderCodec;
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, decode, latency_histogram, now_us, spawn_member};
use crate::sender::Sender;
use crate::util::{self, Mmm};

/// Latencies per phase (an event's `sequence`) and the count of records one consumer saw.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    hists: Mutex<BTreeMap<i64, Histogram<u64>>>,
    seen: AtomicU64,
}

impl Recorder {
    pub(crate) fn record(&self, phase: i64, latency_us: i64) {
        if let Ok(mut h) = self.hists.lock() {
            let _ = h
                .entry(phase)
                .or_insert_with(latency_histogram)
                .record(latency_us.max(1) as u64);
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

struct LatencyProc {
    codec: OrderCodec,
    rec: Arc<Recorder>,
}

impl Processor for LatencyProc {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        let e = decode(&self.codec, rec).await?;
        self.rec.record(e.sequence, now_us() - e.occurred_at_micros);
        Ok(())
    }
}

/// The producers' `linger.ms`.
pub(crate) const LINGER_MS: u64 = 5;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lat {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) count: u64,
}

impl Lat {
    pub(crate) fn of(h: &Histogram<u64>) -> Lat {
        Lat {
            p50: h.value_at_quantile(0.5) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
            max: h.max() as f64,
            count: h.len(),
        }
    }
}

/// One consumer's figures at one level, one entry per round.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Achieved send rate, msgs/s.
    pub(crate) achieved: Vec<f64>,
    /// Scheduled send → handler.
    pub(crate) end_to_end: Vec<Lat>,
    /// Scheduled send → the producer's acknowledgement.
    pub(crate) acked: Vec<Lat>,
    /// This process's CPU time per record handled, from the start of a run until its consumer
    /// caught up.
    pub(crate) cpu_us_per_record: Vec<f64>,
}

#[derive(Debug)]
pub(crate) struct Level {
    pub(crate) name: String,
    pub(crate) offered: f64,
    /// The consumer crate's `run`.
    pub(crate) ours: Lane,
    /// The bare rust-rdkafka consumer loop (baseline).
    pub(crate) bare: Lane,
}

/// The rate the consumer workloads' loads are fractions of, and where it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxRate {
    pub(crate) msgs_s: f64,
    /// For the report, e.g. "the rate given with `--max-rate`".
    pub(crate) from: &'static str,
}

/// `median (min–max)` over rounds of one field of [`Lat`] (µs), in ms.
pub(crate) fn ms(v: &[Lat], field: fn(&Lat) -> f64) -> Mmm {
    Mmm::of(&v.iter().map(|l| field(l) / 1e3).collect::<Vec<_>>())
}

#[derive(Debug)]
pub(crate) struct Latency {
    pub(crate) max_rate: MaxRate,
    pub(crate) levels: Vec<Level>,
    pub(crate) linger_ms: u64,
}

/// A topic, the process sending to it, and the consumer that records what reaches it.
struct Path {
    sender: Sender,
    rec: Arc<Recorder>,
    /// Events delivered to the topic.
    sent: u64,
    /// The next event's number.
    first_id: u64,
}

impl Path {
    /// Sends 250 events at a time until the consumer sees records (it has its partitions), then
    /// 1 s at `rate_after` so both clients are warm, and waits for the consumer to catch up.
    async fn warm_up(&mut self, name: &str, rate_after: f64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.rec.seen() == 0 {
            self.send(-1, 500.0, 250).await?;
            if Instant::now() > deadline {
                bail!("Latency: the {name} consumer processed nothing within 30 s");
            }
        }
        self.send(-1, rate_after, rate_after as u64).await?;
        let behind = self.catch_up(Duration::from_secs(30)).await;
        if behind > 0 {
            bail!(
                "Latency: the {name} consumer is still {behind} records behind after its warm-up"
            );
        }
        Ok(())
    }

    async fn send(&mut self, phase: i64, rate: f64, n: u64) -> Result<(f64, Lat)> {
        let r = self.sender.run(phase, self.first_id, rate, n).await?;
        // Event ids are numbered by what was sent; the consumer can only see what was delivered.
        self.first_id += n;
        self.sent += r.1.count;
        if r.1.count < n {
            eprintln!("  Latency: {} of {n} events not delivered", n - r.1.count);
        }
        Ok(r)
    }

    /// Waits until the consumer saw everything sent (at most `limit`); returns how far behind.
    async fn catch_up(&self, limit: Duration) -> u64 {
        let until = Instant::now() + limit;
        while self.rec.seen() < self.sent && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.sent.saturating_sub(self.rec.seen())
    }
}

pub(crate) async fn run(
    bootstrap: &str,
    registry: &str,
    codec: &OrderCodec,
    max: MaxRate,
    secs: f64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Latency> {
    let max_rate = max.msgs_s;
    let mut paths = Vec::new();
    for suffix in ["", "-bare"] {
        let topic = format!("bench-latency-{}{suffix}", std::process::id());
        util::create_topic(bootstrap, &topic).await?;
        topics.push(topic.clone());
        paths.push((
            topic.clone(),
            Sender::start(bootstrap, registry, &topic).await?,
        ));
    }
    let cancel = CancellationToken::new();
    let stop_bare = Arc::new(AtomicBool::new(false));
    let ours_rec = Arc::new(Recorder::default());
    let bare_rec = Arc::new(Recorder::default());
    let cfg = consumer_cfg(bootstrap, &format!("{}-g", paths[0].0), &paths[0].0);
    let fetch_wait_max = cfg.fetch_wait_max;
    let bare_thread = crate::bare_consumer::spawn(
        bootstrap,
        &format!("{}-g", paths[1].0),
        &paths[1].0,
        fetch_wait_max,
        codec.clone(),
        Arc::clone(&bare_rec),
        Arc::clone(&stop_bare),
    )?;
    let member = spawn_member(
        cfg,
        Arc::new(LatencyProc {
            codec: codec.clone(),
            rec: Arc::clone(&ours_rec),
        }),
        cancel.clone(),
    );
    let mut lanes = Vec::new();
    for ((_, sender), rec) in paths.into_iter().zip([ours_rec, bare_rec]) {
        lanes.push(Path {
            sender,
            rec,
            sent: 0,
            first_id: 0,
        });
    }
    let warmed = async {
        for (lane, name) in lanes.iter_mut().zip(["orderstream", "bare"]) {
            lane.warm_up(name, max_rate * 0.1).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = warmed {
        cancel.cancel();
        stop_bare.store(true, Ordering::Relaxed);
        return Err(e);
    }
    // 10/50/80 % of the max rate (the producer saturation's, or `--max-rate`), plus a fixed 1 000 msgs/s
    // reference level (the floor of the pipeline's latency on this machine, independent of the max).
    let mut levels: Vec<Level> = [
        ("1 000 msgs/s (reference)".to_owned(), 1000.0),
        ("10%".to_owned(), max_rate * 0.1),
        ("50%".to_owned(), max_rate * 0.5),
        ("80%".to_owned(), max_rate * 0.8),
    ]
    .into_iter()
    .map(|(name, offered)| Level {
        name,
        offered,
        ours: Lane::default(),
        bare: Lane::default(),
    })
    .collect();
    // Each level runs once per consumer in every round, the two taking turns going first.
    let mut phase = 0i64;
    let mut plan = Vec::new();
    for round in 0..rounds {
        for i in 0..levels.len() {
            let order = if (round + i) % 2 == 0 { [0, 1] } else { [1, 0] };
            for v in order {
                plan.push((phase, i, v));
                phase += 1;
            }
        }
    }
    let mut acks = BTreeMap::new();
    // The senders are other processes: this process's CPU is the consumer's (the idle one's is
    // a poll every 50 ms).
    let mut cpus = BTreeMap::new();
    for &(phase, i, v) in &plan {
        let rate = levels[i].offered;
        let n = (rate * secs) as u64;
        let lane = &mut lanes[v];
        let (cpu0, seen0) = (util::process_cpu(), lane.rec.seen());
        match lane.send(phase, rate, n).await {
            Ok(r) => {
                acks.insert(phase, r);
            }
            Err(e) => {
                cancel.cancel();
                stop_bare.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        // Let the consumer catch up with everything sent so far before the next level, so a
        // backlog never leaks into the next level's histogram.
        let behind = lane.catch_up(Duration::from_secs(45)).await;
        let handled = lane.rec.seen().saturating_sub(seen0).max(1);
        let cpu_us = util::process_cpu().saturating_sub(cpu0).as_secs_f64() * 1e6 / handled as f64;
        if behind == 0 {
            cpus.insert(phase, cpu_us);
        }
        if behind > 0 {
            eprintln!("  Latency: consumer still {behind} records behind after 45 s");
        }
        eprintln!(
            "  Latency phase {phase}: {} ({rate:.0}/s), {n} records, {}",
            levels[i].name,
            ["orderstream", "bare loop"][v]
        );
    }
    cancel.cancel();
    stop_bare.store(true, Ordering::Relaxed);
    if tokio::time::timeout(Duration::from_secs(30), member)
        .await
        .is_err()
    {
        eprintln!("  Latency: the consumer did not stop within 30 s");
    }
    // A consumer's close can hang: after 15 s the thread is left detached (it does not keep the
    // process from exiting, as a blocking task of the runtime would).
    let until = Instant::now() + Duration::from_secs(15);
    while !bare_thread.is_finished() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !bare_thread.is_finished() {
        eprintln!("  Latency: the bare consumer did not close within 15 s");
    }
    drop(bare_thread);
    let mut hists: Vec<BTreeMap<i64, Histogram<u64>>> = Vec::new();
    for lane in lanes {
        hists.push(lane.rec.hists.lock().map(|h| h.clone()).unwrap_or_default());
        lane.sender.stop().await;
    }
    for &(phase, i, v) in &plan {
        let lane = if v == 0 {
            &mut levels[i].ours
        } else {
            &mut levels[i].bare
        };
        if let Some(h) = hists[v].get(&phase) {
            lane.end_to_end.push(Lat::of(h));
        }
        if let Some(cpu) = cpus.get(&phase) {
            lane.cpu_us_per_record.push(*cpu);
        }
        if let Some((achieved, acked)) = acks.get(&phase) {
            lane.achieved.push(*achieved);
            lane.acked.push(*acked);
        }
    }
    Ok(Latency {
        max_rate: max,
        levels,
        linger_ms: LINGER_MS,
    })
}

impl Lane {
    pub(crate) fn achieved(&self) -> f64 {
        Mmm::of(&self.achieved).med
    }
}
