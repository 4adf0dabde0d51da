//! `notify`: a consumer-group member whose effect is a notification to RabbitMQ or NATS
//! JetStream, each offset committed only after the broker confirmed its message.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderstream_consumer::{ConsumerError, RunSummary};
use orderstream_notify::{
    NatsConfig, NatsSink, NotifyCounts, NotifyProcessor, RabbitConfig, RabbitSink, Sink, endpoint,
};

use crate::choices::{NotifyOn, NotifyTo, Ordering, Protocol};
use crate::cmd::consume::{MemberTuning, codec, member_config, spawn_progress, stop_token};
use crate::exit;
use crate::settings::Effective;

/// Options of `notify`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NotifyArgs {
    /// Where notifications go.
    #[arg(long, env = "ORDERSTREAM_NOTIFY_TO", value_enum)]
    pub(crate) to: NotifyTo,
    /// Which processed events become notifications.
    #[arg(long, env = "ORDERSTREAM_NOTIFY_ON", value_enum, default_value_t = NotifyOn::Created)]
    pub(crate) on: NotifyOn,
    /// Consumer group id (its own offsets: the notifier reads every event, whatever other
    /// groups do); start several members with the same id to scale out.
    #[arg(
        long,
        env = "ORDERSTREAM_NOTIFY_GROUP",
        default_value = "orderstream-notify"
    )]
    pub(crate) group: String,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long = "for", env = "ORDERSTREAM_NOTIFY_FOR", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) for_secs: Option<u64>,
    /// RabbitMQ AMQP URL. With a password, give it in ORDERSTREAM_AMQP_URL (never as a flag:
    /// `ps` shows flags to every user).
    #[arg(
        long,
        env = "ORDERSTREAM_AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp_url: String,
    /// RabbitMQ topic exchange (with an alternate exchange `<name>.unroutable` and a
    /// dead-letter exchange `<name>.dead`, each with a queue of the same name).
    #[arg(
        long,
        env = "ORDERSTREAM_AMQP_EXCHANGE",
        default_value = "orders.notifications"
    )]
    pub(crate) exchange: String,
    /// RabbitMQ queue bound to the exchange (binding `order.#`).
    #[arg(
        long,
        env = "ORDERSTREAM_AMQP_QUEUE",
        default_value = "orders.notifications"
    )]
    pub(crate) queue: String,
    /// Declare classic durable queues instead of quorum queues.
    #[arg(long, env = "ORDERSTREAM_AMQP_CLASSIC_QUEUES")]
    pub(crate) classic_queues: bool,
    /// NATS server URL (JetStream on).
    #[arg(
        long,
        env = "ORDERSTREAM_NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub(crate) nats_url: String,
    /// JetStream stream, created when missing with subjects `<subject prefix>.>`.
    #[arg(
        long,
        env = "ORDERSTREAM_NATS_STREAM",
        default_value = "ORDER_NOTIFICATIONS"
    )]
    pub(crate) stream: String,
    /// Subjects are `<prefix>.order.created`, `<prefix>.order.paid`, ...
    #[arg(
        long,
        env = "ORDERSTREAM_NATS_SUBJECT_PREFIX",
        default_value = "orders.notifications"
    )]
    pub(crate) subject_prefix: String,
    /// Seconds one batch may wait for confirms, reconnecting and republishing, before its
    /// records are retried by the consumer (never dropped).
    #[arg(long, env = "ORDERSTREAM_NOTIFY_PUBLISH_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) publish_timeout: u64,
    /// Ordering inside a partition.
    #[arg(long, env = "ORDERSTREAM_ORDERING", value_enum, default_value_t = Ordering::Key)]
    pub(crate) ordering: Ordering,
    /// Records of one partition in work at once (different keys only).
    #[arg(long, env = "ORDERSTREAM_MAX_CONCURRENCY", default_value_t = 256)]
    pub(crate) max_concurrency: usize,
    /// Memory budget of this member in MiB (see docs/configuration.md).
    #[arg(long, env = "ORDERSTREAM_MEMORY_BUDGET_MIB", default_value_t = 64)]
    pub(crate) memory_budget_mib: usize,
    /// Group protocol.
    #[arg(long, env = "ORDERSTREAM_GROUP_PROTOCOL", value_enum, default_value_t = Protocol::Classic)]
    pub(crate) protocol: Protocol,
}

/// `orderstream notify`.
pub(crate) async fn run(settings: &Effective, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let cfg = member_config(
        settings,
        &args.group,
        &MemberTuning {
            ordering: args.ordering,
            protocol: args.protocol,
            max_concurrency: args.max_concurrency,
            memory_budget_mib: args.memory_budget_mib,
        },
    )?;
    crate::cmd::topics::connect_admin(settings)?;
    crate::cmd::schemas::check_registry(settings).await?;
    let cancel = stop_token(args.for_secs);
    let publish_timeout = Duration::from_secs(args.publish_timeout);
    match args.to {
        NotifyTo::Rabbitmq => {
            crate::cmd::store::refuse_flag_password(
                &args.amqp_url,
                "ORDERSTREAM_AMQP_URL",
                "--amqp-url",
                "",
            )?;
            let mut rabbit = RabbitConfig::named(&args.amqp_url, &args.exchange, &args.queue);
            rabbit.quorum = !args.classic_queues;
            rabbit.publish_timeout = publish_timeout;
            let sink = RabbitSink::connect(rabbit, cancel.clone())
                .await
                .map_err(|e| exit::UsageError::of(&e))?;
            let sink = Arc::new(sink);
            let code = member(settings, cfg, &args, Arc::clone(&sink), cancel).await;
            sink.close().await;
            code
        }
        NotifyTo::Nats => {
            crate::cmd::store::refuse_flag_password(
                &args.nats_url,
                "ORDERSTREAM_NATS_URL",
                "--nats-url",
                "",
            )?;
            let mut nats = NatsConfig::new(args.nats_url.clone());
            nats.stream.clone_from(&args.stream);
            nats.subject_prefix.clone_from(&args.subject_prefix);
            nats.publish_timeout = publish_timeout;
            let sink = NatsSink::connect(nats, cancel.clone())
                .await
                .map_err(|e| exit::UsageError::of(&e))?;
            let sink = Arc::new(sink);
            let code = member(settings, cfg, &args, Arc::clone(&sink), cancel).await;
            sink.close().await;
            code
        }
    }
}

async fn member<S: Sink>(
    settings: &Effective,
    cfg: orderstream_consumer::ConsumerConfig,
    args: &NotifyArgs,
    sink: Arc<S>,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<ExitCode> {
    let processor = Arc::new(NotifyProcessor::new(
        codec(settings)?,
        Arc::clone(&sink),
        args.on.into(),
    ));
    let ticker = {
        let p = Arc::clone(&processor);
        spawn_progress(cancel.clone(), move |last| {
            let n = p.counts();
            let s = p.sink().counts();
            tracing::info!(
                notified = n.notified,
                per_sec = (n.notified - last) / 5,
                failed = n.failed,
                reconnects = s.reconnects,
                "progress"
            );
            n.notified
        })
    };
    let run = orderstream_consumer::run_batched(cfg, Arc::clone(&processor), cancel)
        .await
        .context("consumer failed")?;
    ticker.abort();
    let n = processor.counts();
    let s = sink.counts();
    let to = match args.to {
        NotifyTo::Rabbitmq => endpoint(&args.amqp_url),
        NotifyTo::Nats => endpoint(&args.nats_url),
    };
    println!(
        "consumed: processed {} | parked in retry topic {} | dead-lettered {}\n\
         notified to {} {to}: {} records confirmed | {} not selected | {} failed (retried or dead-lettered)\n\
         broker: published {} | confirmed {} | duplicates the broker dropped {} | returned {} | nacked {} | reconnects {}\n\
         commits: {} ({} failed) | rebalances {}",
        run.processed,
        run.parked,
        run.dead_lettered,
        sink.name(),
        n.notified,
        n.not_selected,
        n.failed,
        s.published,
        s.confirmed,
        s.broker_duplicates,
        s.returned,
        s.nacked,
        s.reconnects,
        run.commits,
        run.commit_failures,
        run.rebalances,
    );
    Ok(if run.stopped_cleanly() {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}

/// The demo's notifier: one member of its own group, in this process, publishing new orders to
/// a queue or stream named after the demo run.
pub(crate) struct DemoNotifier {
    /// Where the notifications go, for the summary (no credentials).
    pub(crate) label: String,
    counts: Box<dyn Fn() -> (u64, NotifyCounts) + Send + Sync>,
    task: tokio::task::JoinHandle<Result<RunSummary, ConsumerError>>,
}

impl std::fmt::Debug for DemoNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoNotifier")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl DemoNotifier {
    /// Records whose notification was confirmed, and the sink's counts.
    pub(crate) fn counts(&self) -> (u64, NotifyCounts) {
        (self.counts)()
    }

    /// Waits for the member (cancelled through the token given to [`demo_member`]).
    pub(crate) async fn finish(self) -> anyhow::Result<RunSummary> {
        Ok(self.task.await.context("notifier task")??)
    }
}

/// The broker's URL: the environment's, else the one of the server `scripts/` runs (started
/// when it is not running, like the demo's Kafka).
fn demo_url(to: NotifyTo) -> anyhow::Result<String> {
    let (env, script) = match to {
        NotifyTo::Rabbitmq => ("ORDERSTREAM_AMQP_URL", "rabbitmq.sh"),
        NotifyTo::Nats => ("ORDERSTREAM_NATS_URL", "nats.sh"),
    };
    if let Ok(url) = std::env::var(env) {
        return Ok(url);
    }
    crate::cmd::services::script_output(script, &["start"])?;
    crate::cmd::services::script_output(script, &["url"])
}

/// Starts the demo's notifier in `group` (whose start offsets the caller set).
pub(crate) async fn demo_member(
    settings: &Effective,
    to: NotifyTo,
    group: &str,
    tag: &str,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<DemoNotifier> {
    let cfg = member_config(
        settings,
        group,
        &MemberTuning {
            ordering: Ordering::Key,
            protocol: Protocol::Classic,
            max_concurrency: 256,
            memory_budget_mib: 64,
        },
    )?;
    let url = demo_url(to)?;
    let codec = codec(settings)?;
    let on = orderstream_notify::NotifyOn::Created;
    match to {
        NotifyTo::Rabbitmq => {
            let name = format!("orderstream-demo-{tag}");
            let rabbit = RabbitConfig::named(&url, &name, &name);
            let sink = Arc::new(
                RabbitSink::connect(rabbit, cancel.clone())
                    .await
                    .map_err(|e| exit::UsageError::of(&e))?,
            );
            let p = Arc::new(NotifyProcessor::new(codec, Arc::clone(&sink), on));
            Ok(spawn_demo(
                format!("rabbitmq {} queue {name}", endpoint(&url)),
                cfg,
                p,
                cancel,
            ))
        }
        NotifyTo::Nats => {
            let mut nats = NatsConfig::new(url.clone());
            nats.stream = format!("ORDERSTREAM_DEMO_{}", tag.to_ascii_uppercase());
            nats.subject_prefix = format!("orderstream.demo.{tag}");
            let label = format!("nats {} stream {}", endpoint(&url), nats.stream);
            let sink = Arc::new(
                NatsSink::connect(nats, cancel.clone())
                    .await
                    .map_err(|e| exit::UsageError::of(&e))?,
            );
            let p = Arc::new(NotifyProcessor::new(codec, Arc::clone(&sink), on));
            Ok(spawn_demo(label, cfg, p, cancel))
        }
    }
}

fn spawn_demo<S: Sink>(
    label: String,
    cfg: orderstream_consumer::ConsumerConfig,
    processor: Arc<NotifyProcessor<S>>,
    cancel: tokio_util::sync::CancellationToken,
) -> DemoNotifier {
    let p = Arc::clone(&processor);
    let task = tokio::spawn(orderstream_consumer::run_batched(cfg, processor, cancel));
    DemoNotifier {
        label,
        counts: Box::new(move || (p.counts().notified, p.sink().counts())),
        task,
    }
}
