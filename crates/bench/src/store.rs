//! Order projection in PostgreSQL (`StoreProcessor`: inbox + order state + customer
//! totals) draining a backlog of complete order lifecycles, with one database transaction per
//! partition batch against one per record, and the plain drain (decode + key order, no store)
//! of the batched variant's backlog as the baseline. The per-record variant drains a smaller
//! backlog of the same shape (complete lifecycles, so the same mix of inserts and updates).
//! Every store run gets a fresh database (dropped after it), so each event has its effect;
//! each run checks the store applied every event once and left every order delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use orderstream_consumer::{
    BatchProcessor, ConsumerConfig, OrderingMode, ProcessError, Record, run_batched,
};
use orderstream_schema::{EventType, OrderCodec, OrderEvent};
use orderstream_store::{OrderStore, StoreConfig, StoreProcessor};
use tokio_util::sync::CancellationToken;

use crate::clients::{consumer_cfg, prefill_with};
use crate::drain::drain_ours;
use crate::util::{self, Mmm, ratio};

const KINDS: [EventType; 4] = [
    EventType::Created,
    EventType::Paid,
    EventType::Shipped,
    EventType::Delivered,
];

/// The order projection's figures.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) records: u64,
    /// Records of the one-transaction-per-record variant's backlog.
    pub(crate) single_records: u64,
    pub(crate) batch: usize,
    /// Effects/s, one transaction per batch, one per round.
    pub(crate) batched: Vec<f64>,
    /// Effects/s, one transaction per record, one per round.
    pub(crate) single: Vec<f64>,
    /// Records/s of the plain drain, one per round.
    pub(crate) drain: Vec<f64>,
    pub(crate) errors: Vec<String>,
}

impl Store {
    /// Batched store / plain drain, paired by round.
    pub(crate) fn batched_vs_drain(&self) -> Mmm {
        ratio(&self.batched, &self.drain)
    }
    /// Batched / one transaction per record, paired by round.
    pub(crate) fn batched_vs_single(&self) -> Mmm {
        ratio(&self.batched, &self.single)
    }
    /// One transaction per record / plain drain, paired by round.
    pub(crate) fn single_vs_drain(&self) -> Mmm {
        ratio(&self.single, &self.drain)
    }
}

/// Event `i` of a backlog of `n`: `n / 4` orders, each Created → Paid → Shipped → Delivered,
/// a key's events in order.
fn event(i: u64, n: u64) -> OrderEvent {
    let orders = (n / 4).max(1);
    let (order, seq) = (i % orders, i / orders);
    OrderEvent {
        order_id: format!("store-{order:07}"),
        customer_id: format!("store-c{}", order % 997),
        sequence: seq as i64,
        event_type: KINDS[(seq as usize).min(KINDS.len() - 1)],
        ..util::event(i, 0)
    }
}

/// The store processor, counting what it returned as done: cancels the run once `target`
/// records succeeded, and notes when the first batch came.
struct Counting {
    inner: StoreProcessor,
    target: u64,
    ok: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: CancellationToken,
}

impl BatchProcessor for Counting {
    async fn process_batch(&self, records: &[Record]) -> Vec<Result<(), ProcessError>> {
        self.first.get_or_init(Instant::now);
        let out = self.inner.process_batch(records).await;
        let ok = out.iter().filter(|r| r.is_ok()).count() as u64;
        if self.ok.fetch_add(ok, Ordering::Relaxed) + ok >= self.target {
            self.last.get_or_init(Instant::now);
            self.done.cancel();
        }
        out
    }
}

/// One store drain into a fresh database: effects/s over the first `target` records, checked
/// against the effects the store itself reports (its inbox), and no record refused.
async fn drain_store(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    target: u64,
    batch: usize,
) -> Result<f64> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let name = format!("bench_store_{}_{run}", std::process::id());
    let db = tokio::task::spawn_blocking(move || orderstream_testkit::try_fresh_database(&name))
        .await?
        .map_err(anyhow::Error::msg)?;
    let res = drain_into(bootstrap, codec, topic, target, batch, &db, run).await;
    tokio::task::spawn_blocking(move || orderstream_testkit::drop_database(&db))
        .await?
        .map_err(anyhow::Error::msg)
        .context("dropping the run's database")?;
    res
}

async fn drain_into(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    target: u64,
    batch: usize,
    db: &str,
    run: u64,
) -> Result<f64> {
    let store = OrderStore::connect(&StoreConfig::new(db))
        .await
        .context("connecting to PostgreSQL")?;
    let done = CancellationToken::new();
    let p = Arc::new(Counting {
        inner: StoreProcessor::new(codec.clone(), store.clone()),
        target,
        ok: AtomicU64::new(0),
        first: OnceLock::new(),
        last: OnceLock::new(),
        done: done.clone(),
    });
    let cfg = ConsumerConfig {
        ordering: OrderingMode::Key,
        max_batch_records: batch,
        commit_every: 1000,
        commit_interval: Duration::from_secs(1),
        ..consumer_cfg(bootstrap, &format!("{topic}-g8-{run}"), topic)
    };
    let watchdog = {
        let c = done.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            c.cancel();
        })
    };
    run_batched(cfg, Arc::clone(&p), done).await?;
    watchdog.abort();
    let counts = p.inner.counts();
    let in_store = store.counts().await?;
    store.close().await;
    let inbox = in_store.inbox;
    let (Some(first), Some(last)) = (p.first.get(), p.last.get()) else {
        bail!(
            "{} of {target} records applied before the 300 s watchdog",
            p.ok.load(Ordering::Relaxed)
        );
    };
    if counts.illegal + counts.duplicates + counts.store_failures + counts.unknown_kinds > 0 {
        bail!("the store refused or skipped records: {counts:?}");
    }
    // The whole backlog, each event once, every order at its last state (from the database).
    let delivered = in_store.by_state.get("delivered").copied().unwrap_or(0);
    if inbox != target || counts.applied != target || delivered != target / 4 {
        bail!(
            "the store's inbox holds {inbox} events and {delivered} delivered orders, the processor \
             applied {}, the backlog has {target} events",
            counts.applied
        );
    }
    Ok(target as f64 / last.duration_since(*first).as_secs_f64().max(1e-3))
}

/// Runs the order projection: `rounds` interleaved triples on an `n`-record backlog; the per-record variant
/// applies its first `single` records.
pub(crate) async fn run(
    bootstrap: &str,
    codec: &OrderCodec,
    n: u64,
    single: u64,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Store> {
    let topic = format!("bench-store-{}", std::process::id());
    let small = format!("{topic}-single");
    for (t, records) in [(&topic, n), (&small, single)] {
        util::create_topic(bootstrap, t).await?;
        topics.push(t.clone());
        prefill_with(bootstrap, codec, t, records, |i| event(i, records)).await?;
    }
    let mut r = Store {
        records: n,
        single_records: single,
        batch: 500,
        ..Store::default()
    };
    for round in 0..rounds {
        for k in 0..3 {
            match (k + round) % 3 {
                0 => match drain_store(bootstrap, codec, &topic, n, r.batch).await {
                    Ok(rate) => r.batched.push(rate),
                    Err(e) => {
                        r.batched.push(f64::NAN);
                        r.errors.push(format!("batched: {e:#}"));
                    }
                },
                1 => match drain_store(bootstrap, codec, &small, single, 1).await {
                    Ok(rate) => r.single.push(rate),
                    Err(e) => {
                        r.single.push(f64::NAN);
                        r.errors.push(format!("per record: {e:#}"));
                    }
                },
                _ => {
                    let d = drain_ours(
                        bootstrap,
                        codec,
                        &topic,
                        n,
                        1000,
                        Duration::from_secs(1),
                        true,
                    );
                    match d.await {
                        Ok((rate, 0, ..)) => r.drain.push(rate),
                        Ok((_, ooo, ..)) => {
                            r.drain.push(f64::NAN);
                            r.errors
                                .push(format!("plain drain: {ooo} records out of key order"));
                        }
                        Err(e) => {
                            r.drain.push(f64::NAN);
                            r.errors.push(format!("plain drain: {e:#}"));
                        }
                    }
                }
            }
        }
        eprintln!(
            "  store round {round}: batched {:.0}/s, per record {:.0}/s, plain drain {:.0}/s",
            r.batched.last().copied().unwrap_or(f64::NAN),
            r.single.last().copied().unwrap_or(f64::NAN),
            r.drain.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(r)
}
