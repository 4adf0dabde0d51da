//! `topics apply|diff|describe`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use orderstream_producer::diagnosis::{LastBrokerError, Refusal, refusal_verb};
use orderstream_topology::{ApplyMode, ProfileChoice, TopicRole, apply, live_partition_count};
use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::cli::TopicsCommand;
use crate::exit;
use crate::settings::Effective;

/// A client context that remembers why connections failed: librdkafka reports a refused
/// password or an untrusted certificate only through this callback, while the metadata call
/// just times out.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeContext {
    last: Arc<LastBrokerError>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.last.record(error.rdkafka_error_code(), reason);
        tracing::debug!(error = %error, %reason, "librdkafka connection error");
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.last.record_log(fac, log_message);
        DefaultClientContext.log(level, fac, log_message);
    }
}

// The probe is a producer that never sends: polling it is what runs the error callback (an
// admin client's own thread polls only its admin queue).
impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
}

/// Why the brokers turned `settings` away, as a usage error (exit 2): retrying the same
/// credentials or CA cannot help.
pub(crate) fn refused(settings: &Effective, refusal: &Refusal) -> anyhow::Error {
    exit::UsageError(format!(
        "Kafka at {} {}: {} — check the [security] settings",
        settings.bootstrap,
        refusal_verb(refusal.code),
        refusal.reason
    ))
    .into()
}

/// Connects an admin client and counts the brokers, failing clearly when none answers or the
/// brokers refuse the client.
pub(crate) fn connect_admin(
    settings: &Effective,
) -> anyhow::Result<(AdminClient<DefaultClientContext>, usize)> {
    let ctx = ProbeContext::default();
    let probe: BaseProducer<ProbeContext> = settings
        .client_config()
        .create_with_context(ctx.clone())
        .context("invalid Kafka client settings")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Short attempts, so that a refusal ends the wait early.
        let md = probe.client().fetch_metadata(None, Duration::from_secs(1));
        probe.poll(Duration::from_millis(100));
        if let Some(refusal) = ctx.last.refusal() {
            return Err(refused(settings, &refusal));
        }
        match md {
            Ok(md) => {
                let admin: AdminClient<DefaultClientContext> = settings
                    .client_config()
                    .create()
                    .context("invalid Kafka client settings")?;
                return Ok((admin, md.brokers().len()));
            }
            Err(e) if Instant::now() >= deadline => {
                let said = ctx
                    .last
                    .reason()
                    .map(|r| format!(" (last broker error: {r})"))
                    .unwrap_or_default();
                return Err(anyhow::Error::new(e).context(format!(
                    "Kafka is not reachable at {}{said} — is the cluster running? Start it with `orderstream up` (or scripts/services.sh up)",
                    settings.bootstrap
                )));
            }
            Err(_) => {}
        }
    }
}

pub(crate) async fn run(settings: &Effective, cmd: TopicsCommand) -> anyhow::Result<ExitCode> {
    let topology = settings.topology()?;
    let (admin, brokers) = connect_admin(settings)?;
    let choice = ProfileChoice::from(settings.profile.as_str());
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
