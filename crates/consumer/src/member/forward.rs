//! Forwarding to the retry and dead-letter topics: the retry headers read back (pure), the
//! headers written (pure but for the trace context: a copy carries the `traceparent` of the
//! current span, the record's, when it has an OpenTelemetry context, see
//! [`crate::trace_context`]), and the send that retries until acknowledged or cancelled.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::ConsumerConfig;
use crate::forward_producer::ForwardProducer;
use crate::headers as h;
use crate::trace_context::{self, TRACEPARENT};
use crate::{ProcessError, Record};

/// Error class of a retry-topic record whose `orderstream.retry.*` headers are missing or make
/// no sense (never written by a member: crafted or corrupted). Dead-lettered at once.
pub(crate) const BAD_RETRY_HEADERS: &str = "bad_retry_headers";

/// Where a record first entered the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// `None`: the record's own topic (a source record; saves an allocation per record).
    pub(crate) topic: Option<String>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
}

/// What the retry headers say about a record (defaults for a source record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryInfo {
    /// Processing attempts made before this delivery.
    pub(crate) attempts: u32,
    /// Times parked because of its own failure.
    pub(crate) round: u32,
    /// Not to be processed before (ms since the epoch).
    pub(crate) not_before: Option<i64>,
    /// Park id for the per-key order rule.
    pub(crate) park_id: Option<u64>,
    pub(crate) origin: Origin,
}

fn num<T: std::str::FromStr>(rec: &Record, name: &'static str) -> Result<Option<T>, String> {
    match rec.header(name) {
        None => Ok(None),
        Some(v) => h::parse_num(v)
            .map(Some)
            .ok_or_else(|| format!("header {name} is not a number")),
    }
}

fn required<T: std::str::FromStr>(rec: &Record, name: &'static str) -> Result<T, String> {
    num(rec, name)?.ok_or_else(|| format!("header {name} is missing"))
}

impl Origin {
    /// The origin of `rec` itself.
    pub(crate) fn own(rec: &Record) -> Origin {
        Origin {
            topic: None,
            partition: rec.partition(),
            offset: rec.offset(),
            timestamp: rec.timestamp_ms(),
        }
    }

    /// The origin topic (`rec` is the record this origin was read from).
    pub(crate) fn topic<'a>(&'a self, rec: &'a Record) -> &'a str {
        self.topic.as_deref().unwrap_or(rec.topic())
    }
}

impl RetryInfo {
    /// Reads the retry headers of a record consumed from the retry topic (`from_retry`); a
    /// source record's headers are not trusted for this and give the defaults. `Err`: the
    /// headers are missing or nonsense.
    pub(crate) fn of(rec: &Record, from_retry: bool) -> Result<RetryInfo, String> {
        if !from_retry {
            return Ok(RetryInfo {
                attempts: 0,
                round: 0,
                not_before: None,
                park_id: None,
                origin: Origin::own(rec),
            });
        }
        let topic = rec
            .header(h::RETRY_SOURCE_TOPIC)
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("header {} is missing or not UTF-8", h::RETRY_SOURCE_TOPIC))?
            .to_owned();
        let partition: i32 = required(rec, h::RETRY_SOURCE_PARTITION)?;
        let offset: i64 = required(rec, h::RETRY_SOURCE_OFFSET)?;
        if partition < 0 || offset < 0 {
            return Err(format!("source position {partition}/{offset} is negative"));
        }
        let round: u32 = required(rec, h::RETRY_ROUND)?;
        let timestamp = match rec.header(h::RETRY_SOURCE_TIMESTAMP) {
            None | Some(b"") => None,
            Some(_) => num(rec, h::RETRY_SOURCE_TIMESTAMP)?,
        };
        Ok(RetryInfo {
            attempts: required(rec, h::RETRY_ATTEMPTS)?,
            round,
            not_before: num(rec, h::RETRY_NOT_BEFORE)?,
            park_id: num(rec, h::RETRY_PARK_ID)?,
            origin: Origin {
                topic: Some(topic),
                partition,
                offset,
                timestamp,
            },
        })
    }

    /// How long to wait before processing, bounded by the longest delay this member sets (a
    /// crafted `not_before` far in the future cannot hold a partition for longer).
    pub(crate) fn wait(&self, now_ms: i64, max_delay: Duration) -> Duration {
        let ahead = self.not_before.map_or(0, |nb| nb.saturating_sub(now_ms));
        Duration::from_millis(u64::try_from(ahead).unwrap_or(0)).min(max_delay)
    }
}

/// Whether a retry-topic record was parked by a group other than `group`. Read before any other
/// retry header: another group's record is not this member's to judge, malformed or not. A
/// record parked by a version that did not name its group is every group's.
pub(crate) fn parked_by_another(rec: &Record, group: &str) -> bool {
    rec.header(h::RETRY_GROUP)
        .is_some_and(|g| !g.is_empty() && g != group.as_bytes())
}

/// What a member writes on a record it parks, besides the record's origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParkedAs<'a> {
    /// The member's consumer group.
    pub(crate) group: &'a str,
    /// Processing attempts made so far.
    pub(crate) attempts: u32,
    /// Times parked because of its own failure.
    pub(crate) round: u32,
    /// Not to be processed before (ms since the epoch).
    pub(crate) not_before: i64,
    pub(crate) park_id: u64,
}

/// Headers of a record to be (re)parked in the retry topic: the original ones, then ours.
/// `err` is `None` for a follower (parked only to keep per-key order).
pub(crate) fn retry_headers(
    rec: &Record,
    info: &RetryInfo,
    how: &ParkedAs<'_>,
    err: Option<&ProcessError>,
) -> Vec<(String, Vec<u8>)> {
    let mut hs = original_headers(rec, trace_context::current());
    let mut add = |k: &str, v: String| hs.push((k.to_owned(), v.into_bytes()));
    let o = &info.origin;
    add(h::RETRY_ATTEMPTS, how.attempts.to_string());
    add(h::RETRY_ROUND, how.round.to_string());
    add(h::RETRY_NOT_BEFORE, how.not_before.to_string());
    add(h::RETRY_SOURCE_TOPIC, o.topic(rec).to_owned());
    add(h::RETRY_SOURCE_PARTITION, o.partition.to_string());
    add(h::RETRY_SOURCE_OFFSET, o.offset.to_string());
    add(
        h::RETRY_SOURCE_TIMESTAMP,
        o.timestamp.map(|t| t.to_string()).unwrap_or_default(),
    );
    add(h::RETRY_PARK_ID, how.park_id.to_string());
    add(h::RETRY_GROUP, how.group.to_owned());
    match err {
        Some(e) => {
            add(h::RETRY_ERROR_CLASS, e.class().to_owned());
            add(h::RETRY_ERROR_MESSAGE, e.message().to_owned());
        }
        None => add(h::RETRY_FOLLOWER, "1".to_owned()),
    }
    hs
}

/// Headers of a dead letter: the original ones, then ours.
pub(crate) fn dead_letter_headers(
    rec: &Record,
    origin: &Origin,
    err: &ProcessError,
    group: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut hs = original_headers(rec, trace_context::current());
    let mut add = |k: &str, v: String| hs.push((k.to_owned(), v.into_bytes()));
    add(h::DLQ_SOURCE_TOPIC, origin.topic(rec).to_owned());
    add(h::DLQ_SOURCE_PARTITION, origin.partition.to_string());
    add(h::DLQ_SOURCE_OFFSET, origin.offset.to_string());
    add(
        h::DLQ_SOURCE_TIMESTAMP,
        origin.timestamp.map(|t| t.to_string()).unwrap_or_default(),
    );
    add(h::DLQ_ERROR_CLASS, err.class().to_owned());
    add(h::DLQ_ERROR_MESSAGE, err.message().to_owned());
    add(h::DLQ_ATTEMPTS, rec.attempt().to_string());
    if let Some(id) = err.schema_id() {
        add(h::DLQ_SCHEMA_ID, id.to_string());
    }
    add(h::DLQ_GROUP, group.to_owned());
    hs
}

/// The record's headers without our retry/dead-letter ones; its `traceparent` replaced by
/// `traceparent` when given (the forwarding span's, to continue the trace from it).
fn original_headers(rec: &Record, traceparent: Option<String>) -> Vec<(String, Vec<u8>)> {
    let mut hs: Vec<(String, Vec<u8>)> = rec
        .headers()
        .filter(|(k, _)| !k.starts_with(h::RETRY_PREFIX) && !k.starts_with(h::DLQ_PREFIX))
        .filter(|(k, _)| traceparent.is_none() || !k.eq_ignore_ascii_case(TRACEPARENT))
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect();
    if let Some(tp) = traceparent {
        hs.push((TRACEPARENT.to_owned(), tp.into_bytes()));
    }
    hs
}

/// Sends until acknowledged (`true`) or cancelled (`false`), with backoff between attempts;
/// each send again bumps `resent`.
/// After a fatal error of the producer handle the send is retried at once on a rebuilt handle
/// (with the backoff again if that fresh handle fails fatally too, so a broken cluster cannot
/// spin rebuilds).
pub(crate) async fn send(
    producer: &ForwardProducer,
    cfg: &ConsumerConfig,
    topic: &str,
    rec: &Record,
    hs: &[(String, Vec<u8>)],
    cancel: &CancellationToken,
    resent: &std::sync::atomic::AtomicU64,
) -> bool {
    let mut attempt = 0u32;
    let mut after_rebuild = false;
    loop {
        attempt = attempt.saturating_add(1);
        if attempt > 1 {
            super::summary::bump(resent);
        }
        let mut headers = OwnedHeaders::new_with_capacity(hs.len());
        for (k, v) in hs {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = rec.key() {
            fr = fr.key(k);
        }
        if let Some(p) = rec.payload() {
            fr = fr.payload(p);
        }
        let handle = producer.current();
        let res = tokio::select! {
            r = handle.send(fr, Timeout::After(cfg.produce_timeout)) => r,
            () = cancel.cancelled() => return false,
        };
        let Err((e, _)) = res else {
            return true;
        };
        warn!(topic, source_topic = rec.topic(), source_partition = rec.partition(), source_offset = rec.offset(), error = %e, attempt, generation = handle.number(), "forward produce failed; retrying (the source offset stays uncommitted)");
        let rebuilt = producer.recover(&handle, &e, topic);
        // a replaced handle must not be kept alive by a sleeping task
        drop(handle);
        if !rebuilt {
            after_rebuild = false;
        } else if !after_rebuild {
            after_rebuild = true;
            continue;
        }
        let delay = cfg.backoff.delay(attempt.min(10));
        if !sleep_or_cancel(delay, cancel).await {
            return false;
        }
    }
}

/// Sleeps unless cancelled; `false` when cancelled.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_rec(extra: &[(&'static str, &'static [u8])]) -> Record {
        let mut hs: Vec<(&str, Option<&[u8]>)> = vec![
            ("event_id", Some(b"e1")),
            (h::RETRY_SOURCE_TOPIC, Some(b"orders")),
            (h::RETRY_SOURCE_PARTITION, Some(b"2")),
            (h::RETRY_SOURCE_OFFSET, Some(b"41")),
            (h::RETRY_ATTEMPTS, Some(b"3")),
            (h::RETRY_ROUND, Some(b"1")),
        ];
        for (k, v) in extra {
            hs.retain(|(n, _)| n != k);
            hs.push((k, Some(v)));
        }
        Record::from_parts("orders.retry", 0, 7, Some(b"k"), Some(b"v"), hs, Some(5))
    }

    #[test]
    fn source_records_ignore_retry_headers() {
        let r = retry_rec(&[(h::RETRY_ATTEMPTS, b"4294967295")]);
        let i = RetryInfo::of(&r, false).unwrap();
        assert_eq!((i.attempts, i.round, i.park_id), (0, 0, None));
        assert_eq!(i.origin.topic(&r), "orders.retry");
    }

    #[test]
    fn retry_headers_round_trip() {
        let src = Record::from_parts(
            "orders",
            2,
            41,
            Some(b"k"),
            None,
            [("event_id", Some(&b"e1"[..]))],
            Some(9),
        );
        let info = RetryInfo::of(&src, false).unwrap();
        let how = ParkedAs {
            group: "billing",
            attempts: 3,
            round: 1,
            not_before: 1_000,
            park_id: 17,
        };
        let hs = retry_headers(&src, &info, &how, Some(&ProcessError::transient("x")));
        let back = Record::from_parts(
            "orders.retry",
            0,
            0,
            None,
            None,
            hs.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            None,
        );
        let i = RetryInfo::of(&back, true).unwrap();
        assert_eq!(
            (i.attempts, i.round, i.not_before, i.park_id),
            (3, 1, Some(1_000), Some(17))
        );
        assert!(!parked_by_another(&back, "billing"));
        assert!(
            parked_by_another(&back, "notify"),
            "another group's parked record"
        );
        assert_eq!(
            i.origin,
            Origin {
                topic: Some("orders".into()),
                partition: 2,
                offset: 41,
                timestamp: Some(9)
            }
        );
        // the original header survives, ours are not duplicated on a re-park
        let how = ParkedAs {
            attempts: 4,
            round: 2,
            not_before: 2_000,
            ..how
        };
        let again = retry_headers(&back, &i, &how, None);
        assert_eq!(again.iter().filter(|(k, _)| k == h::RETRY_ROUND).count(), 1);
        assert_eq!(again.iter().filter(|(k, _)| k == h::RETRY_GROUP).count(), 1);
        assert!(again.iter().any(|(k, _)| k == "event_id"));
    }

    #[test]
    fn a_record_parked_without_a_group_is_for_every_group() {
        assert!(!parked_by_another(&retry_rec(&[]), "billing"));
        assert!(!parked_by_another(
            &retry_rec(&[(h::RETRY_GROUP, b"")]),
            "billing"
        ));
        // another group's record is passed over even when its other headers are nonsense
        let foreign = retry_rec(&[(h::RETRY_GROUP, b"notify"), (h::RETRY_ROUND, b"-1")]);
        assert!(parked_by_another(&foreign, "billing"));
    }

    #[test]
    fn nonsense_headers_are_an_error_not_a_panic() {
        for bad in [
            (h::RETRY_ATTEMPTS, &b"99999999999999999999"[..]),
            (h::RETRY_ROUND, b"-1"),
            (h::RETRY_SOURCE_PARTITION, b"-3"),
            (h::RETRY_SOURCE_OFFSET, b"x"),
            (h::RETRY_NOT_BEFORE, b"soon"),
        ] {
            assert!(RetryInfo::of(&retry_rec(&[bad]), true).is_err(), "{bad:?}");
        }
        let missing = Record::from_parts("orders.retry", 0, 0, None, None, [], None);
        assert!(RetryInfo::of(&missing, true).is_err());
    }

    #[test]
    fn not_before_wait_saturates_and_is_bounded() {
        let max = Duration::from_secs(60);
        let far = retry_rec(&[(h::RETRY_NOT_BEFORE, b"9223372036854775807")]);
        assert_eq!(RetryInfo::of(&far, true).unwrap().wait(i64::MIN, max), max);
        let past = retry_rec(&[(h::RETRY_NOT_BEFORE, b"-9223372036854775808")]);
        assert_eq!(
            RetryInfo::of(&past, true).unwrap().wait(i64::MAX, max),
            Duration::ZERO
        );
        let soon = retry_rec(&[(h::RETRY_NOT_BEFORE, b"1500")]);
        assert_eq!(
            RetryInfo::of(&soon, true).unwrap().wait(1000, max),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_forward_carries_the_given_traceparent_else_the_records() {
        let own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let r = Record::from_parts(
            "orders",
            0,
            1,
            None,
            None,
            [
                ("event_id", Some(&b"e1"[..])),
                (TRACEPARENT, Some(own.as_bytes())),
            ],
            None,
        );
        let tp = |hs: &[(String, Vec<u8>)]| {
            hs.iter()
                .filter(|(k, _)| k == TRACEPARENT)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(tp(&original_headers(&r, None)), [own]);
        let next = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        let hs = original_headers(&r, Some(next.to_owned()));
        assert_eq!(tp(&hs), [next]);
        assert!(hs.iter().any(|(k, _)| k == "event_id"));
    }

    #[test]
    fn dead_letter_headers_carry_the_origin_and_class() {
        let r = retry_rec(&[]);
        let i = RetryInfo::of(&r, true).unwrap();
        let hs = dead_letter_headers(
            &r,
            &i.origin,
            &ProcessError::permanent("bad_magic", "m").with_schema_id(5),
            "g",
        );
        let get = |n: &str| {
            hs.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(h::DLQ_SOURCE_TOPIC).as_deref(), Some("orders"));
        assert_eq!(get(h::DLQ_SOURCE_OFFSET).as_deref(), Some("41"));
        assert_eq!(get(h::DLQ_ERROR_CLASS).as_deref(), Some("bad_magic"));
        assert_eq!(get(h::DLQ_SCHEMA_ID).as_deref(), Some("5"));
        assert!(hs.iter().all(|(k, _)| !k.starts_with(h::RETRY_PREFIX)));
    }
}
