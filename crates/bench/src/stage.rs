//! The transactional stage (`run_transactional`) against the same loop at least once
//! (`StageConfig::transactional = false`), draining one pre-filled topic, rounds interleaved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use orderstream_consumer::{
    Output, ProcessError, Record, StageConfig, Transform, run_transactional,
};
use orderstream_orders::status::StatusTransform;
use orderstream_schema::OrderCodec;
use tokio_util::sync::CancellationToken;

use crate::clients::prefill;
use crate::util::{self, Mmm, ratio};

/// The transactional stage's figures.
#[derive(Debug, Default)]
pub(crate) struct Stage {
    pub(crate) records: u64,
    pub(crate) batch: usize,
    /// Records/s with transactions, one per round.
    pub(crate) transactional: Vec<f64>,
    /// Records/s at least once, one per round.
    pub(crate) plain: Vec<f64>,
    /// Transactions committed per transactional round.
    pub(crate) transactions: Vec<f64>,
    pub(crate) errors: Vec<String>,
}

impl Stage {
    /// Transactional / at-least-once throughput, paired by round.
    pub(crate) fn ratio(&self) -> Mmm {
        ratio(&self.transactional, &self.plain)
    }
}

/// The status transform, counting: cancels the run once every record was transformed (the
/// batch in hand then commits before the member stops), and notes when the first came.
struct Counting {
    inner: StatusTransform,
    n: u64,
    seen: AtomicU64,
    first: OnceLock<Instant>,
    done: CancellationToken,
}

impl Transform for Counting {
    async fn transform(&self, record: &Record, attempt: u32) -> Result<Vec<Output>, ProcessError> {
        self.first.get_or_init(Instant::now);
        let out = self.inner.transform(record, attempt).await;
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 >= self.n {
            self.done.cancel();
        }
        out
    }
}

struct Topics {
    source: String,
    output: String,
    dead_letter: String,
}

/// One drain: (records/s from the first transformed record to the member's stop, transactions).
async fn drain(
    bootstrap: &str,
    codec: &OrderCodec,
    t: &Topics,
    n: u64,
    batch: usize,
    transactional: bool,
) -> Result<(f64, u64)> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "bench-stage-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    );
    let mut cfg = StageConfig::new(
        bootstrap,
        id.clone(),
        t.source.clone(),
        t.output.clone(),
        t.dead_letter.clone(),
        id,
    );
    cfg.transactional = transactional;
    cfg.max_batch_records = batch;
    let done = CancellationToken::new();
    let transform = Arc::new(Counting {
        inner: StatusTransform::new(codec.clone()),
        n,
        seen: AtomicU64::new(0),
        first: OnceLock::new(),
        done: done.clone(),
    });
    let guard = {
        let done = done.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            done.cancel();
        })
    };
    let summary = run_transactional(cfg, Arc::clone(&transform), done).await?;
    let end = Instant::now();
    guard.abort();
    if summary.records != n {
        bail!(
            "committed {} of {n} records (transactional: {transactional})",
            summary.records
        );
    }
    let first = transform.first.get().copied().unwrap_or(end);
    let secs = end.duration_since(first).as_secs_f64().max(1e-3);
    Ok((n as f64 / secs, summary.transactions))
}

/// Runs the transactional stage: `rounds` interleaved pairs on an `n`-record backlog.
pub(crate) async fn run(
    bootstrap: &str,
    codec: &OrderCodec,
    n: u64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Stage> {
    let base = format!("bench-stage-{}", std::process::id());
    let t = Topics {
        source: format!("{base}-in"),
        output: format!("{base}-status"),
        dead_letter: format!("{base}-dlq"),
    };
    for name in [&t.source, &t.output, &t.dead_letter] {
        util::create_topic(bootstrap, name).await?;
        topics.push(name.clone());
    }
    prefill(bootstrap, codec, &t.source, n).await?;
    let mut r = Stage {
        records: n,
        batch: 1000,
        ..Stage::default()
    };
    for round in 0..rounds {
        for k in 0..2 {
            // alternate which variant runs first
            let transactional = (k + round) % 2 == 0;
            match drain(bootstrap, codec, &t, n, r.batch, transactional).await {
                Ok((rate, txns)) if transactional => {
                    r.transactional.push(rate);
                    r.transactions.push(txns as f64);
                }
                Ok((rate, _)) => r.plain.push(rate),
                Err(e) => r.errors.push(format!("{e:#}")),
            }
        }
        eprintln!(
            "  stage round {round}: transactional {:.0}/s, at least once {:.0}/s",
            r.transactional.last().copied().unwrap_or(f64::NAN),
            r.plain.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(r)
}
