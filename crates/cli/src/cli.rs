//! The command line: `orderstream <command>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// orderstream — a Kafka pipeline for order events: idempotent keyed producers, consumer groups
/// that commit only finished work, Avro schemas with tested evolution.
///
/// Settings precedence: flags > environment variables > config file (--config) > defaults.
#[derive(Debug, Parser)]
#[command(name = "orderstream", version, propagate_version = true, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

const EXAMPLES: &str = "\
Examples:
  orderstream demo                          # local cluster + registry, produce, consume, summary
  orderstream up --nodes 3                  # start the 3-broker cluster and the registry
  orderstream topics apply --profile cluster
  orderstream produce --count 10000 --services 4
  orderstream consume --group billing --for 60
  orderstream up --with rabbitmq,nats && orderstream notify --to rabbitmq
  orderstream dlq list
  orderstream watch --group billing
  orderstream schemas check --mode FULL_TRANSITIVE";

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Config file (TOML). Default: ./orderstream.toml when it exists.
    #[arg(long, global = true, env = "ORDERSTREAM_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Kafka bootstrap servers, comma-separated host:port [default: 127.0.0.1:9092].
    #[arg(long, global = true, env = "ORDERSTREAM_BOOTSTRAP")]
    pub(crate) bootstrap: Option<String>,
    /// Confluent-compatible schema registry URL [default: http://127.0.0.1:8081/apis/ccompat/v7].
    #[arg(long, global = true, env = "ORDERSTREAM_REGISTRY_URL")]
    pub(crate) registry_url: Option<String>,
    /// Topic layout file [default: ./topology.toml, else the built-in layout].
    #[arg(long, global = true, env = "ORDERSTREAM_TOPOLOGY")]
    pub(crate) topology: Option<PathBuf>,
    /// Replication profile from the layout: auto, local (1 node) or cluster (3 nodes) [default: auto].
    #[arg(long, global = true, env = "ORDERSTREAM_PROFILE")]
    pub(crate) profile: Option<String>,
    /// Serve Prometheus metrics at this address (e.g. 127.0.0.1:9464) while the command runs.
    #[arg(long, global = true, env = "ORDERSTREAM_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// Check the command line and exit (used by the docs test to keep documented commands valid).
    #[arg(long, global = true, hide = true)]
    pub(crate) parse_only: bool,
    #[command(flatten)]
    pub(crate) security: crate::security::SecurityFlags,
    /// Export spans over OTLP/HTTP to this collector base URL (e.g. http://127.0.0.1:4318;
    /// spans go to URL/v1/traces). Needs a build with the `otlp` feature.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub(crate) otlp_endpoint: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "ORDERSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// How logs are written to stderr (filter with RUST_LOG).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the local Kafka cluster and schema registry (scripts/services.sh up). Needs the
    /// repository's scripts/: in the working directory, in ORDERSTREAM_SCRIPTS_DIR, or in the
    /// source tree this binary was built from.
    Up {
        /// Brokers: 1 (fast) or 3 (RF 3, min ISR 2).
        #[arg(long, default_value_t = 1, value_parser = one_or_three)]
        nodes: u8,
        /// Also start these services (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',')]
        with: Vec<crate::choices::Service>,
        /// Also start a secured Kafka node (SASL_SSL with SCRAM and PLAIN, mutual TLS, ACLs) and a
        /// registry that requires basic auth; `scripts/services.sh env` prints how to reach them.
        #[arg(long)]
        secure: bool,
    },
    /// Stop the local cluster and registry (needs the repository's scripts/, as `up`).
    Down,
    /// Show what runs locally (needs the repository's scripts/, as `up`).
    Status,
    /// Topic layout: apply, describe or diff against topology.toml.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Schemas: offline compatibility check, registry registration, listing.
    #[command(subcommand)]
    Schemas(crate::cmd::schemas::SchemasCommand),
    /// The whole pipeline on the local cluster: produce, consume with a group of 3, live
    /// progress, and a summary proving nothing was lost or applied twice.
    Demo(crate::cmd::demo::DemoArgs),
    /// Publish simulated order lifecycles (N concurrent services) through one idempotent producer.
    Produce(crate::cmd::produce::ProduceArgs),
    /// Run one consumer-group member with the sample order processor.
    Consume(crate::cmd::consume::ConsumeArgs),
    /// Run one consumer-group member that notifies other services of processed order events
    /// over RabbitMQ or NATS JetStream, committing each offset only once its message is confirmed.
    Notify(crate::cmd::notify::NotifyArgs),
    /// Publish the store's outbox (events services recorded in their own transactions) through
    /// the idempotent producer, in order per order; each row marked sent after Kafka acknowledged it.
    Relay(crate::cmd::relay::RelayArgs),
    /// Run one member of the transactional stage: order events become each order's latest
    /// status in the compacted status topic, exactly once (Kafka transactions: outputs, dead
    /// letters and source offsets commit together; read with isolation.level=read_committed).
    Stage(crate::cmd::stage::StageArgs),
    /// Dead letters: list, show, replay.
    Dlq(crate::cmd::dlq::DlqArgs),
    /// Live view of a consumer group: owner, offsets, lag and throughput per partition, and
    /// the latest dead letters (Ctrl-C to stop; --once for one frame).
    Watch(crate::cmd::watch::WatchArgs),
    /// Run the benchmark suite against same-run baselines and write BENCHMARKS.md
    /// (scripts/bench.sh, found as for `up`; e.g. `orderstream bench --quick`).
    Bench {
        /// Arguments for scripts/bench.sh (`--quick`, `--nodes 3`, `-- <orderstream-bench args>`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the effective configuration (secrets masked).
    #[command(subcommand)]
    Config(ConfigCommand),
}

impl Command {
    /// Whether the command moves records for as long as it runs, and so serves metrics at the
    /// configured address. One-shot and offline commands leave the port alone: a config file
    /// shared with the members can name one while `config show` or `schemas check` runs.
    pub(crate) fn serves_metrics(&self) -> bool {
        matches!(
            self,
            Command::Demo(_)
                | Command::Produce(_)
                | Command::Consume(_)
                | Command::Notify(_)
                | Command::Relay(_)
                | Command::Stage(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create missing topics; report drift (exit 3) without changing it unless --fix.
    Apply {
        /// Also repair drifted topic configs (never partition counts or replication).
        #[arg(long)]
        fix: bool,
    },
    /// Compare the cluster with the layout; change nothing; exit 3 on drift.
    Diff,
    /// Show the layout and the live state of each topic.
    Describe,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective settings as TOML.
    Show,
}

/// `--nodes` of `up` and `demo`: the layouts the scripts know.
pub(crate) fn one_or_three(s: &str) -> Result<u8, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err("1 (fast) or 3 (RF 3, min ISR 2)".to_owned()),
    }
}
