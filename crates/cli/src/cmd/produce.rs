//! `produce`: simulated order services publishing order lifecycles through one shared producer.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use orderstream_orders::OrderProducer;
use orderstream_producer::{Compression, DeliveryOutcome, ProducerConfig};
use orderstream_schema::{OrderCodec, RegistryConfig};
use rdkafka::error::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::settings::Effective;
use orderstream_orders::sim::OrderService;

/// Options of `produce`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProduceArgs {
    /// Events to send in total (all services together). Default 10000 unless --duration is given.
    #[arg(long, env = "ORDERSTREAM_PRODUCE_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds instead of a count.
    #[arg(long, env = "ORDERSTREAM_PRODUCE_DURATION", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) duration: Option<u64>,
    /// Concurrent simulated order services.
    #[arg(long, env = "ORDERSTREAM_SERVICES", default_value_t = 4)]
    pub(crate) services: usize,
    /// Target rate in events/s over all services; 0 = as fast as possible.
    #[arg(long, env = "ORDERSTREAM_RATE", default_value_t = 0)]
    pub(crate) rate: u64,
    /// Orders each service keeps open at once (their events interleave).
    #[arg(long, default_value_t = 50)]
    pub(crate) open_orders: usize,
    /// Sends a service keeps in flight before it waits for acks.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) window: usize,
    /// linger.ms of the producer.
    #[arg(long, env = "ORDERSTREAM_LINGER_MS", default_value_t = 5)]
    pub(crate) linger_ms: u64,
    /// Compression of the producer's batches.
    #[arg(long, env = "ORDERSTREAM_COMPRESSION", value_enum, default_value_t = crate::choices::Codec::Lz4)]
    pub(crate) compression: crate::choices::Codec,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// Counts and latencies of a produce run.
#[derive(Debug)]
pub(crate) struct ProduceStats {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) failed: u64,
    pub(crate) possibly_persisted: u64,
    pub(crate) not_sent: u64,
    pub(crate) per_partition: BTreeMap<i32, u64>,
    pub(crate) ack_latency_us: Histogram<u64>,
    pub(crate) elapsed: Duration,
    pub(crate) first_error: Option<String>,
    /// Failures Kafka will not change its mind about (not retried by librdkafka or by us).
    pub(crate) permanent: u64,
    /// Sends the broker refused because this principal lacks a permission, and the first such
    /// error code.
    pub(crate) unauthorized: u64,
    pub(crate) unauthorized_code: Option<RDKafkaErrorCode>,
}

impl ProduceStats {
    fn new() -> Self {
        Self {
            sent: 0,
            acked: 0,
            failed: 0,
            possibly_persisted: 0,
            not_sent: 0,
            per_partition: BTreeMap::new(),
            // 1 µs .. 10 min, 3 significant digits.
            ack_latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            elapsed: Duration::ZERO,
            first_error: None,
            permanent: 0,
            unauthorized: 0,
            unauthorized_code: None,
        }
    }

    fn record(&mut self, outcome: &DeliveryOutcome) {
        match outcome {
            DeliveryOutcome::Delivered {
                partition, latency, ..
            } => {
                self.acked += 1;
                *self.per_partition.entry(*partition).or_default() += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self.ack_latency_us.record(us.min(600_000_000));
            }
            DeliveryOutcome::PossiblyPersisted { .. } => self.possibly_persisted += 1,
            DeliveryOutcome::NotSent { .. } => self.not_sent += 1,
            _ => {
                self.failed += 1;
                if let Some(e) = outcome.error().filter(|e| !e.is_retriable()) {
                    self.permanent += 1;
                    if let Some(code) = e.code().filter(|c| is_authorization(*c)) {
                        self.unauthorized += 1;
                        self.unauthorized_code.get_or_insert(code);
                    }
                }
            }
        }
        if let (None, Some(e)) = (&self.first_error, outcome.error()) {
            self.first_error = Some(orderstream_schema::error_chain(e));
        }
    }

    /// Every event got an ack.
    pub(crate) fn complete(&self) -> bool {
        self.acked == self.sent
    }

    /// The summary table printed at the end of a run.
    pub(crate) fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| self.ack_latency_us.value_at_quantile(p) as f64 / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        let rate = self.acked as f64 / secs;
        let mut s = format!(
            "produced: events {} | acked {} | failed {} | possibly persisted {} | not sent {}\n\
             throughput: {rate:.0} events/s over {secs:.1} s\n\
             ack latency ms: p50 {:.2} | p99 {:.2} | p99.9 {:.2} | max {:.2}\n\
             per partition:",
            self.sent,
            self.acked,
            self.failed,
            self.possibly_persisted,
            self.not_sent,
            q(0.5),
            q(0.99),
            q(0.999),
            self.ack_latency_us.max() as f64 / 1000.0,
        );
        for (p, n) in &self.per_partition {
            s.push_str(&format!(" {p}:{n}"));
        }
        if let Some(e) = &self.first_error {
            s.push_str(&format!("\nfirst error: {e}"));
        }
        s
    }
}

/// Builds the process's one producer from the effective settings. The caller checks the
/// registry after it (an unreachable cluster is the first thing to say): how much it needs the
/// registry depends on the command.
pub(crate) async fn build_producer(
    settings: &Effective,
    args: &ProduceArgs,
) -> anyhow::Result<OrderProducer> {
    let compression: Compression = args.compression.into();
    let config = ProducerConfig {
        bootstrap_servers: settings.bootstrap.clone(),
        linger: Duration::from_millis(args.linger_ms),
        compression,
        extra: settings.kafka_properties(),
        ..ProducerConfig::default()
    };
    let codec = OrderCodec::new(RegistryConfig {
        url: settings.registry_url.clone(),
        access: settings.registry_access(),
        ..RegistryConfig::default()
    })?;
    let topology = settings.topology()?;
    let spec = topology.topic(orderstream_topology::TopicRole::Orders);
    // A configuration the producer refuses is invalid input (exit 2), checked before Kafka.
    config.validate().map_err(|e| exit::UsageError::of(&e))?;
    let producer = OrderProducer::new(
        config,
        codec,
        orderstream_producer::ProducerTopic::new(spec.name.clone(), spec.partitions),
    )
    .await
    .with_context(|| format!("cannot start the producer for topic {}", spec.name))?;
    Ok(producer)
}

/// A simulation's figures and, when asked for, every event id with its outcome.
#[derive(Debug)]
pub(crate) struct Simulation {
    pub(crate) stats: ProduceStats,
    pub(crate) outcomes: Vec<(String, DeliveryOutcome)>,
    /// Every order id of this run starts with `ord-<run_tag>-`.
    pub(crate) run_tag: String,
}

/// [`simulate`], keeping every event id with its delivery outcome (for end-to-end checks).
pub(crate) async fn simulate_collect(
    producer: &OrderProducer,
    args: &ProduceArgs,
    cancel: CancellationToken,
) -> Simulation {
    simulate(producer, args, cancel, None, true).await
}

/// Runs the simulated services until the count or duration is reached or `cancel` fires.
pub(crate) async fn simulate(
    producer: &OrderProducer,
    args: &ProduceArgs,
    cancel: CancellationToken,
    progress: Option<indicatif::ProgressBar>,
    collect: bool,
) -> Simulation {
    let total = match (args.count, args.duration) {
        (Some(c), _) => Some(c),
        (None, None) => Some(10_000),
        (None, Some(_)) => None,
    };
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs(d));
    let services = args.services.max(1);
    let stats = Arc::new(Mutex::new(ProduceStats::new()));
    let outcomes: Arc<Mutex<Vec<(String, DeliveryOutcome)>>> = Arc::default();
    let run_tag = format!("{:x}", rand::random::<u32>());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..services {
        let share =
            total.map(|t| t / services as u64 + u64::from((id as u64) < t % services as u64));
        let per_service_rate = (args.rate > 0).then(|| args.rate as f64 / services as f64);
        let producer = producer.clone();
        let stats = Arc::clone(&stats);
        let outcomes = collect.then(|| Arc::clone(&outcomes));
        let cancel = cancel.clone();
        let progress = progress.clone();
        let window = args.window.max(1);
        let mut service = OrderService::new(id, args.open_orders, &run_tag);
        tasks.spawn(async move {
            let mut in_flight = FuturesUnordered::new();
            let mut sent = 0u64;
            let start = Instant::now();
            let mut rng = rand::rngs::StdRng::from_os_rng();
            loop {
                let more = share.is_none_or(|s| sent < s)
                    && deadline.is_none_or(|d| Instant::now() < d)
                    && !cancel.is_cancelled();
                if !more {
                    break;
                }
                if let Some(rate) = per_service_rate {
                    // Open loop: the schedule does not slip when a send is slow.
                    let due = start + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let event = service.next_event(&mut rng);
                // Enqueue in order (one order's events must reach librdkafka in sequence);
                // acks are awaited concurrently below.
                let pending = if crate::telemetry::exporting() {
                    // each event starts a trace that its consumers continue
                    let span = tracing::info_span!(
                        "order.event",
                        order_id = %event.order_id,
                        event_type = ?event.event_type,
                    );
                    tracing::Instrument::instrument(producer.enqueue(&event), span).await
                } else {
                    producer.enqueue(&event).await
                };
                let id = event.event_id;
                in_flight.push(async move { (id, pending.outcome().await) });
                sent += 1;
                if let Ok(mut s) = stats.lock() {
                    s.sent += 1;
                }
                while in_flight.len() >= window {
                    if let Some(outcome) = in_flight.next().await {
                        finish(&stats, outcomes.as_deref(), outcome, progress.as_ref());
                    }
                }
                // Drain acks that are already in without waiting.
                while let Some(Some(outcome)) = futures::FutureExt::now_or_never(in_flight.next()) {
                    finish(&stats, outcomes.as_deref(), outcome, progress.as_ref());
                }
            }
            while let Some(outcome) = in_flight.next().await {
                finish(&stats, outcomes.as_deref(), outcome, progress.as_ref());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // Every task has ended, so these are the last references.
    let mut stats = unwrap_shared(stats).unwrap_or_else(ProduceStats::new);
    stats.elapsed = started.elapsed();
    Simulation {
        stats,
        outcomes: unwrap_shared(outcomes).unwrap_or_default(),
        run_tag,
    }
}

fn unwrap_shared<T>(m: Arc<Mutex<T>>) -> Option<T> {
    Arc::try_unwrap(m).ok().map(|m| {
        m.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    })
}

fn finish(
    stats: &Mutex<ProduceStats>,
    outcomes: Option<&Mutex<Vec<(String, DeliveryOutcome)>>>,
    (id, outcome): (String, DeliveryOutcome),
    progress: Option<&indicatif::ProgressBar>,
) {
    if let Ok(mut s) = stats.lock() {
        s.record(&outcome);
    }
    if let Some(Ok(mut all)) = outcomes.map(Mutex::lock) {
        all.push((id, outcome));
    }
    if let Some(p) = progress {
        p.inc(1);
    }
}

use rand::SeedableRng;

/// Errors that say the principal lacks a permission, which no retry can fix.
fn is_authorization(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

/// `orderstream produce`.
pub(crate) async fn run(settings: &Effective, args: ProduceArgs) -> anyhow::Result<ExitCode> {
    for (flag, value) in [
        ("--services", args.services),
        ("--open-orders", args.open_orders),
        ("--window", args.window),
    ] {
        if value == 0 {
            return Err(exit::UsageError(format!("{flag} must be at least 1")).into());
        }
    }
    let producer = build_producer(settings, &args).await?;
    // A fixed run cannot wait for the registry to come back: say so before any event.
    crate::cmd::schemas::require_registry(settings).await?;
    let cancel = CancellationToken::new();
    crate::signals::cancel_on_signal(cancel.clone());
    let progress = (!args.quiet).then(|| {
        crate::progress::bar(
            args.count
                .or(Some(10_000))
                .filter(|_| args.duration.is_none()),
            "acked",
        )
    });
    let stats = simulate(&producer, &args, cancel, progress.clone(), false)
        .await
        .stats;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let flush = producer.shutdown(Duration::from_secs(30)).await;
    println!("{}", stats.summary());
    if !flush.complete {
        println!(
            "not flushed at shutdown: {} queued, {} awaiting delivery reports",
            flush.unflushed, flush.in_flight
        );
    }
    if !stats.complete() {
        eprintln!(
            "error: {} of {} events were not confirmed by Kafka ({} failed, {} of them permanently, {} possibly persisted, {} never handed to Kafka){}",
            stats.sent - stats.acked,
            stats.sent,
            stats.failed,
            stats.permanent,
            stats.possibly_persisted,
            stats.not_sent,
            stats
                .first_error
                .as_deref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(if stats.complete() && flush.complete {
        exit::SUCCESS
    } else if stats.unauthorized > 0 && stats.unauthorized == stats.sent {
        // Every send was refused for a missing permission, none is in doubt: the principal's
        // permissions are the settings to fix, like refused credentials at start-up.
        eprintln!(
            "error: Kafka refused all {} sends to topic `{}` ({:?}): this principal may see the topic but lacks the permission to write it; nothing was retried",
            stats.sent,
            producer.raw().topic().name,
            stats
                .unauthorized_code
                .unwrap_or(RDKafkaErrorCode::TopicAuthorizationFailed)
        );
        ExitCode::from(exit::CONFIG)
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}
