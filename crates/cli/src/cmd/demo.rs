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
use orderstream_consumer::RunSummary;
use orderstream_producer::DeliveryOutcome;
use orderstream_store::{OrderStore, StoreConfig, StoreProcessor};
use orderstream_topology::{ApplyMode, ProfileChoice, TopicRole};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::cmd::consume::{ConsumeArgs, consumer_config};
use crate::cmd::produce::{ProduceArgs, build_producer};
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
    #[arg(long, default_value_t = 1)]
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
    crate::cmd::topics::connect_admin(settings).is_ok()
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

pub(crate) async fn run(settings: &Effective, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.members == 0 || args.services == 0 {
        return Err(exit::UsageError("--members and --services must be at least 1".into()).into());
    }
    ensure_services(settings, args.nodes).await?;

    let topology = settings.topology()?;
    let (admin, brokers) = crate::cmd::topics::connect_admin(settings)?;
    let choice = ProfileChoice::from(settings.profile.as_str());
    let (profile_name, profile) = topology.resolve_profile(&choice, brokers)?;
    let report =
        orderstream_topology::apply(&admin, &topology, &profile_name, profile, ApplyMode::Create)
            .await?;
    print!("layout ({brokers} broker(s)):\n{report}");
    crate::cmd::schemas::register_all(settings).await?;

    let orders = topology.topic(TopicRole::Orders);
    let tag = format!("{:08x}", rand::random::<u32>());
    let group = format!("orderstream-demo-{tag}");
    start_group_at_end(settings, &group, &orders.name)?;

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
    let store = OrderStore::connect(&StoreConfig::new(&store_url))
        .await
        .map_err(|e| exit::UsageError::of(&e))?;
    let applier = Arc::new(StoreProcessor::new(
        crate::cmd::consume::codec(settings)?,
        store.clone(),
    ));
    println!("store: {}", store.url());
    let consume_args = ConsumeArgs {
        group: group.clone(),
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
    let stop_consumers = CancellationToken::new();
    let mut members = tokio::task::JoinSet::new();
    for _ in 0..args.members {
        let (cfg, a, c) = (
            cfg.clone(),
            Arc::clone(&applier),
            stop_consumers.child_token(),
        );
        members.spawn(async move { orderstream_consumer::run_batched(cfg, a, c).await });
    }
    let notifier = match args.notify {
        Some(to) => {
            let notify_group = format!("orderstream-demo-notify-{tag}");
            start_group_at_end(settings, &notify_group, &orders.name)?;
            start_group_at_end(
                settings,
                &format!("{notify_group}.retry"),
                &cfg.topics.retry,
            )?;
            let n = crate::cmd::notify::demo_member(
                settings,
                to,
                &notify_group,
                &tag,
                stop_consumers.child_token(),
            )
            .await?;
            wait_for_group(settings, &notify_group, 1).await;
            println!("notifier: group {notify_group} -> {}", n.label);
            Some(n)
        }
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
    let cancel = CancellationToken::new();
    crate::signals::cancel_on_signal(cancel.clone());

    let started = Instant::now();
    let live = {
        let (settings, group, topic, w) = (
            settings.clone(),
            group.clone(),
            orders.name.clone(),
            Arc::clone(&applier),
        );
        let partitions = orders.partitions;
        let producer = producer.clone();
        let c = cancel.clone();
        let done = stop_consumers.clone();
        tokio::spawn(async move {
            let mut last_applied = 0u64;
            while !c.is_cancelled() && !done.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = w.counts();
                let (s2, g2, t2) = (settings.clone(), group.clone(), topic.clone());
                let lag = tokio::task::spawn_blocking(move || lag(&s2, &g2, &t2, partitions))
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
    };

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

    // Wait until every acknowledged event was applied (or the timeout).
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        // cheap test first (this process's count), then the store itself
        let applied_all = applier.counts().applied + applier.counts().unknown_kinds
            >= acked.len() as u64
            && store
                .inbox("")
                .await
                .is_ok_and(|inbox| acked.iter().all(|id| inbox.contains_key(id)));
        if applied_all || Instant::now() > deadline || cancel.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
            Some((label, confirmed, sink))
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
    let lost = acked.iter().filter(|id| !inbox.contains_key(*id)).count();
    let applied_twice = acked
        .iter()
        .filter(|id| inbox.get(*id).is_some_and(|n| *n > 1))
        .count();
    let counts = store.counts().await?;
    let seen = applier.counts();
    let final_lag: i64 = lag(settings, &group, &orders.name, orders.partitions)
        .values()
        .sum();

    println!("\n{}", stats.stats.summary());
    println!("\n=== demo summary ===");
    println!("{:<38} {:>10}", "events acknowledged by Kafka", acked.len());
    println!("{:<38} {:>10}", "events in the store's inbox", counts.inbox);
    println!(
        "{:<38} {:>10}",
        "acknowledged but never applied (lost)", lost
    );
    println!(
        "{:<38} {:>10}",
        "acknowledged and applied twice", applied_twice
    );
    println!(
        "{:<38} {:>10}",
        "redeliveries recognised by the store", seen.duplicates
    );
    println!("{:<38} {:>10}", "dead letters", seen.illegal);
    println!(
        "{:<38} {:>10}",
        "failed / possibly persisted",
        stats.stats.failed + stats.stats.possibly_persisted
    );
    println!("{:<38} {:>10}", "final lag (offsets)", final_lag);
    println!("{:<38} {:>10}", "orders in the store", counts.orders);
    if let Some((label, confirmed, sink)) = &notified {
        println!("{:<38} {:>10}", "orders created in this run", created);
        println!(
            "{:<38} {:>10}",
            "new-order notifications confirmed", confirmed
        );
        println!(
            "notifications: {label} (published {}, confirmed {}, reconnects {})",
            sink.published, sink.confirmed, sink.reconnects
        );
    }
    for (i, s) in summaries.iter().enumerate() {
        let parts: Vec<String> = s
            .committed
            .keys()
            .filter(|(t, _)| *t == orders.name)
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
    let notify_ok = notified
        .as_ref()
        .is_none_or(|(_, confirmed, _)| *confirmed == created);
    let ok = lost == 0
        && notify_ok
        && applied_twice == 0
        && seen.illegal == 0
        && flush.complete
        && stats.stats.complete();
    println!("store (queried for the figures above): {}", store.url());
    println!(
        "result: {}",
        if ok {
            if notified.is_some() {
                "OK — every acknowledged event applied exactly once, checked in the store; every new order notified"
            } else {
                "OK — every acknowledged event applied exactly once, checked in the store"
            }
        } else {
            "PROBLEM — see the figures above"
        }
    );
    store.close().await;
    Ok(if ok {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}
