//! `stage`: one member of the transactional order-status stage. Order events become each
//! order's latest status in the layout's compacted status topic, exactly once: outputs, dead
//! letters and source offsets commit in one Kafka transaction.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use orderstream_consumer::{StageConfig, StageError, run_transactional};
use orderstream_orders::status::StatusTransform;
use orderstream_topology::TopicRole;

use crate::cmd::consume::{codec, stop_token};
use crate::exit;
use crate::settings::Effective;

/// Options of `stage`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StageArgs {
    /// Consumer group of the stage's members; start several with the same group to scale out.
    #[arg(
        long,
        env = "ORDERSTREAM_STAGE_GROUP",
        default_value = "orderstream-status"
    )]
    pub(crate) group: String,
    /// This member's transactional id: keep it across restarts of the member (a restart then
    /// aborts the transaction its predecessor left open at once) and give every live member
    /// its own (default: `<group>-<host name>`).
    #[arg(long, env = "ORDERSTREAM_TRANSACTIONAL_ID")]
    pub(crate) transactional_id: Option<String>,
    /// At most this many source records per transaction.
    #[arg(long, env = "ORDERSTREAM_STAGE_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) batch: u32,
    /// A transaction commits at the latest this many milliseconds after its first record.
    #[arg(long, env = "ORDERSTREAM_STAGE_COMMIT_INTERVAL_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) commit_interval_ms: u64,
    /// The coordinator aborts a transaction left open longer than this (a paused or hung
    /// member's); read_committed readers wait at most this long behind it.
    #[arg(long, env = "ORDERSTREAM_STAGE_TRANSACTION_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1_000..=900_000))]
    pub(crate) transaction_timeout_ms: u64,
    /// Group session timeout in milliseconds: a member silent this long loses its partitions.
    #[arg(long, env = "ORDERSTREAM_STAGE_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1_000..=300_000))]
    pub(crate) session_timeout_ms: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long = "for", env = "ORDERSTREAM_STAGE_FOR", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) for_secs: Option<u64>,
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "member".to_owned())
}

/// `orderstream stage`.
pub(crate) async fn run(settings: &Effective, args: StageArgs) -> anyhow::Result<ExitCode> {
    let topology = settings.topology()?;
    let names = topology.names();
    let transactional_id = args
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", args.group, host_name()));
    let mut cfg = StageConfig::new(
        settings.bootstrap.clone(),
        args.group.clone(),
        names.orders.clone(),
        names.get(TopicRole::Status),
        names.dead_letter.clone(),
        transactional_id,
    );
    cfg.max_batch_records = args.batch as usize;
    cfg.commit_interval = Duration::from_millis(args.commit_interval_ms);
    cfg.transaction_timeout = Duration::from_millis(args.transaction_timeout_ms);
    cfg.session_timeout = Duration::from_millis(args.session_timeout_ms);
    cfg.extra_consumer = settings.kafka_properties().into_iter().collect();
    cfg.extra_producer = cfg.extra_consumer.clone();
    cfg.validate()
        .map_err(|e| exit::UsageError(format!("invalid stage settings: {e}")))?;
    crate::cmd::topics::connect_admin(settings)?;
    crate::cmd::schemas::check_registry(settings).await?;
    let transform = Arc::new(StatusTransform::new(codec(settings)?));
    let cancel = stop_token(args.for_secs);
    let id = cfg.transactional_id.clone();
    let summary = match run_transactional(cfg, transform, cancel).await {
        Ok(s) => s,
        Err(e @ StageError::Config(_)) => return Err(exit::UsageError::of(&e).into()),
        Err(e) => return Err(e.into()),
    };
    println!(
        "stage {id}: transactions committed {} | records {} | status records {} | dead-lettered {} | transactions aborted {} | producers replaced {} | records dropped on revoke {} | records undecided {} | rebalances {}",
        summary.transactions,
        summary.records,
        summary.outputs,
        summary.dead_lettered,
        summary.aborted,
        summary.producer_replacements,
        summary.dropped_on_revoke,
        summary.undecided,
        summary.rebalances,
    );
    Ok(exit::SUCCESS)
}
