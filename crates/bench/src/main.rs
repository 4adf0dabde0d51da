//! `orderstream-bench`: the benchmark suite. Every figure is reported next to a baseline
//! measured in the same invocation, interleaved A/B/A/B and repeated (median, min–max over
//! rounds). Writes a Markdown report (`BENCHMARKS.md`). See `docs/benchmarks.md`.

mod bare;
mod bare_consumer;
mod clients;
mod codec;
mod drain;
mod latency;
mod memory;
mod notify;
mod produce;
mod rebalance;
mod report;
mod scale_out;
mod sender;
mod stage;
mod store;
mod util;

// The allocator the `orderstream` binary uses (see crates/cli/src/main.rs), so the figures are
// the ones users of the binary get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use orderstream_consumer::GroupProtocol;
use orderstream_producer::Compression;
use orderstream_schema::{OrderCodec, RegistryConfig};

use crate::latency::MaxRate;
use crate::util::Tools;

#[derive(Debug, Parser)]
#[command(name = "orderstream-bench", about = "orderstream benchmark suite")]
pub(crate) struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "ORDERSTREAM_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub(crate) bootstrap: String,
    /// Confluent-compatible registry URL.
    #[arg(
        long,
        env = "ORDERSTREAM_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub(crate) registry_url: String,
    /// Small record counts and short phases (development); the default is the full run.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Rounds per comparison (≥ 3).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Workloads to run, comma separated; they run in this order whatever the order given.
    #[arg(
        long,
        value_enum,
        default_value = "codec,produce,latency,drain,memory,rebalance,scale-out,notify,stage,store",
        value_delimiter = ','
    )]
    pub(crate) only: Vec<Workload>,
    /// RabbitMQ of the notify workload (scripts/bench.sh starts one).
    #[arg(long, env = "ORDERSTREAM_AMQP_URL", hide_env_values = true)]
    pub(crate) amqp_url: Option<String>,
    /// NATS server (JetStream on) of the notify workload.
    #[arg(long, env = "ORDERSTREAM_NATS_URL")]
    pub(crate) nats_url: Option<String>,
    /// Path of a built `rdkafka_performance` (scripts/bench.sh builds it under target/).
    #[arg(long, env = "RDKAFKA_PERFORMANCE")]
    pub(crate) rdkafka_performance: Option<PathBuf>,
    /// Python interpreter with `confluent-kafka` installed, for the produce workload's Python baseline
    /// (scripts/bench.sh creates a venv under .cache/).
    #[arg(long, env = "ORDERSTREAM_BENCH_PYTHON")]
    pub(crate) python: Option<PathBuf>,
    /// Why the Python baseline is unavailable (scripts/bench.sh sets it when its venv could not
    /// be set up); the report prints it. Ignored when `--python` is given.
    #[arg(long, env = "ORDERSTREAM_BENCH_PYTHON_UNAVAILABLE")]
    pub(crate) python_unavailable: Option<String>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) out: PathBuf,
    /// Cluster description for the report (e.g. "1 node"); detected when absent.
    #[arg(long, env = "ORDERSTREAM_BENCH_CLUSTER")]
    pub(crate) cluster: Option<String>,
    /// Instead of the suite: send `--profile-records` through one producer variant at the
    /// headline setting (linger 5 ms, ~100 B, no compression; see `--profile-linger-ms`,
    /// `--profile-lz4`), print msgs/s and CPU µs per
    /// message, exit. For a profiler, e.g. `perf record -g -- orderstream-bench --profile-produce raw`.
    #[arg(long, value_enum)]
    pub(crate) profile_produce: Option<produce::Profiled>,
    /// Records of `--profile-produce`.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) profile_records: usize,
    /// Linger of `--profile-produce`, ms (the saturation's other setting is 20).
    #[arg(long, default_value_t = 5)]
    pub(crate) profile_linger_ms: u64,
    /// `--profile-produce` with lz4 batches instead of none (the saturation's other setting).
    #[arg(long)]
    pub(crate) profile_lz4: bool,
    /// Run ProducerPerformance on every producer setting, not only the headline one.
    #[arg(long)]
    pub(crate) java_all: bool,
    /// Child role (the memory phase's producer): produce to this topic, then exit.
    #[arg(long, hide = true)]
    pub(crate) produce_only: Option<String>,
    /// Child role (scale-out): a group member on this topic until stdin closes.
    #[arg(long, hide = true, requires = "group")]
    pub(crate) member_of: Option<String>,
    /// Child role (latency): an open-loop sender to this topic, driven through stdin.
    #[arg(long, hide = true)]
    pub(crate) sender_of: Option<String>,
    /// Group of `--member-of`.
    #[arg(long, hide = true)]
    pub(crate) group: Option<String>,
    /// Child role: run the memory phase for this many seconds, print its figures, exit.
    #[arg(long, hide = true)]
    pub(crate) mem_phase_secs: Option<f64>,
    /// Rate of `--produce-only` and `--mem-phase-secs`, msgs/s.
    #[arg(long, hide = true, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Records of `--produce-only`.
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) count: u64,
    /// Padding bytes per event of `--produce-only`.
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) pad: usize,
    /// The producer saturation's max (msgs/s) the consumer workloads set their load from, when
    /// the produce workload does not run (e.g. `--only latency`); otherwise a fixed 20 000.
    #[arg(long, value_parser = positive_rate)]
    pub(crate) max_rate: Option<f64>,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive rate in msgs/s")),
    }
}

/// A workload of the suite; `--only` takes the kebab-case names (`scale-out`), which the
/// report's targets table also uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    Codec,
    Produce,
    Latency,
    Drain,
    Memory,
    Rebalance,
    ScaleOut,
    Notify,
    Stage,
    Store,
}

#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) codec: Option<codec::Codec>,
    pub(crate) produce: Vec<produce::SettingResult>,
    pub(crate) latency: Option<latency::Latency>,
    pub(crate) drain: Option<drain::Drain>,
    pub(crate) memory: Option<memory::Memory>,
    pub(crate) rebalance: Vec<rebalance::Rebalance>,
    pub(crate) scale_out: Option<scale_out::ScaleOut>,
    pub(crate) notify: Option<notify::Notify>,
    pub(crate) stage: Option<stage::Stage>,
    pub(crate) store: Option<store::Store>,
    pub(crate) errors: Vec<String>,
    pub(crate) cluster: String,
    pub(crate) elapsed: Duration,
}

fn wants(a: &Args, w: Workload) -> bool {
    a.only.contains(&w)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.produce_only.is_some()
        || args.member_of.is_some()
        || args.mem_phase_secs.is_some()
        || args.sender_of.is_some()
    {
        return child_role(&args).await;
    }
    if let Some(variant) = args.profile_produce {
        let codec = OrderCodec::new(RegistryConfig {
            url: args.registry_url.clone(),
            ..RegistryConfig::default()
        })?;
        let linger = Duration::from_millis(args.profile_linger_ms);
        let compression = if args.profile_lz4 {
            Compression::Lz4
        } else {
            Compression::None
        };
        return produce::profile(
            &args.bootstrap,
            &codec,
            variant,
            args.profile_records,
            linger,
            compression,
        )
        .await;
    }
    let started = Instant::now();
    let rounds = args.rounds.max(3);
    let root = util::repo_root();
    let python = util::python_baseline(
        &root,
        args.python.as_deref(),
        args.python_unavailable.as_deref(),
    );
    match &python {
        Ok(py) => eprintln!("Python baseline: {}", py.versions),
        Err(why) => eprintln!("Python baseline not run: {why}"),
    }
    let tools = Tools {
        root,
        rdkafka_performance: args.rdkafka_performance.clone().filter(|p| p.exists()),
        python,
    };
    let mut res = Results::default();
    let needs_broker = args.only.iter().any(|w| *w != Workload::Codec);
    let brokers = if needs_broker {
        util::brokers(&args.bootstrap).context("Kafka not reachable")?
    } else {
        0
    };
    res.cluster = args.cluster.clone().unwrap_or_else(|| {
        format!(
            "{brokers} broker(s) at {}, topics with {} partitions, RF {}",
            args.bootstrap,
            util::PARTITIONS,
            if brokers >= 3 { 3 } else { 1 }
        )
    });
    let mut topics = Vec::new();

    if wants(&args, Workload::Codec) {
        eprintln!("Codec ...");
        let n = if args.quick { 100_000 } else { 400_000 };
        match codec::run(rounds.max(5), n, Some(&args.registry_url)).await {
            Ok(r) => res.codec = Some(r),
            Err(e) => res.errors.push(format!("codec: {e:#}")),
        }
    }
    let codec = OrderCodec::new(RegistryConfig {
        url: args.registry_url.clone(),
        ..RegistryConfig::default()
    })?;

    produce_workload(&args, &tools, &codec, rounds, &mut res, &mut topics).await;
    let max = max_rate(&res, args.max_rate);
    consumer_workloads(&args, &tools, &codec, rounds, max, &mut res, &mut topics).await;
    sink_workloads(&args, &codec, rounds, &mut res, &mut topics).await;
    util::delete_topics(&args.bootstrap, &topics).await;
    res.elapsed = started.elapsed();
    let md = report::render(&args, rounds, &tools, &res);
    std::fs::write(&args.out, &md).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{md}");
    eprintln!("wrote {} in {:.0?}", args.out.display(), res.elapsed);
    Ok(())
}

/// The producer saturation, one setting after another.
async fn produce_workload(
    args: &Args,
    tools: &Tools,
    codec: &OrderCodec,
    rounds: usize,
    res: &mut Results,
    topics: &mut Vec<String>,
) {
    if wants(args, Workload::Produce) {
        let settings: Vec<produce::Setting> = {
            let s = |linger_ms, pad, compression| produce::Setting {
                linger_ms,
                pad,
                compression,
            };
            if args.quick {
                // The headline first: no compression, where the ceilings send what we send.
                vec![
                    s(5, 0, Compression::None),
                    s(5, 0, Compression::Lz4),
                    s(20, 0, Compression::None),
                    s(5, 900, Compression::None),
                ]
            } else {
                let mut v = Vec::new();
                for linger in [5, 20] {
                    for pad in [0, 900] {
                        for c in [Compression::None, Compression::Lz4] {
                            v.push(s(linger, pad, c));
                        }
                    }
                }
                v
            }
        };
        for (i, s) in settings.into_iter().enumerate() {
            let records = match (args.quick, s.pad) {
                (true, 0) => 30_000,
                (true, _) => 10_000,
                (false, 0) => 250_000,
                (false, _) => 60_000,
            };
            let java = i == 0 || args.java_all;
            eprintln!("Producer saturation {s:?} ...");
            match produce::run_setting(
                tools,
                &args.bootstrap,
                codec,
                s,
                records,
                rounds,
                java,
                topics,
            )
            .await
            {
                Ok(r) => res.produce.push(r),
                Err(e) => res.errors.push(format!("produce {s:?}: {e:#}")),
            }
        }
    }
}

/// The producer saturation's max: the Avro producer at the product's default setting (linger
/// 5 ms, ~100 B, lz4); when that setting did not run, `given` or a fixed guess. The report says
/// which.
fn max_rate(res: &Results, given: Option<f64>) -> MaxRate {
    let measured = res
        .produce
        .iter()
        .find(|r| {
            r.setting.linger_ms == 5
                && r.setting.pad == 0
                && r.setting.compression == Compression::Lz4
        })
        .map(|r| r.avro.m(|x| x.msgs_s).med)
        .filter(|r| r.is_finite() && *r > 0.0);
    match (measured, given) {
        (Some(msgs_s), _) => MaxRate {
            msgs_s,
            from: "the producer saturation's Avro max (linger 5 ms, ~100 B, lz4)",
        },
        (None, Some(msgs_s)) => MaxRate {
            msgs_s,
            from: "the rate given with `--max-rate`",
        },
        (None, None) => MaxRate {
            msgs_s: 20_000.0,
            from: "a fixed guess (no producer saturation run, no `--max-rate`)",
        },
    }
}

/// The workloads with a consumer; their load is set from `max` (see [`max_rate`]).
async fn consumer_workloads(
    args: &Args,
    tools: &Tools,
    codec: &OrderCodec,
    rounds: usize,
    max: MaxRate,
    res: &mut Results,
    topics: &mut Vec<String>,
) {
    let max_rate = max.msgs_s;
    if wants(args, Workload::Latency) {
        eprintln!("End-to-end latency at a fixed rate (max {max_rate:.0}/s) ...");
        let secs = if args.quick { 3.0 } else { 5.0 };
        match latency::run(
            &args.bootstrap,
            &args.registry_url,
            codec,
            max,
            secs,
            rounds,
            topics,
        )
        .await
        {
            Ok(r) => res.latency = Some(r),
            Err(e) => res.errors.push(format!("latency: {e:#}")),
        }
    }
    if wants(args, Workload::Drain) {
        eprintln!("Consumer drain ...");
        let n = if args.quick { 100_000 } else { 1_000_000 };
        match drain::run(tools, &args.bootstrap, codec, n, rounds, topics).await {
            Ok(r) => res.drain = Some(r),
            Err(e) => res.errors.push(format!("drain: {e:#}")),
        }
    }
    if wants(args, Workload::Memory) {
        eprintln!("Memory (slow handler) ...");
        let secs = if args.quick { 10.0 } else { 60.0 };
        let rate = (max_rate * 0.3).clamp(1000.0, 5000.0);
        match memory::run(&args.bootstrap, &args.registry_url, rate, secs).await {
            Ok(r) => res.memory = Some(r),
            Err(e) => res.errors.push(format!("memory: {e:#}")),
        }
    }
    if wants(args, Workload::Rebalance) {
        let hold = Duration::from_secs(if args.quick { 4 } else { 8 });
        let rate = (max_rate * 0.1).clamp(500.0, 3000.0);
        for proto in [GroupProtocol::default(), GroupProtocol::Consumer] {
            eprintln!("Rebalance {proto:?} ...");
            res.rebalance
                .push(rebalance::run(&args.bootstrap, codec, proto, rate, hold, topics).await);
        }
    }
    if wants(args, Workload::ScaleOut) {
        eprintln!("Scale-out 1 → 2 → 3 member processes ...");
        let n = if args.quick { 100_000 } else { 600_000 };
        match scale_out::run(tools, &args.bootstrap, &args.registry_url, codec, n, topics).await {
            Ok(r) => res.scale_out = Some(r),
            Err(e) => res.errors.push(format!("scale-out: {e:#}")),
        }
    }
}

/// The workloads that write to RabbitMQ, NATS, Kafka transactions or PostgreSQL.
async fn sink_workloads(
    args: &Args,
    codec: &OrderCodec,
    rounds: usize,
    res: &mut Results,
    topics: &mut Vec<String>,
) {
    if wants(args, Workload::Notify) {
        eprintln!("Notifications ...");
        let n = if args.quick { 2_000 } else { 10_000 };
        match (&args.amqp_url, &args.nats_url) {
            (Some(amqp), Some(nats)) => {
                match notify::run(amqp, nats, &args.bootstrap, n, rounds, topics).await {
                    Ok(r) => res.notify = Some(r),
                    Err(e) => res.errors.push(format!("notify: {e:#}")),
                }
            }
            _ => res.errors.push(
                "notify: not run: needs --amqp-url and --nats-url (scripts/bench.sh starts RabbitMQ and NATS)"
                    .to_owned(),
            ),
        }
    }
    if wants(args, Workload::Stage) {
        eprintln!("Transactional stage ...");
        let n = if args.quick { 50_000 } else { 300_000 };
        match stage::run(&args.bootstrap, codec, n, rounds, topics).await {
            Ok(r) => res.stage = Some(r),
            Err(e) => res.errors.push(format!("stage: {e:#}")),
        }
    }
    if wants(args, Workload::Store) {
        eprintln!("Order projection in PostgreSQL ...");
        let (n, single) = if args.quick {
            (20_000, 2_000)
        } else {
            (200_000, 10_000)
        };
        // The databases the order projection makes are created next to the one this URL names.
        if std::env::var("ORDERSTREAM_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            match store::run(&args.bootstrap, codec, n, single, rounds, topics).await {
                Ok(r) => res.store = Some(r),
                Err(e) => res.errors.push(format!("store: {e:#}")),
            }
        } else {
            res.errors.push(
                "store: not run: needs ORDERSTREAM_DATABASE_URL (scripts/bench.sh starts PostgreSQL)"
                    .to_owned(),
            );
        }
    }
}

/// This binary started as a child process of a run (see `memory` and `scale_out`).
async fn child_role(args: &Args) -> Result<()> {
    let codec = OrderCodec::new(RegistryConfig {
        url: args.registry_url.clone(),
        ..RegistryConfig::default()
    })?;
    if let Some(secs) = args.mem_phase_secs {
        let mut topics = Vec::new();
        let res = memory::phase(
            &args.bootstrap,
            &args.registry_url,
            &codec,
            args.rate,
            secs,
            &mut topics,
        )
        .await;
        util::delete_topics(&args.bootstrap, &topics).await;
        println!("{}", res?.line());
        return Ok(());
    }
    if let Some(topic) = &args.sender_of {
        return sender::serve(&args.bootstrap, &codec, topic).await;
    }
    if let Some(topic) = &args.produce_only {
        return memory::produce_only(
            &args.bootstrap,
            &codec,
            topic,
            args.rate,
            args.count,
            args.pad,
        )
        .await;
    }
    match (&args.member_of, &args.group) {
        (Some(topic), Some(group)) => {
            scale_out::member(&args.bootstrap, &codec, topic, group).await
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Args, Results, Workload, max_rate};

    #[test]
    fn every_workload_runs_by_default_in_suite_order() {
        let args = Args::try_parse_from(["orderstream-bench"]).expect("defaults parse");
        assert_eq!(
            args.only,
            [
                Workload::Codec,
                Workload::Produce,
                Workload::Latency,
                Workload::Drain,
                Workload::Memory,
                Workload::Rebalance,
                Workload::ScaleOut,
                Workload::Notify,
                Workload::Stage,
                Workload::Store,
            ]
        );
    }

    /// Without a producer saturation run the report must not credit it with the rate.
    #[test]
    fn the_max_rate_says_where_it_came_from() {
        let none = Results::default();
        let given = max_rate(&none, Some(123_000.0));
        assert_eq!(given.msgs_s, 123_000.0);
        assert!(given.from.contains("--max-rate"), "{}", given.from);
        let guessed = max_rate(&none, None);
        assert!(guessed.from.contains("guess"), "{}", guessed.from);
    }

    #[test]
    fn only_takes_workload_names() {
        let args = Args::try_parse_from(["orderstream-bench", "--only", "scale-out,codec"])
            .expect("known names parse");
        assert_eq!(args.only, [Workload::ScaleOut, Workload::Codec]);
    }

    #[test]
    fn an_unknown_workload_is_refused_with_the_valid_names() {
        let err = Args::try_parse_from(["orderstream-bench", "--only", "codec,w1"])
            .expect_err("w1 is no workload");
        let msg = err.to_string();
        assert!(msg.contains("'w1'"), "{msg}");
        assert!(
            msg.contains(
                "codec, produce, latency, drain, memory, rebalance, scale-out, notify, stage, store"
            ),
            "{msg}"
        );
    }
}
