//! `schemas check|register|list`: the order-event schema versions in `schemas/` against the
//! offline checker and the real registry.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orderstream_schema::compat::Mode;
use orderstream_schema::registry_admin::{AdminError, RegistryAdmin};
use orderstream_schema::{SubjectStrategy, check_versions, versions};

use crate::exit;
use crate::settings::Effective;

/// Arguments shared by the schema commands.
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    /// Compatibility mode: BACKWARD, FORWARD, FULL, their _TRANSITIVE forms, or NONE.
    #[arg(
        long,
        env = "ORDERSTREAM_COMPATIBILITY",
        default_value = "FULL_TRANSITIVE"
    )]
    pub(crate) mode: String,
    /// Registry subject strategy: topic-name, record-name or topic-record-name.
    #[arg(
        long,
        env = "ORDERSTREAM_SUBJECT_STRATEGY",
        default_value = "topic-name"
    )]
    pub(crate) subject_strategy: String,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SchemasCommand {
    /// Check every version in schemas/ under a mode, offline; with --registry, also ask the
    /// registry about each version against what it holds (nothing is registered).
    Check {
        #[command(flatten)]
        args: SchemaArgs,
        /// Also ask the registry (the configured --registry-url).
        #[arg(long)]
        registry: bool,
    },
    /// Set the subject's compatibility level and register every version in order (idempotent).
    Register {
        #[command(flatten)]
        args: SchemaArgs,
    },
    /// List the registry's subjects and their versions.
    List,
}

fn parse(args: &SchemaArgs) -> anyhow::Result<(Mode, SubjectStrategy)> {
    let mode: Mode = args
        .mode
        .parse()
        .map_err(|e| exit::UsageError(format!("--mode: {e}")))?;
    let strategy: SubjectStrategy = args
        .subject_strategy
        .parse()
        .map_err(|e| exit::UsageError(format!("--subject-strategy: {e}")))?;
    Ok((mode, strategy))
}

fn admin(settings: &Effective) -> anyhow::Result<RegistryAdmin> {
    Ok(RegistryAdmin::new(
        &settings.registry_url,
        Duration::from_secs(10),
    )?)
}

pub(crate) async fn run(settings: &Effective, cmd: SchemasCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemasCommand::Check { args, registry } => {
            let (mode, strategy) = parse(&args)?;
            let report = check_versions(mode);
            println!("{report}");
            let mut ok = report.is_ok();
            if registry {
                ok &= check_online(settings, mode, strategy).await?;
            }
            Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
        }
        SchemasCommand::Register { args } => {
            let (mode, strategy) = parse(&args)?;
            register(settings, mode, strategy).await
        }
        SchemasCommand::List => {
            let admin = admin(settings)?;
            for subject in admin.list_subjects().await? {
                let versions = admin.versions(&subject).await?;
                println!("{subject}: versions {versions:?}");
            }
            Ok(exit::SUCCESS)
        }
    }
}

fn subject(settings: &Effective, strategy: SubjectStrategy) -> anyhow::Result<String> {
    let topic = settings
        .topology()?
        .topic(orderstream_topology::TopicRole::Orders)
        .name
        .clone();
    Ok(strategy.subject(&topic))
}

async fn check_online(
    settings: &Effective,
    mode: Mode,
    strategy: SubjectStrategy,
) -> anyhow::Result<bool> {
    let admin = admin(settings)?;
    let subject = subject(settings, strategy)?;
    let level = admin.get_compatibility(&subject).await?;
    println!(
        "registry {} subject {subject} (level {}):",
        settings.registry_url,
        level.as_deref().unwrap_or("registry default")
    );
    if level.as_deref().is_some_and(|l| l != mode.as_str()) {
        println!(
            "  note: the subject's level differs from --mode {mode}; the registry judges by its own level"
        );
    }
    let mut ok = true;
    for v in versions() {
        let verdict = admin.test_compatibility(&subject, v.text).await?;
        ok &= verdict;
        println!(
            "  v{:<3} {}",
            v.version,
            if verdict {
                "compatible"
            } else {
                "INCOMPATIBLE"
            }
        );
    }
    Ok(ok)
}

/// Registers every version under the default mode and strategy (used by `demo`).
pub(crate) async fn register_all(settings: &Effective) -> anyhow::Result<()> {
    let code = register(settings, Mode::FullTransitive, SubjectStrategy::TopicName).await?;
    if code != exit::SUCCESS {
        anyhow::bail!("the registry refused a schema version (see above)");
    }
    Ok(())
}

async fn register(
    settings: &Effective,
    mode: Mode,
    strategy: SubjectStrategy,
) -> anyhow::Result<ExitCode> {
    let report = check_versions(mode);
    if !report.is_ok() {
        println!("{report}");
        anyhow::bail!("offline check failed under {mode}: fix schemas/ before registering");
    }
    let admin = admin(settings)?;
    let subject = subject(settings, strategy)?;
    admin
        .set_compatibility(&subject, mode)
        .await
        .with_context(|| format!("set compatibility {mode} on {subject}"))?;
    for v in versions() {
        match admin.register(&subject, v.text).await {
            Ok(id) => println!("{subject} v{} ({}) -> schema id {id}", v.version, v.path),
            Err(e @ AdminError::Incompatible { .. }) => {
                eprintln!("{e}");
                return Ok(exit::FAILURE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(exit::SUCCESS)
}
