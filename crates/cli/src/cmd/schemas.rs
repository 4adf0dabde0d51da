//! `schemas check|diff|register|list`: the order-event schema versions, read from disk when the
//! command runs (so a proposed version is judged before any Rust code changes), against the
//! offline checker and the real registry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orderstream_schema::catalog::{Catalog, ORDER_EVENT_STEM};
use orderstream_schema::compat::Mode;
use orderstream_schema::registry_admin::{AdminError, RegistryAdmin};
use orderstream_schema::{SubjectStrategy, diff};

use crate::choices::{Compat, Subjects};
use crate::exit;
use crate::settings::Effective;

/// Where the versions come from.
#[derive(Debug, clap::Args)]
pub(crate) struct Source {
    /// Version files to judge, in any order, each named `<name>.v<N>.avsc` and numbered without
    /// gaps (default: every `order_event.v<N>.avsc` in --schemas-dir).
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Directory holding order_event.v1.avsc, order_event.v2.avsc, ...
    #[arg(long, env = "ORDERSTREAM_SCHEMAS_DIR", default_value = "schemas")]
    pub(crate) schemas_dir: PathBuf,
    /// A proposed next version (any file name), judged after the others.
    #[arg(long, value_name = "FILE")]
    pub(crate) candidate: Option<PathBuf>,
    /// Judge the versions built into this binary instead of files.
    #[arg(long, conflicts_with_all = ["files", "candidate"])]
    pub(crate) embedded: bool,
}

/// Arguments shared by the schema commands that judge versions.
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    /// Compatibility mode (Confluent's names, any case).
    #[arg(
        long,
        env = "ORDERSTREAM_COMPATIBILITY",
        value_enum,
        ignore_case = true,
        default_value_t = Compat::FullTransitive
    )]
    pub(crate) mode: Compat,
    /// Registry subject strategy.
    #[arg(
        long,
        env = "ORDERSTREAM_SUBJECT_STRATEGY",
        value_enum,
        default_value_t = Subjects::TopicName
    )]
    pub(crate) subject_strategy: Subjects,
    #[command(flatten)]
    pub(crate) source: Source,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SchemasCommand {
    /// Check the versions in schemas/ (or the files given) under a mode, offline, naming the
    /// field and rule behind every failure; with --registry, also ask the registry whether
    /// each version fits what it holds for the subject (nothing is registered).
    Check {
        #[command(flatten)]
        args: SchemaArgs,
        /// Also ask the registry (the configured --registry-url).
        #[arg(long)]
        registry: bool,
    },
    /// Show what changed between two versions, field by field.
    Diff {
        #[command(flatten)]
        source: Source,
        /// The older version, `3` or `v3` [default: the one before --to].
        #[arg(long, value_parser = version_number)]
        from: Option<u32>,
        /// The newer version, `3` or `v3` [default: the latest].
        #[arg(long, value_parser = version_number)]
        to: Option<u32>,
    },
    /// Check offline, set the subject's compatibility level and register every version in
    /// order (idempotent).
    Register {
        #[command(flatten)]
        args: SchemaArgs,
    },
    /// List the registry's subjects and their versions.
    List,
}

fn parse(args: &SchemaArgs) -> anyhow::Result<(Mode, SubjectStrategy)> {
    Ok((args.mode.into(), args.subject_strategy.into()))
}

/// Reads the versions; every problem with the files is the user's to fix (exit 2).
fn load(source: &Source) -> anyhow::Result<Catalog> {
    if source.embedded {
        return Ok(Catalog::embedded());
    }
    let usage = |e: orderstream_schema::catalog::CatalogError| exit::UsageError::of(&e);
    let catalog = if source.files.is_empty() {
        if !source.schemas_dir.is_dir() {
            return Err(exit::UsageError(format!(
                "no schemas directory at {} (run from the repository root, pass --schemas-dir or the files, or --embedded for the versions built into this binary)",
                source.schemas_dir.display()
            ))
            .into());
        }
        Catalog::load_dir(&source.schemas_dir, ORDER_EVENT_STEM).map_err(usage)?
    } else {
        Catalog::load_files(&source.files).map_err(usage)?
    };
    match &source.candidate {
        Some(path) => Ok(catalog.with_candidate(path).map_err(usage)?),
        None => Ok(catalog),
    }
}

fn print_versions(catalog: &Catalog, source: &Source) {
    println!("versions:");
    for v in catalog.versions() {
        let tag = if source.candidate.as_deref() == Some(v.path.as_path()) {
            " (candidate)"
        } else {
            ""
        };
        println!("  v{:<3} {}{tag}", v.version, v.path.display());
    }
    if source.embedded {
        return;
    }
    // The binary's codec resolves every writer into the version its types follow: say how the
    // files relate to it, so nobody mistakes a passing check for a rebuilt contract.
    let built = Catalog::embedded();
    for v in catalog.versions() {
        if let Some(b) = built.get(v.version)
            && b.schema.canonical_form() != v.schema.canonical_form()
        {
            println!(
                "  warning: {} differs from the v{} built into this binary (a registered version must never change; add a new one)",
                v.path.display(),
                v.version
            );
        }
    }
    if let (Some(disk), Some(types)) = (catalog.latest(), built.latest())
        && disk.version > types.version
    {
        let newer = if disk.version == types.version + 1 {
            format!("v{}", disk.version)
        } else {
            format!("v{}..v{}", types.version + 1, disk.version)
        };
        println!(
            "  note: this binary's types follow v{}; data written with {newer} is read by schema resolution",
            types.version
        );
    }
}

/// Fails fast when the registry refuses the configured credentials or its certificate is not
/// trusted, before a producer encodes (every event would fail) or a consumer decodes (every
/// record would be retried). A registry that does not answer is only warned about: that may
/// heal, and a long-running command (relay, consume) keeps what it could not send or decode
/// for later. A fixed run (`produce`) uses [`require_registry`].
pub(crate) async fn check_registry(settings: &Effective) -> anyhow::Result<()> {
    match registry_answer(settings).await? {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(registry = %settings.registry_url, error = %e, "the schema registry does not answer yet");
            Ok(())
        }
    }
}

/// [`check_registry`] for a run that can do nothing without the registry (`produce` encodes
/// every event with it and ends): a registry that does not answer is an error as well.
pub(crate) async fn require_registry(settings: &Effective) -> anyhow::Result<()> {
    registry_answer(settings).await?.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "the schema registry at {} does not answer: events cannot be encoded, nothing was sent",
            settings.registry_url
        ))
    })
}

/// One request to the registry: `Err` when it refuses us (credentials, certificate), `Ok(Err)`
/// when it does not answer.
async fn registry_answer(settings: &Effective) -> anyhow::Result<Result<(), AdminError>> {
    let refused = |e: AdminError| {
        anyhow::Error::new(e).context(format!(
            "the schema registry at {} cannot be used",
            settings.registry_url
        ))
    };
    match admin(settings)?.list_subjects().await {
        Ok(_) => Ok(Ok(())),
        Err(e @ AdminError::Unauthorized { .. }) => Err(refused(e)),
        // rustls says "invalid peer certificate": a trust problem does not heal by waiting.
        Err(e @ AdminError::Unreachable { .. }) if e.to_string().contains("certificate") => {
            Err(refused(e))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// A schema version as the commands print it (`v3`) or as a number (`3`).
fn version_number(s: &str) -> Result<u32, String> {
    s.strip_prefix(['v', 'V'])
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("`{s}` is not a schema version (e.g. 3 or v3)"))
}

fn admin(settings: &Effective) -> anyhow::Result<RegistryAdmin> {
    Ok(RegistryAdmin::with_access(
        &settings.registry_url,
        Duration::from_secs(10),
        &settings.registry_access(),
    )?)
}

pub(crate) async fn run(settings: &Effective, cmd: SchemasCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemasCommand::Check { args, registry } => {
            let (mode, strategy) = parse(&args)?;
            let catalog = load(&args.source)?;
            print_versions(&catalog, &args.source);
            let report = catalog.report(mode);
            println!("{report}");
            let mut ok = report.is_ok();
            if registry {
                ok &= check_online(settings, &catalog, mode, strategy).await?;
            }
            Ok(if ok { exit::SUCCESS } else { exit::FAILURE })
        }
        SchemasCommand::Diff { source, from, to } => diff_versions(&source, from, to),
        SchemasCommand::Register { args } => {
            let (mode, strategy) = parse(&args)?;
            let catalog = load(&args.source)?;
            register(settings, &catalog, mode, strategy).await
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

fn diff_versions(source: &Source, from: Option<u32>, to: Option<u32>) -> anyhow::Result<ExitCode> {
    let catalog = load(source)?;
    let latest = catalog.latest().map_or(0, |v| v.version);
    let to = to.unwrap_or(latest);
    let from = from.unwrap_or(to.saturating_sub(1));
    let pick = |n: u32| {
        catalog.get(n).ok_or_else(|| {
            exit::UsageError(format!(
                "no version v{n} (have v1..v{latest}{})",
                if latest < 2 { "; a diff needs two" } else { "" }
            ))
        })
    };
    let (old, new) = (pick(from)?, pick(to)?);
    println!(
        "v{from} ({}) -> v{to} ({}):",
        old.path.display(),
        new.path.display()
    );
    let changes = diff::diff(&old.schema, &new.schema);
    if changes.is_empty() {
        println!("  no field-level changes");
    }
    for c in changes {
        println!("  {c}");
    }
    Ok(exit::SUCCESS)
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
    catalog: &Catalog,
    mode: Mode,
    strategy: SubjectStrategy,
) -> anyhow::Result<bool> {
    let admin = admin(settings)?;
    let subject = subject(settings, strategy)?;
    let level = admin.get_compatibility(&subject).await?;
    let held = match admin.versions(&subject).await {
        Ok(v) => v,
        Err(AdminError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    println!(
        "registry {} subject {subject} (level {}, holds versions {held:?}):",
        settings.registry_url,
        level.as_deref().unwrap_or("registry default")
    );
    if level.as_deref().is_some_and(|l| l != mode.as_str()) {
        println!(
            "  note: the subject's level differs from --mode {mode}; the registry judges by its own level"
        );
    }
    let mut ok = true;
    for v in catalog.versions() {
        let verdict = admin.test_compatibility(&subject, &v.text).await?;
        ok &= verdict;
        println!(
            "  v{:<3} {:<40} {}",
            v.version,
            v.path.display().to_string(),
            if verdict {
                "compatible"
            } else {
                "INCOMPATIBLE"
            }
        );
    }
    Ok(ok)
}

/// Registers the versions built into this binary under the default mode and strategy (used by
/// `demo`, which must work wherever the binary is, without a schemas/ directory).
pub(crate) async fn register_all(settings: &Effective) -> anyhow::Result<()> {
    let code = register(
        settings,
        &Catalog::embedded(),
        Mode::FullTransitive,
        SubjectStrategy::TopicName,
    )
    .await?;
    if code != exit::SUCCESS {
        anyhow::bail!("the registry refused a schema version (see above)");
    }
    Ok(())
}

async fn register(
    settings: &Effective,
    catalog: &Catalog,
    mode: Mode,
    strategy: SubjectStrategy,
) -> anyhow::Result<ExitCode> {
    let report = catalog.report(mode);
    if !report.is_ok() {
        println!("{report}");
        anyhow::bail!("offline check failed under {mode}: fix the schema files before registering");
    }
    let admin = admin(settings)?;
    let subject = subject(settings, strategy)?;
    admin
        .set_compatibility(&subject, mode)
        .await
        .with_context(|| format!("set compatibility {mode} on {subject}"))?;
    for v in catalog.versions() {
        match admin.register(&subject, &v.text).await {
            Ok(id) => println!(
                "{subject} v{} ({}) -> schema id {id}",
                v.version,
                v.path.display()
            ),
            Err(e @ AdminError::Incompatible { .. }) => {
                eprintln!("{e}");
                return Ok(exit::FAILURE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_a_usage_error() {
        let source = Source {
            files: Vec::new(),
            schemas_dir: PathBuf::from("/nonexistent/schemas"),
            candidate: None,
            embedded: false,
        };
        let err = load(&source).expect_err("must fail");
        assert!(err.to_string().contains("no schemas directory"), "{err}");
        assert_eq!(exit::code_for(&err), ExitCode::from(exit::CONFIG));
    }
}
