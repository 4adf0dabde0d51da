//! The consumed record handed to handlers: topic, key, payload and headers share **one**
//! allocation.
//!
//! Why one buffer: the poll thread turns every fetched message into a `Record`, so each
//! allocation here is paid per record on the hot path. Topic, key, payload and headers are
//! copied once into a single boxed slice; accessors hand out borrowed views into it. (A shared
//! `Arc<str>` topic would make every record touch one reference count from the poll thread and
//! from the partition owners' threads alike.)

use std::fmt;

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// A `(start, len)` view into [`Record::buf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn in_buf(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One consumed record handed to a [`Processor`](crate::Processor) or
/// [`BatchProcessor`](crate::BatchProcessor).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    attempt: u32,
    /// topic, key bytes, payload bytes, then the header section (see [`push_header`]). A `Vec`
    /// rather than a boxed slice: shrinking to fit would copy it once more.
    buf: Vec<u8>,
    topic_len: u32,
    key: Option<Span>,
    payload: Option<Span>,
    headers_at: u32,
}

/// Bytes reserved per header of a fetched message (8 bytes of lengths, a short name and value,
/// such as a trace context or an event id).
const HEADER_ESTIMATE: usize = 96;

/// Header entry layout: name length (u32 LE), value length (u32 LE), name, value.
fn push_header(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(value);
}

fn push_span(buf: &mut Vec<u8>, bytes: Option<&[u8]>) -> Option<Span> {
    bytes.map(|b| {
        let start = buf.len() as u32;
        buf.extend_from_slice(b);
        Span {
            start,
            len: b.len() as u32,
        }
    })
}

impl Record {
    /// A record built from its parts (tests, replays, adapters). A header given as `None` is
    /// stored as empty bytes, as for consumed records.
    pub fn from_parts<'a>(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
        timestamp_ms: Option<i64>,
    ) -> Record {
        let header_bytes: usize = headers
            .clone()
            .into_iter()
            .map(|(k, v)| 8 + k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        let cap = topic.len()
            + key.map_or(0, <[u8]>::len)
            + payload.map_or(0, <[u8]>::len)
            + header_bytes;
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(topic.as_bytes());
        let key = push_span(&mut buf, key);
        let payload = push_span(&mut buf, payload);
        let headers_at = buf.len() as u32;
        for (k, v) in headers {
            push_header(&mut buf, k, v.unwrap_or_default());
        }
        Record {
            topic_len: topic.len() as u32,
            partition,
            offset,
            timestamp_ms,
            attempt: 0,
            buf,
            key,
            payload,
            headers_at,
        }
    }

    /// Copies a fetched message of `topic` (one allocation, unless its headers are larger than
    /// estimated).
    pub(crate) fn from_message(topic: &str, msg: &BorrowedMessage<'_>) -> Record {
        let hs = msg.headers();
        let (key, payload) = (msg.key(), msg.payload());
        // one pass over the headers: librdkafka converts each name on every access
        let cap = topic.len()
            + key.map_or(0, <[u8]>::len)
            + payload.map_or(0, <[u8]>::len)
            + hs.map_or(0, |h| h.count() * HEADER_ESTIMATE);
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(topic.as_bytes());
        let key = push_span(&mut buf, key);
        let payload = push_span(&mut buf, payload);
        let headers_at = buf.len() as u32;
        if let Some(hs) = hs {
            for h in hs.iter() {
                push_header(&mut buf, h.key, h.value.unwrap_or_default());
            }
        }
        Record {
            topic_len: topic.len() as u32,
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            attempt: 0,
            buf,
            key,
            payload,
            headers_at,
        }
    }

    /// Topic the record was consumed from (the retry topic for a retried record).
    pub fn topic(&self) -> &str {
        // written from a `&str`, so this never fails
        std::str::from_utf8(&self.buf[..self.topic_len as usize]).unwrap_or_default()
    }

    /// Partition it was consumed from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Offset it was consumed from.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Key bytes.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.map(|s| s.in_buf(&self.buf))
    }

    /// Value bytes.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.map(|s| s.in_buf(&self.buf))
    }

    /// Record timestamp in ms since the epoch, if any.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// 1-based attempt number across in-place retries and retry-topic rounds (0 before the
    /// first call).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    /// Headers in order (a null header value is given as empty bytes).
    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter {
            rest: &self.buf[self.headers_at as usize..],
        }
    }

    /// The first header value with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Bytes this record holds in memory (what the member's memory budget counts).
    pub fn size(&self) -> usize {
        self.buf.capacity() + std::mem::size_of::<Record>()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic())
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("payload_len", &self.payload().map(<[u8]>::len))
            .field(
                "headers",
                &self.headers().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// Iterator over a record's headers as `(name, value)`.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (lens, rest) = self.rest.split_at_checked(8)?;
        let klen = u32::from_le_bytes(lens[..4].try_into().ok()?) as usize;
        let vlen = u32::from_le_bytes(lens[4..].try_into().ok()?) as usize;
        let (k, rest) = rest.split_at_checked(klen)?;
        let (v, rest) = rest.split_at_checked(vlen)?;
        self.rest = rest;
        // names were written from `&str`, so this never fails
        Some((std::str::from_utf8(k).unwrap_or_default(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let r = Record::from_parts(
            "t",
            3,
            42,
            Some(b"k1"),
            Some(b"value"),
            [("a", Some(&b"1"[..])), ("b", None), ("a", Some(&b"2"[..]))],
            Some(7),
        );
        assert_eq!(r.topic(), "t");
        assert_eq!(
            (r.partition(), r.offset(), r.timestamp_ms()),
            (3, 42, Some(7))
        );
        assert_eq!(r.key(), Some(&b"k1"[..]));
        assert_eq!(r.payload(), Some(&b"value"[..]));
        assert_eq!(r.header("a"), Some(&b"1"[..]));
        assert_eq!(r.header("b"), Some(&b""[..]));
        assert_eq!(r.header("c"), None);
        assert_eq!(r.headers().count(), 3);
    }

    #[test]
    fn null_key_and_payload_stay_null() {
        let r = Record::from_parts("t", 0, 0, None, None, [], None);
        assert_eq!((r.key(), r.payload()), (None, None));
        assert_eq!(r.headers().count(), 0);
        let e = Record::from_parts("t", 0, 0, Some(b""), Some(b""), [], None);
        assert_eq!((e.key(), e.payload()), (Some(&b""[..]), Some(&b""[..])));
    }
}
