//! `watch`: a terminal live view of one consumer group on the layout's orders topic — owner per
//! partition (from the members' assignments), high watermark, committed offset, lag,
//! throughput, and the latest dead letters. Refreshes every `--interval` until Ctrl-C, or prints
//! one frame with `--once`.

mod assignment;
mod frame;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orderstream_consumer::headers as h;
use orderstream_consumer::{ReplaySelection, read_dead_letters};
use orderstream_topology::TopicRole;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use self::frame::{GroupSample, LetterRow, MemberSample, PartitionSample, Sample};
use crate::exit;
use crate::settings::Effective;

/// Per-request timeout: short, so a frame never hangs for long on a sick cluster.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Dead letters shown.
const LATEST: usize = 5;

/// Options of `watch`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  orderstream watch                              # the default group, refreshed every second
  orderstream watch --group billing --interval 5
  orderstream watch --once | grep totals         # one plain-text frame, for scripts")]
pub(crate) struct WatchArgs {
    /// Consumer group to watch.
    #[arg(long, env = "ORDERSTREAM_GROUP", default_value = "orderstream-orders")]
    pub(crate) group: String,
    /// Seconds between refreshes (fractions allowed, e.g. 0.5).
    #[arg(long, env = "ORDERSTREAM_WATCH_INTERVAL", default_value = "1", value_parser = parse_interval)]
    pub(crate) interval: Duration,
    /// Print one frame (no screen clearing) and exit.
    #[arg(long, env = "ORDERSTREAM_WATCH_ONCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) once: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{secs} s is outside 0.1..=3600"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Low and high watermarks per partition.
type Marks = BTreeMap<i32, (i64, i64)>;

/// Reads the group, the topic's offsets and the dead-letter watermarks (blocking calls).
fn sample(
    consumer: &BaseConsumer,
    group: &str,
    topic: &str,
    dlq: &str,
) -> (Sample, Result<Marks, String>) {
    // Serve queued client events (logs, errors) of this never-subscribed consumer.
    let _ = consumer.poll(Duration::ZERO);
    let at = Instant::now();
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT);
    let brokers = md
        .as_ref()
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string());
    let group_sample = consumer
        .fetch_group_list(Some(group), TIMEOUT)
        .map(|list| {
            list.groups()
                .iter()
                .find(|g| g.name() == group)
                .map(|g| GroupSample {
                    state: g.state().to_owned(),
                    protocol: g.protocol().to_owned(),
                    members: g
                        .members()
                        .iter()
                        .map(|m| MemberSample {
                            member_id: m.id().to_owned(),
                            client_id: m.client_id().to_owned(),
                            host: m.client_host().to_owned(),
                            assignment: m.assignment().unwrap_or_default().to_vec(),
                        })
                        .collect(),
                })
        })
        .map_err(|e| e.to_string());
    let partitions = md.map_err(|e| e.to_string()).and_then(|md| {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| "not in the cluster metadata".to_owned())?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err("does not exist — create it with `orderstream topics apply`".to_owned());
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        let mut tpl = TopicPartitionList::new();
        for p in &ids {
            tpl.add_partition(topic, *p);
        }
        let committed: BTreeMap<i32, i64> = consumer
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|e| format!("committed offsets of group {group}: {e}"))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        Ok(ids
            .iter()
            .map(|&p| PartitionSample {
                partition: p,
                high: consumer
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .ok()
                    .map(|(_, h)| h),
                committed: committed.get(&p).copied(),
            })
            .collect())
    });
    let dlq_marks = consumer
        .fetch_metadata(Some(dlq), TIMEOUT)
        .map_err(|e| e.to_string())
        .and_then(|md| {
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == dlq && t.error().is_none())
                .ok_or_else(|| format!("topic {dlq} does not exist"))?;
            t.partitions()
                .iter()
                .map(|p| {
                    consumer
                        .fetch_watermarks(dlq, p.id(), TIMEOUT)
                        .map(|w| (p.id(), w))
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
    (
        Sample {
            at,
            brokers,
            group: group_sample,
            partitions,
        },
        dlq_marks,
    )
}

/// The latest dead letters, re-read only when the dead-letter watermarks move.
#[derive(Debug)]
struct Letters {
    marks: Option<Marks>,
    rows: Result<Vec<LetterRow>, String>,
}

impl Letters {
    fn new() -> Letters {
        Letters {
            marks: None,
            rows: Ok(Vec::new()),
        }
    }

    async fn refresh(
        &mut self,
        client: &rdkafka::ClientConfig,
        dlq: &str,
        marks: Result<Marks, String>,
    ) {
        let marks = match marks {
            Ok(m) => m,
            Err(e) => {
                self.marks = None;
                self.rows = Err(e);
                return;
            }
        };
        if self.marks.as_ref() == Some(&marks) {
            return;
        }
        // The last LATEST records of each non-empty partition: one cheap read per partition.
        let reads = marks
            .iter()
            .filter(|(_, (low, high))| high > low)
            .map(|(&p, &(low, high))| {
                let sel = ReplaySelection {
                    partitions: Some(vec![p]),
                    from_offset: Some((high - LATEST as i64).max(low)),
                    ..ReplaySelection::default()
                };
                async move { read_dead_letters(client, dlq, &sel, TIMEOUT * 2).await }
            });
        let mut rows = Vec::new();
        for r in futures::future::join_all(reads).await {
            match r {
                Ok(ls) => rows.extend(ls.iter().map(|l| {
                    let get = |k| l.header(k).unwrap_or_else(|| "-".to_owned());
                    LetterRow {
                        partition: l.partition,
                        offset: l.offset,
                        class: get(h::DLQ_ERROR_CLASS),
                        message: get(h::DLQ_ERROR_MESSAGE),
                        source: format!(
                            "{}/{}@{}",
                            get(h::DLQ_SOURCE_TOPIC),
                            get(h::DLQ_SOURCE_PARTITION),
                            get(h::DLQ_SOURCE_OFFSET)
                        ),
                        timestamp: l
                            .header(h::DLQ_SOURCE_TIMESTAMP)
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0),
                    }
                })),
                Err(e) => {
                    // Show why, and read again on the next frame.
                    self.marks = None;
                    self.rows = Err(e.to_string());
                    return;
                }
            }
        }
        rows.sort_by(|a, b| {
            (b.timestamp, b.offset, b.partition).cmp(&(a.timestamp, a.offset, a.partition))
        });
        rows.truncate(LATEST);
        self.marks = Some(marks);
        self.rows = Ok(rows);
    }
}

/// Writes one frame; `false` when stdout is gone (e.g. a closed pipe).
fn emit(text: &str, tty: bool, first: bool, once: bool) -> bool {
    let mut out = std::io::stdout().lock();
    let prefix = if tty && !once {
        "\x1b[2J\x1b[H"
    } else if first {
        ""
    } else {
        "\n"
    };
    out.write_all(prefix.as_bytes())
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.flush())
        .is_ok()
}

pub(crate) async fn run(settings: &Effective, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let topology = settings.topology()?;
    let topic = topology.topic(TopicRole::Orders).name.clone();
    let dlq = topology.topic(TopicRole::DeadLetter).name.clone();
    if args.group.trim().is_empty() {
        return Err(exit::UsageError("--group must not be empty".into()).into());
    }
    // Fails with the usual "is the cluster running?" message when no broker answers.
    crate::cmd::topics::connect_admin(settings)?;
    // Never subscribes: it only reads the group's committed offsets and the watermarks.
    let consumer: Arc<BaseConsumer> = Arc::new(
        settings
            .client_config()
            .set("group.id", &args.group)
            .set("enable.auto.commit", "false")
            .create()
            .context("invalid Kafka client settings")?,
    );
    let ctx = frame::Context {
        bootstrap: settings.bootstrap.clone(),
        group: args.group.clone(),
        topic: topic.clone(),
        dlq_topic: dlq.clone(),
        interval_secs: args.interval.as_secs_f64(),
        live: !args.once,
    };
    let token = CancellationToken::new();
    if !args.once {
        crate::signals::cancel_on_signal(token.clone());
    }
    let tty = std::io::stdout().is_terminal();
    // The dead-letter reader names the watched group (it never joins it): a principal that may
    // watch the group may read with it on a cluster with ACLs.
    let mut client = settings.client_config();
    client.set("group.id", &args.group);
    let mut letters = Letters::new();
    let mut prev: Option<Sample> = None;
    let mut first = true;
    loop {
        let started = Instant::now();
        let (c, g, t, d) = (
            Arc::clone(&consumer),
            args.group.clone(),
            topic.clone(),
            dlq.clone(),
        );
        let read = tokio::task::spawn_blocking(move || sample(&c, &g, &t, &d));
        let (now, marks) = tokio::select! {
            () = token.cancelled() => break,
            r = read => r.context("watch sampling task")?,
        };
        tokio::select! {
            () = token.cancelled() => break,
            () = letters.refresh(&client, &dlq, marks) => {}
        }
        let text = frame::render(&ctx, &now, prev.as_ref(), &letters.rows);
        if !emit(&text, tty, first, args.once) || args.once {
            break;
        }
        first = false;
        prev = Some(now);
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(args.interval.saturating_sub(started.elapsed())) => {}
        }
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
