//! Rebalance 2 → 3 → 2 under load: per group protocol, the gaps a membership change leaves in
//! processing and whether any record is handled twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use orderstream_consumer::{ConsumerConfig, GroupProtocol, ProcessError, Processor, Record};
use orderstream_schema::OrderCodec;
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, decode, open_loop, producer, spawn_member};
use crate::util::{self, Mmm, PARTITIONS};

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
pub(crate) struct Rebalance {
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

pub(crate) async fn run(
    bootstrap: &str,
    codec: &OrderCodec,
    protocol: GroupProtocol,
    rate: f64,
    hold: Duration,
    topics: &mut Vec<String>,
) -> Rebalance {
    let name = match protocol {
        GroupProtocol::Consumer => "consumer (KIP-848)",
        _ => "classic cooperative-sticky",
    };
    let mut out = Rebalance {
        protocol: name,
        rate,
        events: Vec::new(),
        processed: 0,
        reprocessed: 0,
        error: None,
    };
    if let Err(e) = run_protocol(bootstrap, codec, protocol, rate, hold, topics, &mut out).await {
        out.error = Some(format!("{e:#}"));
    }
    out
}

async fn run_protocol(
    bootstrap: &str,
    codec: &OrderCodec,
    protocol: GroupProtocol,
    rate: f64,
    hold: Duration,
    topics: &mut Vec<String>,
    out: &mut Rebalance,
) -> Result<()> {
    let topic = format!(
        "bench-rebalance-{}-{}",
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
