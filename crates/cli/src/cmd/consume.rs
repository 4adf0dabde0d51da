//! `consume`: one consumer-group member running the sample order processor.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderstream_consumer::{ConsumerConfig, RunSummary};
use orderstream_orders::{OrderProcessor, SampleConfig, SampleSnapshot};
use orderstream_schema::{OrderCodec, RegistryConfig};
use tokio_util::sync::CancellationToken;

use crate::choices::{Ordering, Protocol};
use crate::exit;
use crate::settings::Effective;

/// Options of `consume`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// Consumer group id; start several members with the same id to scale out.
    #[arg(long, env = "ORDERSTREAM_GROUP", default_value = "orderstream-orders")]
    pub(crate) group: String,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long = "for", env = "ORDERSTREAM_CONSUME_FOR", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) for_secs: Option<u64>,
    /// Ordering inside a partition.
    #[arg(long, env = "ORDERSTREAM_ORDERING", value_enum, default_value_t = Ordering::Key)]
    pub(crate) ordering: Ordering,
    /// Records of one partition in work at once (different keys only).
    #[arg(long, env = "ORDERSTREAM_MAX_CONCURRENCY", default_value_t = 16)]
    pub(crate) max_concurrency: usize,
    /// Memory budget of this member in MiB: librdkafka's prefetch and the records in work
    /// together (≥ 4; see docs/configuration.md).
    #[arg(long, env = "ORDERSTREAM_MEMORY_BUDGET_MIB", default_value_t = 64)]
    pub(crate) memory_budget_mib: usize,
    /// Group protocol.
    #[arg(long, env = "ORDERSTREAM_GROUP_PROTOCOL", value_enum, default_value_t = Protocol::Classic)]
    pub(crate) protocol: Protocol,
    /// Apply the events to a database with a durable inbox, each batch in one transaction
    /// committed before its offsets: `sqlite:PATH` or `postgres://user@host:port/db` (exactly
    /// once across restarts and processes). A password goes in ORDERSTREAM_STORE (the whole
    /// URL) or --store-password-file, never on the command line. Default: the in-memory
    /// sample processor (effects lost on exit).
    #[arg(long, env = "ORDERSTREAM_STORE", hide_env_values = true)]
    pub(crate) store: Option<String>,
    /// File holding the store's password (first line), added to the URL of --store.
    #[arg(long, env = "ORDERSTREAM_STORE_PASSWORD_FILE")]
    pub(crate) store_password_file: Option<std::path::PathBuf>,
}

/// Builds the member's config from the effective settings and flags.
pub(crate) fn consumer_config(
    settings: &Effective,
    args: &ConsumeArgs,
) -> anyhow::Result<ConsumerConfig> {
    member_config(
        settings,
        &args.group,
        &MemberTuning {
            ordering: args.ordering,
            protocol: args.protocol,
            max_concurrency: args.max_concurrency,
            memory_budget_mib: args.memory_budget_mib,
        },
    )
}

/// The flags every group member takes besides its group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberTuning {
    pub(crate) ordering: Ordering,
    pub(crate) protocol: Protocol,
    pub(crate) max_concurrency: usize,
    pub(crate) memory_budget_mib: usize,
}

/// A member of `group` on the layout's topics, validated.
pub(crate) fn member_config(
    settings: &Effective,
    group: &str,
    tuning: &MemberTuning,
) -> anyhow::Result<ConsumerConfig> {
    let topology = settings.topology()?;
    let mut cfg = ConsumerConfig::new(
        settings.bootstrap.clone(),
        group.to_owned(),
        orderstream_orders::topics::member_topics(&topology.names()),
    );
    cfg.ordering = tuning.ordering.into();
    cfg.group_protocol = tuning.protocol.into();
    cfg.max_concurrency = tuning.max_concurrency;
    cfg.memory_budget = tuning.memory_budget_mib.saturating_mul(1 << 20);
    cfg.extra_consumer = settings.kafka_properties().into_iter().collect();
    cfg.extra_producer = cfg.extra_consumer.clone();
    cfg.validate()
        .map_err(|e| exit::UsageError(format!("invalid consumer settings: {e}")))?;
    Ok(cfg)
}

/// The registry codec every consuming command decodes with.
pub(crate) fn codec(settings: &Effective) -> anyhow::Result<OrderCodec> {
    Ok(OrderCodec::new(RegistryConfig {
        url: settings.registry_url.clone(),
        access: settings.registry_access(),
        ..RegistryConfig::default()
    })?)
}

/// The sample processor with its registry codec.
pub(crate) fn processor(settings: &Effective) -> anyhow::Result<Arc<OrderProcessor>> {
    Ok(Arc::new(OrderProcessor::new(
        codec(settings)?,
        SampleConfig::default(),
    )))
}

/// Every 5 s until `cancel`: `report(last)` logs progress since the previous report (the applied
/// count it returned) and returns the applied count now.
pub(crate) fn spawn_progress(
    cancel: CancellationToken,
    report: impl Fn(u64) -> u64 + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        while !cancel.is_cancelled() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            last = report(last);
        }
    })
}

/// Cancelled by SIGINT/SIGTERM, or after `for_secs` when given.
pub(crate) fn stop_token(for_secs: Option<u64>) -> CancellationToken {
    let cancel = CancellationToken::new();
    crate::signals::cancel_on_signal(cancel.clone());
    if let Some(secs) = for_secs {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            c.cancel();
        });
    }
    cancel
}

/// A human summary of one member's run and the processor's state.
pub(crate) fn summary(run: &RunSummary, state: &SampleSnapshot) -> String {
    let mut by_state = std::collections::BTreeMap::<String, u64>::new();
    for s in state.orders.values() {
        *by_state.entry(format!("{s:?}")).or_default() += 1;
    }
    let mut out = format!(
        "consumed: processed {} | retried in place {} | parked in retry topic {} (+{} following their key) | dead-lettered {}\n\
         effects: applied {} | duplicates skipped {} | illegal transitions {}\n\
         commits: {} ({} failed) | rebalances {} | revoke commits ok {} failed {} | partitions lost {}\n\
         orders by state:",
        run.processed,
        run.retried_in_place,
        run.parked,
        run.followed,
        run.dead_lettered,
        state.applied_events,
        state.duplicates,
        state.rejected,
        run.commits,
        run.commit_failures,
        run.rebalances,
        run.revoke_commits_ok,
        run.revoke_commits_failed,
        run.partitions_lost,
    );
    for (s, n) in &by_state {
        out.push_str(&format!(" {s}:{n}"));
    }
    out.push_str(&format!("\ncustomers: {}", state.customers.len()));
    if run.producer_rebuilds > 0 {
        out.push_str(&format!(
            "\nretry/dead-letter producer rebuilt after fatal errors: {}",
            run.producer_rebuilds
        ));
    }
    if !run.committed.is_empty() {
        out.push_str("\nlast committed by this member (partitions it may have handed on since):");
        for ((t, p), o) in &run.committed {
            out.push_str(&format!(" {t}/{p}={o}"));
        }
    }
    if !run.uncommitted.is_empty() {
        out.push_str("\nleft uncommitted at shutdown (redelivered to the next owner):");
        for ((t, p), r) in &run.uncommitted {
            out.push_str(&format!(" {t}/{p}={}..{}", r.start, r.end));
        }
    }
    out
}

/// `orderstream consume`.
pub(crate) async fn run(settings: &Effective, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let cfg = consumer_config(settings, &args)?;
    // Fail fast with a clear message instead of polling a cluster that is not there.
    crate::cmd::topics::connect_admin(settings)?;
    crate::cmd::schemas::check_registry(settings).await?;
    if let Some(url) = crate::cmd::store::url(&args)? {
        return crate::cmd::store::consume(settings, cfg, &url, args.for_secs).await;
    }
    let processor = processor(settings)?;
    let cancel = stop_token(args.for_secs);
    let ticker = {
        let p = Arc::clone(&processor);
        spawn_progress(cancel.clone(), move |last| {
            let s = p.snapshot();
            tracing::info!(
                applied = s.applied_events,
                per_sec = (s.applied_events - last) / 5,
                duplicates = s.duplicates,
                rejected = s.rejected,
                "progress"
            );
            s.applied_events
        })
    };
    let run = orderstream_consumer::run(cfg, Arc::clone(&processor), cancel)
        .await
        .context("consumer failed")?;
    ticker.abort();
    println!("{}", summary(&run, &processor.snapshot()));
    Ok(if run.stopped_cleanly() {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}
