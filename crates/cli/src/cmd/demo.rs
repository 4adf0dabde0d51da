//! `demo`: the whole pipeline on the local cluster, with live progress and a closing check,
//! made by querying the store, that every acknowledged event was applied exactly once.
//!
//! Steps: bring the cluster and registry up if they are not answering, apply the layout,
//! register the schemas, start a consumer group of N members (in this process, each its own
//! Kafka consumer) applying events to the order store (a fresh embedded SQLite file, or
//! `--store`), run simulated order services, wait until every acknowledged event is in the
//! store's inbox, stop the members (drain + sync commit), query the store, print the summary.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use orderstream_consumer::{ConsumerError, RunSummary};
use orderstream_notify::NotifyCounts;
use orderstream_producer::DeliveryOutcome;
use orderstream_store::{OrderStore, ProcessorCounts, StoreConfig, StoreCounts, StoreProcessor};
use orderstream_topology::{ApplyMode, ProfileChoice, TopicRole, TopicSpec};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::cmd::consume::{ConsumeArgs, consumer_config};
use crate::cmd::produce::{ProduceArgs, ProduceStats, build_producer};
use crate::exit;
use crate::settings::{DEFAULT_BOOTSTRAP, Effective};

/// Options of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Events to produce.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) events: u64,
    /// Consumer-group members.
    #[arg(long, default_value_t = 3)]
    pub(crate) members: usize,
    /// Simulated order services producing concurrently.
    #[arg(long, default_value_t = 4)]
    pub(crate) services: usize,
    /// Target produce rate in events/s (0 = as fast as possible).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) rate: u64,
    /// Brokers to start when no cluster is running (1 or 3).
    #[arg(long, default_value_t = 1, value_parser = crate::cli::one_or_three)]
    pub(crate) nodes: u8,
    /// Give up waiting for the consumers after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// Where the members apply the events: `sqlite:PATH` or `postgres://…` (a password only
    /// through ORDERSTREAM_DEMO_STORE). Default: a fresh SQLite file under the temp directory.
    #[arg(long, env = "ORDERSTREAM_DEMO_STORE", hide_env_values = true)]
    pub(crate) store: Option<String>,
    /// Also notify other services of every new order over RabbitMQ or NATS JetStream (a
    /// notifier member in its own group; the server is started when ORDERSTREAM_AMQP_URL /
    /// ORDERSTREAM_NATS_URL is not set), and check every new order was confirmed.
    #[arg(long, env = "ORDERSTREAM_DEMO_NOTIFY", value_enum)]
    pub(crate) notify: Option<crate::choices::NotifyTo>,
}

fn kafka_up(settings: &Effective) -> bool {
    !nothing_listens(&settings.bootstrap) && crate::cmd::topics::connect_admin(settings).is_ok()
}

/// Whether every bootstrap address refuses a TCP connection: then no cluster is there, and
/// asking librdkafka would only print its connection errors and wait out its deadline before
/// the demo starts one. `false` when an address cannot be read (the client then decides).
fn nothing_listens(bootstrap: &str) -> bool {
    let mut addrs = Vec::new();
    for entry in bootstrap.split(',') {
        let entry = entry.trim();
        // librdkafka accepts `proto://host:port`
        let host_port = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        match std::net::ToSocketAddrs::to_socket_addrs(host_port) {
            Ok(resolved) => addrs.extend(resolved),
            Err(_) => return false,
        }
    }
    !addrs.is_empty()
        && addrs.iter().all(|addr| {
            std::net::TcpStream::connect_timeout(addr, Duration::from_millis(500)).is_err()
        })
}

async fn registry_up(settings: &Effective) -> bool {
    let admin = orderstream_schema::registry_admin::RegistryAdmin::with_access(
        &settings.registry_url,
        Duration::from_secs(3),
        &settings.registry_access(),
    );
    match admin {
        Ok(a) => a.list_subjects().await.is_ok(),
        Err(_) => false,
    }
}

/// Starts the local services when the configured ones do not answer (only for the default
/// loopback addresses: a remote cluster that is down is an error, not something to start).
async fn ensure_services(settings: &Effective, nodes: u8) -> anyhow::Result<()> {
    if kafka_up(settings) && registry_up(settings).await {
        println!("cluster and registry are running");
        return Ok(());
    }
    if settings.bootstrap != DEFAULT_BOOTSTRAP {
        anyhow::bail!(
            "Kafka or the registry does not answer at {} / {}; start them, or unset ORDERSTREAM_BOOTSTRAP to let the demo start a local cluster",
            settings.bootstrap,
            settings.registry_url
        );
    }
    println!("starting the local cluster ({nodes} node(s)) and the registry...");
    crate::cmd::services::up(nodes, &[], false)?;
    Ok(())
}

/// Positions a fresh group at the current end of the topic, so the demo counts only its own
/// events (a new group would otherwise start from the earliest offset).
fn start_group_at_end(settings: &Effective, group: &str, topic: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
        }
    }
    // A freshly started cluster may still be electing or loading the group coordinator: those
    // answers are retried for a while, anything else fails at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => break,
            Err(e)
                if std::time::Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            rdkafka::types::RDKafkaErrorCode::NotCoordinator
                                | rdkafka::types::RDKafkaErrorCode::CoordinatorLoadInProgress
                                | rdkafka::types::RDKafkaErrorCode::CoordinatorNotAvailable
                        )
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("position group {group} at the end of {topic}")));
            }
        }
    }
    Ok(())
}

/// Waits (up to 30 s) until the group is stable with all its members, so the demo shows the
/// partitions spread over them from the start.
async fn wait_for_group(settings: &Effective, group: &str, members: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (s, g) = (settings.clone(), group.to_owned());
        let stable = tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = s.client_config().create().ok()?;
            let list = c.fetch_group_list(Some(&g), Duration::from_secs(5)).ok()?;
            list.groups()
                .iter()
                .find(|gr| gr.name() == g)
                .map(|gr| (gr.state().to_owned(), gr.members().len()))
        })
        .await
        .ok()
        .flatten();
        if stable.is_some_and(|(state, n)| state == "Stable" && n == members) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(
        group,
        "consumer group not stable after 30 s; producing anyway"
    );
}

/// Lag per partition: high watermark minus the group's committed offset.
fn lag(settings: &Effective, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let Ok(consumer) = settings
        .client_config()
        .set("group.id", group)
        .create::<BaseConsumer>()
    else {
        return BTreeMap::new();
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return BTreeMap::new();
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            let (_, high) = consumer
                .fetch_watermarks(topic, e.partition(), Duration::from_secs(5))
                .ok()?;
            let c = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            Some((e.partition(), (high - c).max(0)))
        })
        .collect()
}

/// Runs the demo (see the module docs) and says whether every acknowledged event was applied
/// exactly once: [`exit::SUCCESS`] or [`exit::INCOMPLETE`].
pub(crate) async fn run(settings: &Effective, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.members == 0 || args.services == 0 {
        return Err(exit::UsageError("--members and --services must be at least 1".into()).into());
    }
    ensure_services(settings, args.nodes).await?;
    let orders = apply_layout(settings).await?;
    let tag = format!("{:08x}", rand::random::<u32>());
    let group = format!("orderstream-demo-{tag}");
    start_group_at_end(settings, &group, &orders.name)?;
    let store = open_store(&args, &tag).await?;
    let applier = Arc::new(StoreProcessor::new(
        crate::cmd::consume::codec(settings)?,
        store.clone(),
    ));
    println!("store: {}", store.url());

    let stop_consumers = CancellationToken::new();
    let mut members = start_members(settings, &args, &group, &applier, &stop_consumers)?;
    let notifier = match args.notify {
        Some(to) => Some(start_notifier(settings, to, &tag, &orders.name, &stop_consumers).await?),
        None => None,
    };
    wait_for_group(settings, &group, args.members).await;
    println!(
        "consumer group {group}: {} member(s); producing {} events from {} services at {} events/s",
        args.members,
        args.events,
        args.services,
        if args.rate == 0 {
            "max".to_owned()
        } else {
            args.rate.to_string()
        }
    );

    let produce_args = ProduceArgs {
        count: Some(args.events),
        duration: None,
        services: args.services,
        rate: args.rate,
        open_orders: 50,
        window: 5_000,
        linger_ms: 5,
        compression: crate::choices::Codec::Lz4,
        quiet: true,
    };
    let producer = build_producer(settings, &produce_args).await?;
    crate::cmd::schemas::check_registry(settings).await?;
    let cancel = CancellationToken::new();
    crate::signals::cancel_on_signal(cancel.clone());
    let watch = Watch {
        settings: settings.clone(),
        group: group.clone(),
        topic: orders.name.clone(),
        partitions: orders.partitions,
    };
    let live = live_progress(
        watch.clone(),
        Arc::clone(&applier),
        producer.clone(),
        cancel.clone(),
        stop_consumers.clone(),
    );

    // Keep every outcome so the summary can check each acknowledged event id.
    let stats =
        crate::cmd::produce::simulate_collect(&producer, &produce_args, cancel.clone()).await;
    let flush = producer.shutdown(Duration::from_secs(30)).await;
    let acked: HashSet<String> = stats
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, DeliveryOutcome::Delivered { .. }))
        .map(|(id, _)| id.clone())
        .collect();

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    wait_applied(&applier, &store, &acked, deadline, &cancel).await;
    // Every order of this run was created once: its notification must be confirmed.
    let order_prefix = format!("ord-{}-", stats.run_tag);
    let created = store
        .orders(&order_prefix)
        .await
        .map_or(0, |o| o.len() as u64);
    if let Some(n) = &notifier {
        while n.counts().0 < created && Instant::now() < deadline && !cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop_consumers.cancel();
    let notified = match notifier {
        Some(n) => {
            let (confirmed, sink) = n.counts();
            let label = n.label.clone();
            n.finish().await.context("notifier failed")?;
            Some(Notified {
                label,
                created,
                confirmed,
                sink,
            })
        }
        None => None,
    };
    let mut summaries: Vec<RunSummary> = Vec::new();
    while let Some(r) = members.join_next().await {
        summaries.push(
            r.context("consumer task")?
                .context("consumer member failed")?,
        );
    }
    live.abort();

    // The verdict comes from the store, queried after the members stopped.
    let inbox = store.inbox("").await?;
    let verdict = Verdict {
        lost: acked.iter().filter(|id| !inbox.contains_key(*id)).count(),
        applied_twice: acked
            .iter()
            .filter(|id| inbox.get(*id).is_some_and(|n| *n > 1))
            .count(),
        acked: acked.len(),
        store: store.counts().await?,
        seen: applier.counts(),
        final_lag: watch.lag().values().sum(),
        flushed: flush.complete,
        notified,
    };
    println!("\n{}", stats.stats.summary());
    let ok = verdict.print(&stats.stats, &summaries, &orders.name);
    println!("store (queried for the figures above): {}", store.url());
    println!(
        "result: {}",
        if !ok {
            "PROBLEM — see the figures above"
        } else if verdict.notified.is_some() {
            "OK — every acknowledged event applied exactly once, checked in the store; every new order notified"
        } else {
            "OK — every acknowledged event applied exactly once, checked in the store"
        }
    );
    store.close().await;
    Ok(if ok {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}

/// Applies the layout (creating what is missing), registers the schemas; the orders topic.
async fn apply_layout(settings: &Effective) -> anyhow::Result<TopicSpec> {
    let topology = settings.topology()?;
    let (admin, brokers) = crate::cmd::topics::connect_admin(settings)?;
    let choice = ProfileChoice::from(settings.profile.as_str());
    let (profile_name, profile) = topology.resolve_profile(&choice, brokers)?;
    let report =
        orderstream_topology::apply(&admin, &topology, &profile_name, profile, ApplyMode::Create)
            .await?;
    print!("layout ({brokers} broker(s)):\n{report}");
    crate::cmd::schemas::register_all(settings).await?;
    Ok(topology.topic(TopicRole::Orders).clone())
}

/// The store the members apply to: `--store`, or a fresh SQLite file for run `tag`.
async fn open_store(args: &DemoArgs, tag: &str) -> anyhow::Result<OrderStore> {
    let store_url = match &args.store {
        Some(url) => {
            if std::env::var("ORDERSTREAM_DEMO_STORE").ok().as_deref() != Some(url.as_str())
                && orderstream_store::redact(url) != *url
            {
                return Err(exit::UsageError(
                    "--store: a password on the command line is visible to every user (ps); use ORDERSTREAM_DEMO_STORE".into(),
                )
                .into());
            }
            url.clone()
        }
        None => {
            let dir = std::env::temp_dir().join("orderstream-demo");
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            format!("sqlite:{}", dir.join(format!("orders-{tag}.db")).display())
        }
    };
    Ok(OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .map_err(|e| exit::UsageError::of(&e))?)
}

/// `args.members` consumer members of `group` applying to the store, in this process.
fn start_members(
    settings: &Effective,
    args: &DemoArgs,
    group: &str,
    applier: &Arc<StoreProcessor>,
    stop: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinSet<Result<RunSummary, ConsumerError>>> {
    let consume_args = ConsumeArgs {
        group: group.to_owned(),
        for_secs: None,
        ordering: crate::choices::Ordering::Key,
        max_concurrency: 16,
        memory_budget_mib: 64,
        protocol: crate::choices::Protocol::Classic,
        store: None,
        store_password_file: None,
    };
    let cfg = consumer_config(settings, &consume_args)?;
    // records parked by earlier runs are not this run's events
    start_group_at_end(settings, &cfg.retry_group(), &cfg.topics.retry)?;
    let mut members = tokio::task::JoinSet::new();
    for _ in 0..args.members {
        let (cfg, a, c) = (cfg.clone(), Arc::clone(applier), stop.child_token());
        members.spawn(async move { orderstream_consumer::run_batched(cfg, a, c).await });
    }
    Ok(members)
}

/// A notifier member in its own group, starting at the end of the orders and retry topics.
async fn start_notifier(
    settings: &Effective,
    to: crate::choices::NotifyTo,
    tag: &str,
    orders: &str,
    stop: &CancellationToken,
) -> anyhow::Result<crate::cmd::notify::DemoNotifier> {
    let notify_group = format!("orderstream-demo-notify-{tag}");
    start_group_at_end(settings, &notify_group, orders)?;
    let retry = settings.topology()?.topic(TopicRole::Retry).name.clone();
    start_group_at_end(settings, &format!("{notify_group}.retry"), &retry)?;
    let n = crate::cmd::notify::demo_member(settings, to, &notify_group, tag, stop.child_token())
        .await?;
    wait_for_group(settings, &notify_group, 1).await;
    println!("notifier: group {notify_group} -> {}", n.label);
    Ok(n)
}

/// The group and topic whose lag the demo shows.
#[derive(Debug, Clone)]
struct Watch {
    settings: Effective,
    group: String,
    topic: String,
    partitions: i32,
}

impl Watch {
    /// Lag per partition (blocking: admin requests).
    fn lag(&self) -> BTreeMap<i32, i64> {
        lag(&self.settings, &self.group, &self.topic, self.partitions)
    }
}

/// Prints progress once a second until `cancel` or `done` fires.
fn live_progress(
    watch: Watch,
    applier: Arc<StoreProcessor>,
    producer: orderstream_orders::OrderProducer,
    cancel: CancellationToken,
    done: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut last_applied = 0u64;
        while !cancel.is_cancelled() && !done.is_cancelled() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = applier.counts();
            let w = watch.clone();
            let lag = tokio::task::spawn_blocking(move || w.lag())
                .await
                .unwrap_or_default();
            let lag_txt: Vec<String> = lag.iter().map(|(p, l)| format!("p{p}:{l}")).collect();
            println!(
                "[{:>5.1}s] in flight {:>6} | applied {:>7} ({:>6}/s) | redeliveries recognised {} | dead letters {} | lag {}",
                started.elapsed().as_secs_f64(),
                producer.in_flight(),
                s.applied,
                s.applied - last_applied,
                s.duplicates,
                s.illegal,
                lag_txt.join(" ")
            );
            last_applied = s.applied;
        }
    })
}

/// Waits until every acknowledged event is in the store's inbox, `deadline`, or `cancel`.
async fn wait_applied(
    applier: &StoreProcessor,
    store: &OrderStore,
    acked: &HashSet<String>,
    deadline: Instant,
    cancel: &CancellationToken,
) {
    loop {
        // cheap test first (this process's count), then the store itself
        let applied_all = applier.counts().applied + applier.counts().unknown_kinds
            >= acked.len() as u64
            && store
                .inbox("")
                .await
                .is_ok_and(|inbox| acked.iter().all(|id| inbox.contains_key(id)));
        if applied_all || Instant::now() > deadline || cancel.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the notifier confirmed.
#[derive(Debug)]
struct Notified {
    label: String,
    created: u64,
    confirmed: u64,
    sink: NotifyCounts,
}

/// The closing figures, from the store queried after the members stopped.
#[derive(Debug)]
struct Verdict {
    acked: usize,
    lost: usize,
    applied_twice: usize,
    store: StoreCounts,
    seen: ProcessorCounts,
    final_lag: i64,
    flushed: bool,
    notified: Option<Notified>,
}

impl Verdict {
    /// Prints the summary; `true` when every acknowledged event was applied exactly once (and,
    /// with a notifier, every new order was confirmed).
    fn print(&self, produced: &ProduceStats, members: &[RunSummary], orders: &str) -> bool {
        println!("\n=== demo summary ===");
        let row = |what: &str, n: &dyn std::fmt::Display| println!("{what:<38} {n:>10}");
        row("events acknowledged by Kafka", &self.acked);
        row("events in the store's inbox", &self.store.inbox);
        row("acknowledged but never applied (lost)", &self.lost);
        row("acknowledged and applied twice", &self.applied_twice);
        row(
            "redeliveries recognised by the store",
            &self.seen.duplicates,
        );
        row("dead letters", &self.seen.illegal);
        row(
            "failed / possibly persisted",
            &(produced.failed + produced.possibly_persisted),
        );
        row("final lag (offsets)", &self.final_lag);
        row("orders in the store", &self.store.orders);
        if let Some(n) = &self.notified {
            row("orders created in this run", &n.created);
            row("new-order notifications confirmed", &n.confirmed);
            println!(
                "notifications: {} (published {}, confirmed {}, reconnects {})",
                n.label, n.sink.published, n.sink.confirmed, n.sink.reconnects
            );
        }
        for (i, s) in members.iter().enumerate() {
            let parts: Vec<String> = s
                .committed
                .keys()
                .filter(|(t, _)| t == orders)
                .map(|(_, p)| p.to_string())
                .collect();
            println!(
                "member {i}: processed {:>6}, commits {:>4}, rebalances {}, partitions committed [{}]",
                s.processed,
                s.commits,
                s.rebalances,
                parts.join(",")
            );
        }
        let notify_ok = self
            .notified
            .as_ref()
            .is_none_or(|n| n.confirmed == n.created);
        self.lost == 0
            && notify_ok
            && self.applied_twice == 0
            && self.seen.illegal == 0
            && self.flushed
            && produced.complete()
    }
}

#[cfg(test)]
mod tests {
    use super::nothing_listens;

    #[test]
    fn a_closed_port_is_nothing_listening_and_an_open_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr").to_string();
        assert!(!nothing_listens(&open), "{open} listens");
        assert!(
            !nothing_listens(&format!("PLAINTEXT://{open}, 127.0.0.1:1")),
            "one listening address of several is enough"
        );
        drop(listener);
        assert!(nothing_listens(&open), "{open} closed");
        assert!(
            !nothing_listens("not a host name:x"),
            "an address that cannot be read is left to the client"
        );
    }
}
