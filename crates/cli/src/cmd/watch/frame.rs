//! What one `watch` frame shows, computed from two successive samples, and its text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use super::assignment;

/// One member of the group as `DescribeGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberSample {
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    pub(crate) host: String,
    /// The raw consumer-protocol assignment bytes.
    pub(crate) assignment: Vec<u8>,
}

/// The group as listed by the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSample {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`...
    pub(crate) state: String,
    /// Assignor, e.g. `cooperative-sticky`.
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberSample>,
}

/// One partition of the watched topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionSample {
    pub(crate) partition: i32,
    /// High watermark (`None` when it could not be fetched).
    pub(crate) high: Option<i64>,
    /// The group's committed offset (`None`: no commit yet).
    pub(crate) committed: Option<i64>,
}

/// A dead letter reduced to what the view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LetterRow {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) class: String,
    pub(crate) message: String,
    /// `topic/partition@offset` of the record that failed.
    pub(crate) source: String,
    /// Source record timestamp (ms), to order letters of different partitions.
    pub(crate) timestamp: i64,
}

/// Everything one refresh read from the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) brokers: Result<usize, String>,
    /// `Err` when the group could not be listed; `Ok(None)` when the cluster does not know it.
    pub(crate) group: Result<Option<GroupSample>, String>,
    /// `Err` when the topic is missing or its metadata could not be read.
    pub(crate) partitions: Result<Vec<PartitionSample>, String>,
}

/// Static context of the view.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) bootstrap: String,
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) dlq_topic: String,
    pub(crate) interval_secs: f64,
    /// Refreshing (a footer says how to stop) rather than a single frame.
    pub(crate) live: bool,
}

/// Offsets per second from two readings `secs` apart (`None` if either is unknown or the
/// interval is empty).
pub(crate) fn rate(prev: Option<i64>, now: Option<i64>, secs: f64) -> Option<f64> {
    match (prev, now) {
        (Some(p), Some(n)) if secs > 0.0 => Some((n - p).max(0) as f64 / secs),
        _ => None,
    }
}

/// Replaces control characters (terminal escapes included) in text that comes from the cluster.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn per_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn list(ps: &[i32]) -> String {
    ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Renders a frame. `prev` is the previous sample (throughput needs two); `letters` the latest
/// dead letters (or why they could not be read).
pub(crate) fn render(
    ctx: &Context,
    now: &Sample,
    prev: Option<&Sample>,
    letters: &Result<Vec<LetterRow>, String>,
) -> String {
    let mut out = String::new();
    let members = header(&mut out, ctx, now);
    let (owners, member_lines) = members_of(ctx, members);
    let _ = writeln!(out);
    partitions(&mut out, ctx, now, prev, &owners);
    let _ = writeln!(out);
    let _ = writeln!(out, "members:");
    if member_lines.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for l in member_lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out);
    dead_letters(&mut out, ctx, letters);
    if ctx.live {
        let _ = writeln!(out);
        let _ = writeln!(out, "refresh every {}s — Ctrl-C to stop", ctx.interval_secs);
    }
    out
}

/// The cluster and group lines; the group's members.
fn header<'a>(out: &mut String, ctx: &Context, now: &'a Sample) -> &'a [MemberSample] {
    let brokers = match &now.brokers {
        Ok(n) => n.to_string(),
        Err(e) => format!("unreachable ({})", clean(e)),
    };
    let (state, protocol, members) = match &now.group {
        Ok(Some(g)) => (clean(&g.state), clean(&g.protocol), g.members.as_slice()),
        Ok(None) => ("Dead".to_owned(), String::new(), &[][..]),
        Err(e) => (format!("unknown ({})", clean(e)), String::new(), &[][..]),
    };
    let _ = writeln!(
        out,
        "orderstream watch — cluster {} ({brokers} brokers)",
        clean(&ctx.bootstrap)
    );
    let _ = writeln!(
        out,
        "group: {}   state: {state}{}   members: {}",
        clean(&ctx.group),
        if protocol.is_empty() {
            String::new()
        } else {
            format!(" ({protocol})")
        },
        members.len()
    );
    if state == "Dead" {
        let _ = writeln!(
            out,
            "no group of that name on the cluster (no member, no committed offset): is `--group` right?"
        );
    }
    members
}

/// Members labelled m1, m2, ... by member id: the owner of each partition of the topic, and
/// one line per member.
fn members_of(ctx: &Context, members: &[MemberSample]) -> (BTreeMap<i32, String>, Vec<String>) {
    let mut sorted: Vec<&MemberSample> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let mut owners: BTreeMap<i32, String> = BTreeMap::new();
    let mut member_lines = Vec::new();
    for (i, m) in sorted.iter().enumerate() {
        let label = format!(
            "m{}:{}@{}",
            i + 1,
            clean(&m.client_id),
            clean(m.host.trim_start_matches('/'))
        );
        match assignment::parse(&m.assignment) {
            Ok(a) => {
                for p in a.partitions(&ctx.topic) {
                    owners.insert(p, label.clone());
                }
                let topics = a
                    .topics
                    .iter()
                    .map(|(t, ps)| format!("{}[{}]", clean(t), list(ps)))
                    .collect::<Vec<_>>();
                member_lines.push(format!(
                    "  {label:<32} {}  {}",
                    clean(&m.member_id),
                    if topics.is_empty() {
                        "(no partitions yet)".to_owned()
                    } else {
                        topics.join(" ")
                    }
                ));
            }
            Err(e) => member_lines.push(format!(
                "  {label:<32} {}  assignment unreadable: {e}",
                clean(&m.member_id)
            )),
        }
    }
    (owners, member_lines)
}

/// The topic's partitions: owner, high watermark, committed offset, lag and rates since `prev`,
/// then the totals.
fn partitions(
    out: &mut String,
    ctx: &Context,
    now: &Sample,
    prev: Option<&Sample>,
    owners: &BTreeMap<i32, String>,
) {
    let parts = match &now.partitions {
        Err(e) => {
            let _ = writeln!(out, "topic {}: {}", clean(&ctx.topic), clean(e));
            return;
        }
        Ok(parts) => parts,
    };
    let secs = prev.map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64());
    let before: BTreeMap<i32, PartitionSample> = prev
        .and_then(|p| p.partitions.as_ref().ok())
        .map(|ps| ps.iter().map(|p| (p.partition, *p)).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "topic {} ({} partitions)",
        clean(&ctx.topic),
        parts.len()
    );
    let _ = writeln!(
        out,
        "{:>9}  {:<32} {:>12} {:>12} {:>14} {:>11}",
        "partition", "owner", "high", "committed", "lag", "consumed/s"
    );
    let (mut lag, mut consumed, mut produced) = (0i64, None::<f64>, None::<f64>);
    let mut uncommitted = 0usize;
    for p in parts {
        let b = before.get(&p.partition);
        let c = rate(b.and_then(|b| b.committed), p.committed, secs);
        let h = rate(b.and_then(|b| b.high), p.high, secs);
        consumed = c.map(|c| consumed.unwrap_or(0.0) + c).or(consumed);
        produced = h.map(|h| produced.unwrap_or(0.0) + h).or(produced);
        let lag_text = match (p.high, p.committed) {
            (Some(h), Some(c)) => {
                let l = (h - c).max(0);
                lag += l;
                l.to_string()
            }
            (_, None) => {
                uncommitted += 1;
                "no commits yet".to_owned()
            }
            (None, Some(_)) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>9}  {:<32} {:>12} {:>12} {:>14} {:>11}",
            p.partition,
            short(owners.get(&p.partition).map_or("-", String::as_str), 32),
            opt(p.high),
            p.committed
                .map_or_else(|| "none".to_owned(), |c| c.to_string()),
            lag_text,
            per_s(c),
        );
    }
    let lag_total = if uncommitted == parts.len() && !parts.is_empty() {
        "no commits yet".to_owned()
    } else if uncommitted > 0 {
        format!("{lag} ({uncommitted} partition(s) with no commits yet)")
    } else {
        lag.to_string()
    };
    let _ = writeln!(
        out,
        "totals: lag {lag_total} | consumed/s {} | produced/s {}",
        per_s(consumed),
        per_s(produced)
    );
}

/// The latest dead letters, or why they cannot be shown.
fn dead_letters(out: &mut String, ctx: &Context, letters: &Result<Vec<LetterRow>, String>) {
    match letters {
        Err(e) => {
            let _ = writeln!(
                out,
                "latest dead letters ({}): unavailable: {}",
                clean(&ctx.dlq_topic),
                clean(e)
            );
        }
        Ok(ls) if ls.is_empty() => {
            let _ = writeln!(out, "latest dead letters ({}): none", clean(&ctx.dlq_topic));
        }
        Ok(ls) => {
            let _ = writeln!(out, "latest dead letters ({}):", clean(&ctx.dlq_topic));
            for l in ls {
                let _ = writeln!(
                    out,
                    "  {:>10}  {:<20} from {}  {}",
                    format!("{}:{}", l.partition, l.offset),
                    short(&clean(&l.class), 20),
                    clean(&l.source),
                    short(&clean(&l.message), 100),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ctx() -> Context {
        Context {
            bootstrap: "k:9092".into(),
            group: "g".into(),
            topic: "orders".into(),
            dlq_topic: "orders.dlq".into(),
            interval_secs: 1.0,
            live: true,
        }
    }

    fn assignment(parts: &[i32]) -> Vec<u8> {
        let mut b = 3i16.to_be_bytes().to_vec();
        b.extend(1i32.to_be_bytes());
        b.extend(6i16.to_be_bytes());
        b.extend(b"orders");
        b.extend((parts.len() as i32).to_be_bytes());
        for p in parts {
            b.extend(p.to_be_bytes());
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    fn sample(
        at: Instant,
        group: Result<Option<GroupSample>, String>,
        parts: &[(i64, Option<i64>)],
    ) -> Sample {
        Sample {
            at,
            brokers: Ok(3),
            group,
            partitions: Ok(parts
                .iter()
                .enumerate()
                .map(|(i, (h, c))| PartitionSample {
                    partition: i as i32,
                    high: Some(*h),
                    committed: *c,
                })
                .collect()),
        }
    }

    fn row(frame: &str, p: i32) -> Vec<&str> {
        frame
            .lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .find(|t| t.first() == Some(&p.to_string().as_str()))
            .unwrap_or_default()
    }

    #[test]
    fn owners_lag_and_throughput() {
        let t0 = Instant::now();
        let group = Ok(Some(GroupSample {
            state: "Stable".into(),
            protocol: "cooperative-sticky".into(),
            members: vec![
                MemberSample {
                    member_id: "rdkafka-b".into(),
                    client_id: "rdkafka".into(),
                    host: "/10.0.0.2".into(),
                    assignment: assignment(&[1]),
                },
                MemberSample {
                    member_id: "rdkafka-a".into(),
                    client_id: "rdkafka".into(),
                    host: "/10.0.0.1".into(),
                    assignment: assignment(&[0]),
                },
            ],
        }));
        let prev = sample(t0, group.clone(), &[(100, Some(50)), (10, Some(10))]);
        let now = sample(
            t0 + Duration::from_secs(2),
            group,
            &[(120, Some(90)), (10, Some(10))],
        );
        let f = render(&ctx(), &now, Some(&prev), &Ok(vec![]));
        assert!(
            f.contains("state: Stable (cooperative-sticky)   members: 2"),
            "{f}"
        );
        assert!(!f.contains("is `--group` right?"), "{f}");
        assert_eq!(
            row(&f, 0),
            vec!["0", "m1:rdkafka@10.0.0.1", "120", "90", "30", "20.0"]
        );
        assert_eq!(
            row(&f, 1),
            vec!["1", "m2:rdkafka@10.0.0.2", "10", "10", "0", "0.0"]
        );
        assert!(
            f.contains("totals: lag 30 | consumed/s 20.0 | produced/s 10.0"),
            "{f}"
        );
        assert!(f.contains("orders[0]") && f.contains("orders[1]"), "{f}");
        assert!(f.contains("latest dead letters (orders.dlq): none"), "{f}");
    }

    #[test]
    fn missing_group_says_no_commits_yet() {
        let now = sample(Instant::now(), Ok(None), &[(5, None), (0, None)]);
        let f = render(&ctx(), &now, None, &Err("boom\x1b[2J".into()));
        assert!(f.contains("state: Dead   members: 0"), "{f}");
        assert!(f.contains("is `--group` right?"), "{f}");
        assert_eq!(
            row(&f, 0),
            vec!["0", "-", "5", "none", "no", "commits", "yet", "-"]
        );
        assert!(f.contains("totals: lag no commits yet | consumed/s - | produced/s -"));
        assert!(
            f.contains("unavailable: boom [2J"),
            "escapes are neutralised: {f}"
        );
        assert!(!f.contains('\x1b'));
    }

    #[test]
    fn bad_assignment_and_missing_topic_are_shown_not_fatal() {
        let group = Ok(Some(GroupSample {
            state: "Empty".into(),
            protocol: String::new(),
            members: vec![MemberSample {
                member_id: "x".into(),
                client_id: "c".into(),
                host: "h".into(),
                assignment: vec![0, 0, 0],
            }],
        }));
        let mut now = sample(Instant::now(), group, &[]);
        now.partitions = Err("does not exist — run `orderstream topics apply`".into());
        let letters = Ok(vec![LetterRow {
            partition: 2,
            offset: 7,
            class: "illegal_transition".into(),
            message: "paid before placed".into(),
            source: "orders/2@41".into(),
            timestamp: 1,
        }]);
        let f = render(&ctx(), &now, None, &letters);
        assert!(f.contains("assignment unreadable"), "{f}");
        assert!(f.contains("topic orders: does not exist"), "{f}");
        assert!(
            f.contains("2:7  illegal_transition   from orders/2@41  paid before placed"),
            "{f}"
        );
        assert!(f.contains("orders/2@41") && f.contains("paid before placed"));
    }

    #[test]
    fn rates() {
        assert_eq!(rate(Some(10), Some(30), 2.0), Some(10.0));
        assert_eq!(rate(None, Some(30), 2.0), None);
        assert_eq!(rate(Some(10), Some(30), 0.0), None);
        // A reset (e.g. offsets moved back) is not negative throughput.
        assert_eq!(rate(Some(30), Some(10), 1.0), Some(0.0));
    }
}
