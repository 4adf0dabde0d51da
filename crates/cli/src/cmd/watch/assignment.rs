//! The Kafka consumer protocol's member assignment, as a classic group stores it (the bytes
//! `DescribeGroups` returns per member):
//!
//! ```text
//! i16 version
//! i32 topic count, per topic: i16-length UTF-8 name, i32 partition count, i32 partitions...
//! i32-length user data (-1: null)   (absent in some clients; anything after it is ignored)
//! ```

/// One member's assigned partitions, per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Protocol version of the assignment.
    pub(crate) version: i16,
    /// (topic, partitions) in the order the leader wrote them.
    pub(crate) topics: Vec<(String, Vec<i32>)>,
    /// The assignor's opaque user data, when present.
    pub(crate) user_data: Option<Vec<u8>>,
}

impl Assignment {
    /// The partitions of `topic` (empty when the member has none).
    pub(crate) fn partitions(&self, topic: &str) -> Vec<i32> {
        self.topics
            .iter()
            .filter(|(t, _)| t == topic)
            .flat_map(|(_, ps)| ps.iter().copied())
            .collect()
    }
}

/// Why assignment bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AssignmentError {
    /// The bytes end before a field does.
    #[error("assignment truncated at byte {at}: {what} needs {needed} more byte(s)")]
    Truncated {
        at: usize,
        what: &'static str,
        needed: usize,
    },
    /// A count or length is negative where the protocol forbids it.
    #[error("assignment has a negative {what} ({value}) at byte {at}")]
    Negative {
        at: usize,
        what: &'static str,
        value: i64,
    },
    /// A negative protocol version: not a consumer-protocol assignment.
    #[error("assignment version {version} is not a consumer-protocol version")]
    Version { version: i16 },
    /// A topic name that is not UTF-8.
    #[error("assignment topic name at byte {at} is not UTF-8")]
    NotUtf8 { at: usize },
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], AssignmentError> {
        let rest = self.bytes.len() - self.at;
        if rest < n {
            return Err(AssignmentError::Truncated {
                at: self.at,
                what,
                needed: n - rest,
            });
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, AssignmentError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, AssignmentError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A non-negative count or length.
    fn len(&mut self, value: i64, what: &'static str, at: usize) -> Result<usize, AssignmentError> {
        usize::try_from(value).map_err(|_| AssignmentError::Negative { at, what, value })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// Parses a member assignment. Empty bytes (a member that has no assignment yet, e.g. while
/// the group rebalances) give an empty assignment.
pub(crate) fn parse(bytes: &[u8]) -> Result<Assignment, AssignmentError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(AssignmentError::Version { version });
    }
    let at = r.at;
    let count = r.i32("topic count")?;
    let count = r.len(count.into(), "topic count", at)?;
    // Every topic takes at least 6 bytes: never pre-allocate more than the bytes can hold.
    let mut topics = Vec::with_capacity(count.min(r.remaining() / 6));
    for _ in 0..count {
        let at = r.at;
        let name_len = r.i16("topic name length")?;
        let name_len = r.len(name_len.into(), "topic name length", at)?;
        let at = r.at;
        let name = std::str::from_utf8(r.take(name_len, "topic name")?)
            .map_err(|_| AssignmentError::NotUtf8 { at })?
            .to_owned();
        let at = r.at;
        let n = r.i32("partition count")?;
        let n = r.len(n.into(), "partition count", at)?;
        let mut partitions = Vec::with_capacity(n.min(r.remaining() / 4));
        for _ in 0..n {
            partitions.push(r.i32("partition")?);
        }
        topics.push((name, partitions));
    }
    let user_data = if r.remaining() >= 4 {
        let at = r.at;
        let len = r.i32("user data length")?;
        if len < 0 {
            None
        } else {
            let len = r.len(len.into(), "user data length", at)?;
            Some(r.take(len, "user data")?.to_vec())
        }
    } else {
        None
    };
    Ok(Assignment {
        version,
        topics,
        user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment the way the Java client / librdkafka do.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        match user_data {
            None => b.extend((-1i32).to_be_bytes()),
            Some(u) => {
                b.extend((u.len() as i32).to_be_bytes());
                b.extend(u);
            }
        }
        b
    }

    #[test]
    fn parses_topics_partitions_and_user_data() {
        let bytes = encode(
            3,
            &[("orders.events", &[0, 2, 4]), ("orders.events.retry", &[1])],
            Some(b"sticky"),
        );
        let a = parse(&bytes).expect("parses");
        assert_eq!(a.version, 3);
        assert_eq!(
            a.topics,
            vec![
                ("orders.events".to_owned(), vec![0, 2, 4]),
                ("orders.events.retry".to_owned(), vec![1]),
            ]
        );
        assert_eq!(a.user_data.as_deref(), Some(&b"sticky"[..]));
        assert_eq!(a.partitions("orders.events"), vec![0, 2, 4]);
        assert!(a.partitions("other").is_empty());
    }

    #[test]
    fn null_or_missing_user_data_and_empty_assignments() {
        let a = parse(&encode(0, &[("t", &[])], None)).expect("parses");
        assert_eq!(a.topics, vec![("t".to_owned(), vec![])]);
        assert_eq!(a.user_data, None);
        // Some clients end right after the topics.
        let mut b = encode(1, &[("t", &[5])], None);
        b.truncate(b.len() - 4);
        assert_eq!(parse(&b).expect("parses").partitions("t"), vec![5]);
        assert_eq!(parse(&[]).expect("parses"), Assignment::default());
        assert!(
            parse(&encode(0, &[], None))
                .expect("parses")
                .topics
                .is_empty()
        );
        // Fields a later version appends are ignored.
        let mut b = encode(4, &[("t", &[1])], Some(b""));
        b.extend([9, 9, 9]);
        assert_eq!(parse(&b).expect("parses").partitions("t"), vec![1]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = encode(3, &[("orders", &[0, 1]), ("retry", &[2])], Some(b"ud"));
        // Cutting anywhere inside the topics must fail; cutting inside the user data too,
        // except right at its start (user data omitted) which is accepted.
        let topics_end = full.len() - 4 - 2;
        for cut in 1..full.len() {
            let r = parse(&full[..cut]);
            if cut == topics_end
                || cut == topics_end + 1
                || cut == topics_end + 2
                || cut == topics_end + 3
            {
                assert!(r.is_ok(), "cut {cut}: {r:?}");
            } else {
                assert!(
                    matches!(r, Err(AssignmentError::Truncated { .. })),
                    "cut {cut}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn negative_counts_bad_version_and_bad_utf8_are_errors() {
        let mut b = 0i16.to_be_bytes().to_vec();
        b.extend((-2i32).to_be_bytes());
        assert!(matches!(
            parse(&b),
            Err(AssignmentError::Negative {
                what: "topic count",
                value: -2,
                ..
            })
        ));
        assert_eq!(
            parse(&(-1i16).to_be_bytes()),
            Err(AssignmentError::Version { version: -1 })
        );
        let mut b = encode(0, &[("ab", &[])], None);
        b[8] = 0xff; // first byte of the name
        assert_eq!(parse(&b), Err(AssignmentError::NotUtf8 { at: 8 }));
        // A huge partition count with few bytes fails without allocating it.
        let mut b = 0i16.to_be_bytes().to_vec();
        b.extend(1i32.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.push(b't');
        b.extend(i32::MAX.to_be_bytes());
        assert!(matches!(parse(&b), Err(AssignmentError::Truncated { .. })));
    }
}
