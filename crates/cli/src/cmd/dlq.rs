//! `dlq list|show|replay`: inspect and replay the dead-letter topic.

use std::process::ExitCode;
use std::time::Duration;

use orderstream_consumer::headers as h;
use orderstream_consumer::{DeadLetter, ReplayError, ReplaySelection, read_dead_letters, replay};
use orderstream_topology::TopicRole;

use crate::exit;
use crate::settings::Effective;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `dlq` and what all its subcommands share.
#[derive(Debug, clap::Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    pub(crate) cmd: DlqCommand,
    /// Group id the dead-letter reader names (it never joins it nor commits): on a cluster with
    /// ACLs, a group your principal may READ. Default: a throw-away `orderstream-replay-…` id.
    #[arg(long, global = true, env = "ORDERSTREAM_DLQ_READER_GROUP")]
    pub(crate) reader_group: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DlqCommand {
    /// One line per dead letter: where it came from and why.
    List {
        /// Only this dead-letter partition.
        #[arg(long)]
        partition: Option<i32>,
        /// Only the dead letters this consumer group gave up on.
        #[arg(long)]
        group: Option<String>,
    },
    /// Every header and the value of one dead letter.
    Show {
        /// Dead-letter partition.
        partition: i32,
        /// Dead-letter offset.
        offset: i64,
    },
    /// Re-send dead letters, same key, original headers: to their source topic and partition,
    /// or (`--into retry`) parked in the retry topic for the group that gave up on each.
    Replay {
        /// Only this dead-letter partition.
        #[arg(long)]
        partition: Option<i32>,
        /// Only the dead letters this consumer group gave up on.
        #[arg(long)]
        group: Option<String>,
        /// Where they go. `source`: every group on the source topic sees them again. `retry`
        /// (with `--group`): only that group handles them, with a fresh retry budget; it must
        /// be a group whose members read the retry topic.
        #[arg(long, value_enum, default_value_t = crate::choices::ReplayInto::Source)]
        into: crate::choices::ReplayInto,
        /// First dead-letter offset (inclusive).
        #[arg(long)]
        from: Option<i64>,
        /// Last dead-letter offset (exclusive).
        #[arg(long)]
        to: Option<i64>,
    },
}

fn text(v: Option<&[u8]>) -> String {
    match v {
        None => "<null>".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
        },
    }
}

fn line(l: &DeadLetter) -> String {
    let get = |k| l.header(k).unwrap_or_else(|| "-".into());
    format!(
        "{:>3}:{:<8} key={:<24} from {}/{}@{} group={} class={} attempts={} error={}",
        l.partition,
        l.offset,
        text(l.key.as_deref()),
        get(h::DLQ_SOURCE_TOPIC),
        get(h::DLQ_SOURCE_PARTITION),
        get(h::DLQ_SOURCE_OFFSET),
        get(h::DLQ_GROUP),
        get(h::DLQ_ERROR_CLASS),
        get(h::DLQ_ATTEMPTS),
        get(h::DLQ_ERROR_MESSAGE),
    )
}

/// A selection the topic cannot satisfy is invalid input (exit 2), not a failure.
fn refused_selection(e: ReplayError) -> anyhow::Error {
    match e {
        ReplayError::Selection { .. } => exit::UsageError::of(&e).into(),
        e => e.into(),
    }
}

pub(crate) async fn run(settings: &Effective, args: DlqArgs) -> anyhow::Result<ExitCode> {
    let DlqArgs { cmd, reader_group } = args;
    crate::cmd::topics::connect_admin(settings)?;
    let topic = settings
        .topology()?
        .topic(TopicRole::DeadLetter)
        .name
        .clone();
    match cmd {
        DlqCommand::List { partition, group } => {
            let sel = ReplaySelection {
                partitions: partition.map(|p| vec![p]),
                group,
                reader_group: reader_group.clone(),
                ..ReplaySelection::default()
            };
            let letters = read_dead_letters(&settings.client_config(), &topic, &sel, TIMEOUT)
                .await
                .map_err(refused_selection)?;
            for l in &letters {
                println!("{}", line(l));
            }
            println!("{} dead letter(s) in {topic}", letters.len());
            Ok(exit::SUCCESS)
        }
        DlqCommand::Show { partition, offset } => {
            let sel = ReplaySelection {
                partitions: Some(vec![partition]),
                from_offset: Some(offset),
                to_offset: Some(offset + 1),
                reader_group: reader_group.clone(),
                ..ReplaySelection::default()
            };
            let letters = read_dead_letters(&settings.client_config(), &topic, &sel, TIMEOUT)
                .await
                .map_err(refused_selection)?;
            let Some(l) = letters.first() else {
                return Err(exit::UsageError(format!(
                    "no dead letter at {topic} partition {partition} offset {offset}"
                ))
                .into());
            };
            println!("dead letter {topic}/{}@{}", l.partition, l.offset);
            println!("key: {}", text(l.key.as_deref()));
            for (k, v) in &l.headers {
                println!("header {k}: {}", text(v.as_deref()));
            }
            let payload = l.payload.as_deref().unwrap_or_default();
            println!(
                "value ({} bytes): {}",
                payload.len(),
                payload
                    .iter()
                    .take(64)
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
            );
            Ok(exit::SUCCESS)
        }
        DlqCommand::Replay {
            partition,
            group,
            into,
            from,
            to,
        } => {
            if into == crate::choices::ReplayInto::Retry && group.is_none() {
                return Err(exit::UsageError(
                    "--into retry needs --group: the group whose members read the retry topic and will handle the parked copies (the transactional stage, for one, reads no retry topic)".to_owned(),
                )
                .into());
            }
            let into_retry = (into == crate::choices::ReplayInto::Retry).then(|| {
                settings
                    .topology()
                    .map(|t| t.topic(TopicRole::Retry).name.clone())
            });
            let sel = ReplaySelection {
                partitions: partition.map(|p| vec![p]),
                group,
                into_retry: into_retry.transpose()?,
                from_offset: from,
                to_offset: to,
                reader_group: reader_group.clone(),
                ..ReplaySelection::default()
            };
            let summary = replay(&settings.client_config(), &topic, &sel, TIMEOUT)
                .await
                .map_err(refused_selection)?;
            println!(
                "read {} dead letter(s), skipped {}",
                summary.read, summary.skipped
            );
            for ((t, p), n) in &summary.replayed {
                println!("replayed {n} to {t} partition {p}");
            }
            Ok(exit::SUCCESS)
        }
    }
}
