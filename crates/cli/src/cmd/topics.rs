//! `topics apply|diff|describe`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orderstream_topology::{ApplyMode, ProfileChoice, TopicRole, apply, live_partition_count};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::cli::TopicsCommand;
use crate::exit;
use crate::settings::Effective;

/// Connects an admin client and counts the brokers, failing clearly when none answers.
pub(crate) fn connect_admin(
    settings: &Effective,
) -> anyhow::Result<(AdminClient<DefaultClientContext>, usize)> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .context("invalid Kafka client settings")?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| {
            format!(
                "Kafka is not reachable at {} — is the cluster running? Start it with `orderstream up` (or scripts/services.sh up)",
                settings.bootstrap
            )
        })?;
    Ok((admin, md.brokers().len()))
}

pub(crate) async fn run(settings: &Effective, cmd: TopicsCommand) -> anyhow::Result<ExitCode> {
    let topology = settings.topology()?;
    let (admin, brokers) = connect_admin(settings)?;
    let choice: ProfileChoice = settings.profile.parse().unwrap_or(ProfileChoice::Auto);
    let (profile_name, profile) = topology.resolve_profile(&choice, brokers)?;
    if usize::try_from(profile.replication_factor).unwrap_or(usize::MAX) > brokers {
        return Err(exit::UsageError(format!(
            "profile `{profile_name}` wants replication factor {} but the cluster has {brokers} broker(s)",
            profile.replication_factor
        ))
        .into());
    }
    let mode = match cmd {
        TopicsCommand::Apply { fix: true } => ApplyMode::Fix,
        TopicsCommand::Apply { fix: false } => ApplyMode::Create,
        TopicsCommand::Diff => ApplyMode::Check,
        TopicsCommand::Describe => return describe(&admin, &topology, &profile_name, brokers),
    };
    let report = apply(&admin, &topology, &profile_name, profile, mode).await?;
    print!("{report}");
    if report.out_of_sync() {
        eprintln!(
            "the cluster does not match the layout (see drift above); `topics apply --fix` repairs configs, partition counts and replication need a planned migration"
        );
        return Ok(ExitCode::from(exit::DRIFT));
    }
    Ok(exit::SUCCESS)
}

fn describe(
    admin: &AdminClient<DefaultClientContext>,
    topology: &orderstream_topology::Topology,
    profile: &str,
    brokers: usize,
) -> anyhow::Result<ExitCode> {
    println!("brokers: {brokers}   profile: {profile}");
    println!(
        "{:<12} {:<40} {:>10} {:>6} {:>4} {:>14}  cleanup",
        "role", "topic", "partitions", "live", "rf", "retention_ms"
    );
    for role in TopicRole::ALL {
        let spec = topology.topic(role);
        let live = live_partition_count(admin.inner(), &spec.name, Duration::from_secs(10))?;
        let (lp, rf) = live.map_or(("-".to_owned(), "-".to_owned()), |(p, r)| {
            (p.to_string(), r.to_string())
        });
        println!(
            "{:<12} {:<40} {:>10} {:>6} {:>4} {:>14}  {}",
            role.as_str(),
            spec.name,
            spec.partitions,
            lp,
            rf,
            spec.retention_ms,
            spec.cleanup_policy
        );
    }
    Ok(exit::SUCCESS)
}
