//! End-to-end latency at a fixed rate: an open-loop producer at levels of the producer
//! saturation's Avro max, and the consumer crate's `run` recording scheduled send → handler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use orderstream_consumer::{ProcessError, Processor, Record};
use orderstream_schema::OrderCodec;
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, decode, now_us, open_loop, producer, spawn_member};
use crate::util::{self, Mmm};

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
pub(crate) struct Latency {
    pub(crate) max_rate: f64,
    /// (level name, offered rate, achieved rate, per-round latencies in µs)
    pub(crate) levels: Vec<(String, f64, f64, Vec<Lat>)>,
    pub(crate) linger_ms: u64,
}

pub(crate) async fn run(
    bootstrap: &str,
    codec: &OrderCodec,
    max_rate: f64,
    secs: f64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Latency> {
    let topic = format!("bench-latency-{}", std::process::id());
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
            bail!("Latency: consumer processed nothing within 30 s");
        }
    }
    open_loop(&p, max_rate * 0.1, (max_rate * 0.1) as u64, -1, sent, 0).await;
    sent += (max_rate * 0.1) as u64;
    while proc_.seen.load(Ordering::Relaxed) < sent
        && Instant::now() < deadline + Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 10/50/80 % of the producer saturation's max, plus a fixed 1 000 msgs/s reference level (the floor of the
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
            eprintln!("  Latency: consumer still {behind} records behind after 45 s");
        }
        eprintln!(
            "  Latency phase {phase}: {} ({rate:.0}/s), {n} records",
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
    Ok(Latency {
        max_rate,
        levels,
        linger_ms,
    })
}
