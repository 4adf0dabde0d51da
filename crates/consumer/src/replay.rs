//! Replay of dead letters: back to their source topic, or parked in the retry topic for the
//! group that gave up on them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tracing::{Instrument, field, info, info_span, warn};

use crate::forward_producer::ForwardProducer;
use crate::headers as h;
use crate::trace_context;

/// Which dead letters to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySelection {
    /// Dead-letter partitions to read (`None`: all).
    pub partitions: Option<Vec<i32>>,
    /// First dead-letter offset to replay, inclusive (`None`: from the beginning).
    pub from_offset: Option<i64>,
    /// Last dead-letter offset, exclusive (`None`: up to the high watermark at start).
    pub to_offset: Option<i64>,
    /// Only dead letters whose source topic is this (`None`: any).
    pub source_topic: Option<String>,
    /// Only dead letters this consumer group gave up on (`orderstream.dlq.group`; `None`: any).
    pub group: Option<String>,
    /// Where [`replay`] sends them. `None`: back to their source topic and partition, which
    /// every group on that topic reads, so groups that had handled the record see it again.
    /// `Some(retry topic)`: parked in that retry topic for the group that gave up on each
    /// (members of other groups pass over it), with a fresh retry budget; a letter that names
    /// no group is skipped.
    pub into_retry: Option<String>,
    /// Group id of the reader, never joined or committed to (librdkafka needs one to assign
    /// partitions). On a cluster with ACLs it must be a group this principal may READ.
    /// `None`: the client config's `group.id` if it has one, else a throw-away
    /// `orderstream-replay-<pid>-<random>`.
    pub reader_group: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// Dead letters read in the selected range.
    pub read: u64,
    /// Records re-produced, per (topic, partition) written to: the source's, or the retry
    /// topic's with [`ReplaySelection::into_retry`].
    pub replayed: BTreeMap<(String, i32), u64>,
    /// Dead letters skipped (no source headers, or filtered out).
    pub skipped: u64,
}

/// Replay failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A Kafka client operation failed.
    #[error("replay: kafka {context}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The selection names partitions the topic does not have, or an empty offset range.
    #[error("replay: {reason} ({topic})")]
    Selection {
        /// The dead-letter topic.
        topic: String,
        /// What does not fit.
        reason: String,
    },
    /// Reading the dead-letter topic did not reach the end in time.
    #[error("replay: reading {topic} timed out")]
    Timeout {
        /// The dead-letter topic.
        topic: String,
    },
}

/// One record of a dead-letter topic, as stored (all headers kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Dead-letter partition.
    pub partition: i32,
    /// Dead-letter offset.
    pub offset: i64,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value bytes.
    pub payload: Option<Vec<u8>>,
    /// The original headers followed by the `orderstream.dlq.*` ones.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Source topic and partition from the dead-letter headers.
    pub fn source(&self) -> Option<(String, i32)> {
        let topic = self.header(h::DLQ_SOURCE_TOPIC)?;
        let partition = self.header(h::DLQ_SOURCE_PARTITION)?.parse().ok()?;
        Some((topic, partition))
    }

    /// The headers the record had before it was dead-lettered.
    pub fn original_headers(&self) -> impl Iterator<Item = &(String, Option<Vec<u8>>)> {
        self.headers
            .iter()
            .filter(|(k, _)| !k.starts_with(h::DLQ_PREFIX) && !k.starts_with(h::RETRY_PREFIX))
    }
}

/// Why `sel` cannot select anything in a topic with partitions `all`: a partition it does not
/// have (a typo would otherwise read as "no dead letters"), or an empty offset range.
fn check_selection(sel: &ReplaySelection, all: &[i32]) -> Result<(), String> {
    if all.is_empty() {
        return Err("the topic does not exist or has no partitions".to_owned());
    }
    if let Some(missing) = sel.partitions.iter().flatten().find(|p| !all.contains(p)) {
        return Err(format!(
            "partition {missing} is not in the topic (partitions 0 to {})",
            all.iter().max().copied().unwrap_or_default()
        ));
    }
    if let (Some(from), Some(to)) = (sel.from_offset, sel.to_offset)
        && from >= to
    {
        return Err(format!(
            "the offset range {from}..{to} is empty (from is inclusive, to exclusive)"
        ));
    }
    Ok(())
}

/// Reads the selected dead letters (up to the high watermarks as of the call).
///
/// `client` carries `bootstrap.servers` and whatever else the cluster needs (security protocol,
/// SASL credentials, ...); the reader adds its own group and offset settings.
pub async fn read_dead_letters(
    client: &ClientConfig,
    dead_letter_topic: &str,
    selection: &ReplaySelection,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, ReplayError> {
    let client = client.clone();
    let topic = dead_letter_topic.to_owned();
    let sel = selection.clone();
    let group = sel.group.clone();
    let mut letters =
        tokio::task::spawn_blocking(move || read_letters(client, &topic, &sel, timeout))
            .await
            .map_err(|e| ReplayError::Kafka {
                context: format!("reader task: {e}"),
                source: KafkaError::Canceled,
            })??;
    if let Some(g) = group {
        letters.retain(|l| l.header(h::DLQ_GROUP).is_some_and(|lg| lg == g));
    }
    Ok(letters)
}

/// Reads dead letters of `dead_letter_topic` (as selected) and re-produces each to its source
/// topic and **source partition** (from the `orderstream.dlq.source.*` headers) with the same
/// key and value and the original headers minus the `orderstream.dlq.*` / `orderstream.retry.*`
/// ones; with [`ReplaySelection::into_retry`], instead, parked in the retry topic for the group
/// that gave up on each (see there). Each send runs in an `orderstream.replay` span that continues the dead letter's trace;
/// with a `tracing-opentelemetry` layer the record's `traceparent` names that span (see
/// [`crate::trace_context`]). The dead-letter topic itself is not modified. Uses an idempotent
/// producer and waits for every acknowledgement; after a fatal error of that producer the letter
/// in flight is sent once more on a fresh instance, so it may reach the source topic twice (at
/// least once, as consumers of the source topic already assume). `client` as for
/// [`read_dead_letters`].
pub async fn replay(
    client: &ClientConfig,
    dead_letter_topic: &str,
    selection: &ReplaySelection,
    timeout: Duration,
) -> Result<ReplaySummary, ReplayError> {
    let kafka = |context: String| move |source| ReplayError::Kafka { context, source };
    let letters = read_dead_letters(client, dead_letter_topic, selection, timeout).await?;
    let mut summary = ReplaySummary {
        read: letters.len() as u64,
        ..ReplaySummary::default()
    };
    let mut config = client.clone();
    // murmur2 as the members' producer: a copy parked by key lands where a member parks it.
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random");
    let producer = ForwardProducer::new(config, timeout)
        .map_err(kafka("creating the replay producer".to_owned()))?;
    for l in letters {
        let parked = match &selection.into_retry {
            None => None,
            Some(_) => match retry_headers(&l, now_ms()) {
                Some(hs) => Some(hs),
                None => {
                    skipped(
                        dead_letter_topic,
                        &l,
                        "it names no group or source to park it for",
                    );
                    summary.skipped += 1;
                    continue;
                }
            },
        };
        let Some((source_topic, source_partition)) = l
            .source()
            .filter(|(t, _)| selection.source_topic.as_ref().is_none_or(|f| f == t))
        else {
            skipped(dead_letter_topic, &l, "filtered, or no source headers");
            summary.skipped += 1;
            continue;
        };
        // Continues the dead letter's trace: the re-produced record carries this span's
        // context (the dead letter's own header when there is no OpenTelemetry layer).
        let span = info_span!(
            "orderstream.replay",
            otel.kind = "producer",
            topic = %source_topic,
            partition = source_partition,
            dead_letter_offset = l.offset,
            trace_id = field::Empty,
        );
        let tp = l.header(trace_context::TRACEPARENT);
        trace_context::set_parent(&span, tp.as_deref().map(str::as_bytes));
        let continued = trace_context::of_span(&span);
        let mut headers = OwnedHeaders::new_with_capacity(l.headers.len());
        for (k, v) in l.original_headers() {
            if continued.is_some() && k.eq_ignore_ascii_case(trace_context::TRACEPARENT) {
                continue;
            }
            headers = headers.insert(Header {
                key: k,
                value: v.as_ref(),
            });
        }
        if let Some(tp) = &continued {
            headers = headers.insert(Header {
                key: trace_context::TRACEPARENT,
                value: Some(tp),
            });
        }
        for (k, v) in parked.iter().flatten() {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        // Parked copies go where a member parks them: by key (murmur2), into the retry topic.
        let (target, partition) = match &selection.into_retry {
            Some(retry) => (retry.as_str(), None),
            None => (source_topic.as_str(), Some(source_partition)),
        };
        let at = partition.map(|p| format!("/{p}")).unwrap_or_default();
        let record = || {
            let mut fr: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(target).headers(headers.clone());
            if let Some(p) = partition {
                fr = fr.partition(p);
            }
            if let Some(k) = l.key.as_deref() {
                fr = fr.key(k);
            }
            if let Some(p) = l.payload.as_deref() {
                fr = fr.payload(p);
            }
            fr
        };
        // One more attempt on a fresh handle after a fatal error of the idempotent producer (the
        // first may have been written: at least once); any other failure ends the replay with
        // the letters before it replayed.
        let landed = async {
            let mut fatal_before: Option<KafkaError> = None;
            loop {
                let handle = producer.current();
                let (e, _) = match handle.send(record(), Timeout::After(timeout)).await {
                    Ok(delivery) => return Ok(delivery.partition),
                    Err(failed) => failed,
                };
                let retry = fatal_before.is_none() && producer.recover(&handle, &e, target);
                if !retry {
                    return Err(ReplayError::Kafka {
                        context: match &fatal_before {
                            Some(first) => format!(
                                "producing to {target}{at} (second attempt, on a producer rebuilt after the fatal error `{first}`)"
                            ),
                            None => format!("producing to {target}{at}"),
                        },
                        source: e,
                    });
                }
                fatal_before = Some(e);
            }
        }
        .instrument(span)
        .await?;
        *summary
            .replayed
            .entry((target.to_owned(), landed))
            .or_insert(0) += 1;
    }
    info!(
        read = summary.read,
        replayed = summary.replayed.values().sum::<u64>(),
        partitions_written = summary.replayed.len(),
        skipped = summary.skipped,
        "replay done"
    );
    Ok(summary)
}

/// The `orderstream.retry.*` headers that park `l` for the group that gave up on it, as a
/// member parks a record: its source, a fresh budget (attempts and round 0), due now. `None`
/// when the letter does not name its group or its source.
fn retry_headers(l: &DeadLetter, now_ms: i64) -> Option<Vec<(&'static str, Vec<u8>)>> {
    let group = l.header(h::DLQ_GROUP).filter(|g| !g.is_empty())?;
    let (topic, partition) = l.source()?;
    let offset: i64 = l.header(h::DLQ_SOURCE_OFFSET)?.parse().ok()?;
    let mut hs = vec![
        (h::RETRY_ATTEMPTS, b"0".to_vec()),
        (h::RETRY_ROUND, b"0".to_vec()),
        (h::RETRY_NOT_BEFORE, now_ms.to_string().into_bytes()),
        (h::RETRY_SOURCE_TOPIC, topic.into_bytes()),
        (
            h::RETRY_SOURCE_PARTITION,
            partition.to_string().into_bytes(),
        ),
        (h::RETRY_SOURCE_OFFSET, offset.to_string().into_bytes()),
        (
            h::RETRY_SOURCE_TIMESTAMP,
            l.header(h::DLQ_SOURCE_TIMESTAMP)
                .unwrap_or_default()
                .into_bytes(),
        ),
        (h::RETRY_GROUP, group.into_bytes()),
    ];
    for (ours, theirs) in [
        (h::RETRY_ERROR_CLASS, h::DLQ_ERROR_CLASS),
        (h::RETRY_ERROR_MESSAGE, h::DLQ_ERROR_MESSAGE),
    ] {
        if let Some(v) = l.header(theirs) {
            hs.push((ours, v.into_bytes()));
        }
    }
    Some(hs)
}

fn skipped(topic: &str, l: &DeadLetter, why: &str) {
    warn!(
        topic,
        partition = l.partition,
        offset = l.offset,
        why,
        "dead letter skipped"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn read_letters(
    client: ClientConfig,
    topic: &str,
    sel: &ReplaySelection,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, ReplayError> {
    let kafka = |context: &str| {
        let context = format!("{context} ({topic})");
        move |source| ReplayError::Kafka { context, source }
    };
    // librdkafka wants a group id for `assign`; the reader never joins it nor commits.
    let group = sel
        .reader_group
        .clone()
        .or_else(|| client.get("group.id").map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "orderstream-replay-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )
        });
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("creating the dead-letter reader"))?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka("fetching metadata"))?;
    let all: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    check_selection(sel, &all).map_err(|reason| ReplayError::Selection {
        topic: topic.to_owned(),
        reason,
    })?;
    let partitions: Vec<i32> = all
        .into_iter()
        .filter(|p| sel.partitions.as_ref().is_none_or(|ps| ps.contains(p)))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, timeout)
            .map_err(kafka("fetching watermarks"))?;
        let start = sel.from_offset.map_or(low, |f| f.max(low));
        let end = sel.to_offset.map_or(high, |t| t.min(high));
        if start < end {
            tpl.add_partition_offset(topic, *p, Offset::Offset(start))
                .map_err(kafka("building the assignment"))?;
            ends.insert(*p, end);
        }
    }
    let mut letters = Vec::new();
    if ends.is_empty() {
        return Ok(letters);
    }
    consumer.assign(&tpl).map_err(kafka("assigning"))?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(ReplayError::Timeout {
                topic: topic.to_owned(),
            });
        }
        let Some(res) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = res.map_err(kafka("reading"))?;
        let p = msg.partition();
        let Some(end) = ends.get(&p).copied() else {
            continue;
        };
        if msg.offset() >= end {
            ends.remove(&p);
            continue;
        }
        if msg.offset() + 1 >= end {
            ends.remove(&p);
        }
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|hd| (hd.key.to_owned(), hd.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        letters.push(DeadLetter {
            partition: p,
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

#[cfg(test)]
mod tests {
    use super::{ReplaySelection, check_selection};

    #[test]
    fn a_selection_outside_the_topic_is_refused() {
        let all = [0, 1, 2];
        let sel = |partitions: Option<Vec<i32>>, from, to| ReplaySelection {
            partitions,
            from_offset: from,
            to_offset: to,
            ..ReplaySelection::default()
        };
        assert!(check_selection(&sel(None, None, None), &all).is_ok());
        assert!(check_selection(&sel(Some(vec![2]), Some(4), Some(5)), &all).is_ok());
        let err = check_selection(&sel(Some(vec![1, 9]), None, None), &all).unwrap_err();
        assert!(err.contains("partition 9"), "{err}");
        let err = check_selection(&sel(None, Some(10), Some(5)), &all).unwrap_err();
        assert!(err.contains("10..5"), "{err}");
        assert!(check_selection(&sel(None, Some(5), Some(5)), &all).is_err());
        assert!(check_selection(&sel(None, None, None), &[]).is_err());
    }
}
