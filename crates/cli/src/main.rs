//! `orderstream`: the command-line entry point.

mod choices;
mod cli;
mod cmd;
mod exit;
mod metrics_endpoint;
mod progress;
mod security;
mod settings;
mod signals;
mod telemetry;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

// The consumer hands every record from its poll thread to a partition owner on another thread,
// which frees it: glibc's malloc serialises such cross-thread frees on its arena lock (half the
// drain rate and 4x the context switches in the consumer drain benchmark); mimalloc's per-thread heaps do
// not. Its `override` feature (workspace Cargo.toml) routes librdkafka's malloc/free there too:
// the producer's per-record messages and headers are freed on librdkafka's polling thread.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command};
use crate::settings::{Effective, FileConfig};

fn main() -> std::process::ExitCode {
    let mut matches = Cli::command().get_matches();
    // (read before the values are taken out of `matches`)
    let endpoint_from_env = matches.value_source("otlp_endpoint") == Some(ValueSource::EnvVariable);
    let cli = match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    // (a parse-only check exports nothing)
    let endpoint = cli.global.otlp_endpoint.as_deref();
    let endpoint = endpoint
        .filter(|_| !cli.global.parse_only)
        .map(|url| telemetry::Endpoint {
            url,
            from_env: endpoint_from_env,
        });
    let telemetry = match telemetry::init(cli.global.log_format, endpoint) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}", orderstream_schema::error_chain(e.as_ref()));
            return exit::code_for(&e);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", orderstream_schema::error_chain(e.as_ref()));
            exit::code_for(&e)
        }
    };
    telemetry.shutdown();
    code
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if cli.global.parse_only {
        return Ok(exit::SUCCESS);
    }
    let file = FileConfig::load(cli.global.config.as_deref())?;
    let settings = Effective::resolve(&cli.global, file)?;
    if let Some(addr) = settings
        .metrics_addr
        .as_ref()
        .filter(|_| cli.command.serves_metrics())
    {
        metrics_endpoint::serve(addr)?;
    }
    match cli.command {
        Command::Up {
            nodes,
            with,
            secure,
        } => cmd::services::up(nodes, &with, secure),
        Command::Down => cmd::services::down(),
        Command::Status => cmd::services::status(),
        Command::Bench { args } => cmd::services::bench(&args),
        Command::Topics(c) => cmd::topics::run(&settings, c).await,
        Command::Schemas(c) => cmd::schemas::run(&settings, c).await,
        Command::Demo(a) => cmd::demo::run(&settings, a).await,
        Command::Produce(a) => cmd::produce::run(&settings, a).await,
        Command::Consume(a) => cmd::consume::run(&settings, a).await,
        Command::Notify(a) => cmd::notify::run(&settings, a).await,
        Command::Relay(a) => cmd::relay::run(&settings, a).await,
        Command::Stage(a) => cmd::stage::run(&settings, a).await,
        Command::Dlq(c) => cmd::dlq::run(&settings, c).await,
        Command::Watch(a) => cmd::watch::run(&settings, a).await,
        Command::Config(cli::ConfigCommand::Show) => {
            print!("{}", settings.masked_toml()?);
            Ok(exit::SUCCESS)
        }
    }
}
