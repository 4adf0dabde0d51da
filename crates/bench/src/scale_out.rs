//! ScaleOut-out 1 → 2 → 3 member processes: the bench binary re-runs itself as group members
//! (`--member-of`) that drain one backlog together, a fresh group per step.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use orderstream_consumer::{ConsumerConfig, ProcessError, Processor, Record, Topics};
use orderstream_schema::OrderCodec;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::clients::now_us;
use crate::util::{self, Mmm, PARTITIONS, Tools};

/// Decodes every record and counts it.
struct Count {
    codec: OrderCodec,
    first: std::sync::Mutex<Option<i64>>,
    last: std::sync::atomic::AtomicI64,
    n: std::sync::atomic::AtomicU64,
}

impl Processor for Count {
    async fn process(&self, rec: &Record) -> Result<(), ProcessError> {
        let bytes = rec.payload().unwrap_or_default();
        if self.codec.try_decode_cached(bytes).is_none() {
            let _ = self.codec.decode(bytes).await;
        }
        let now = now_us();
        if let Ok(mut f) = self.first.lock()
            && f.is_none()
        {
            *f = Some(now);
        }
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
        self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Child role: one group member on `topic` until stdin closes; then prints
/// `processed <n> <first µs> <last µs>`.
pub(crate) async fn member(
    bootstrap: &str,
    codec: &OrderCodec,
    topic: &str,
    group: &str,
) -> Result<()> {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        c.cancel();
    });
    let p = Arc::new(Count {
        codec: codec.clone(),
        first: std::sync::Mutex::new(None),
        last: std::sync::atomic::AtomicI64::new(0),
        n: std::sync::atomic::AtomicU64::new(0),
    });
    let cfg = ConsumerConfig {
        statistics_interval: Duration::ZERO,
        ..ConsumerConfig::new(
            bootstrap,
            group,
            Topics::new(topic, format!("{topic}-retry"), format!("{topic}-dlq")),
        )
    };
    orderstream_consumer::run(cfg, Arc::clone(&p), cancel).await?;
    let first = p.first.lock().ok().and_then(|f| *f).unwrap_or(0);
    println!(
        "processed {} {first} {}",
        p.n.load(std::sync::atomic::Ordering::Relaxed),
        p.last.load(std::sync::atomic::Ordering::Relaxed)
    );
    std::io::stdout().flush()?;
    Ok(())
}

/// One scale-out step.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) members: usize,
    /// Records over the time from the first to the last record any member processed.
    pub(crate) msgs_s: f64,
    /// Orders partitions per member at the end of the drain (from the broker).
    pub(crate) spread: Vec<usize>,
    pub(crate) processed: Vec<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct ScaleOut {
    pub(crate) records: u64,
    pub(crate) steps: Vec<Step>,
    pub(crate) errors: Vec<String>,
}

impl ScaleOut {
    /// Aggregate msgs/s of `members` members relative to one member.
    pub(crate) fn speedup(&self, members: usize) -> Option<f64> {
        let one = self.steps.iter().find(|s| s.members == 1)?.msgs_s;
        Some(self.steps.iter().find(|s| s.members == members)?.msgs_s / one)
    }
}

/// 1 → 2 → 3 member processes, each step on a fresh topic and group: the members join an empty
/// topic, and once the group has spread its partitions the backlog is produced into it.
pub(crate) async fn run(
    tools: &Tools,
    bootstrap: &str,
    registry: &str,
    codec: &OrderCodec,
    n: u64,
    topics: &mut Vec<String>,
) -> Result<ScaleOut> {
    let mut out = ScaleOut {
        records: n,
        ..ScaleOut::default()
    };
    for members in 1..=3usize {
        let topic = format!("bench-scale{members}-{}", std::process::id());
        util::create_topic(bootstrap, &topic).await?;
        topics.push(topic.clone());
        match step(tools, bootstrap, registry, codec, &topic, n, members).await {
            Ok(s) => {
                eprintln!(
                    "  scale-out {members}: {:.0} msgs/s, spread {:?}",
                    s.msgs_s, s.spread
                );
                out.steps.push(s);
            }
            Err(e) => out.errors.push(format!("{members} member(s): {e:#}")),
        }
    }
    Ok(out)
}

/// Runs a blocking call off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

async fn step(
    tools: &Tools,
    bootstrap: &str,
    registry: &str,
    codec: &OrderCodec,
    topic: &str,
    n: u64,
    members: usize,
) -> Result<Step> {
    let group = format!("{topic}-g");
    let args = [
        "--member-of".to_owned(),
        topic.to_owned(),
        "--group".to_owned(),
        group.clone(),
    ];
    let mut children: Vec<Child> = (0..members)
        .map(|_| util::child(bootstrap, registry, &args))
        .collect::<Result<_>>()?;
    let res = async {
        let even = vec![PARTITIONS as usize / members; members];
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut spread = Vec::new();
        while spread != even && Instant::now() < deadline {
            let (t, b, g, tp) = (
                tools.clone(),
                bootstrap.to_owned(),
                group.clone(),
                topic.to_owned(),
            );
            spread = blocking(move || describe_spread(&t, &b, &g, &tp)).await??;
            if spread != even {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        crate::clients::prefill(bootstrap, codec, topic, n).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (b, g, t) = (bootstrap.to_owned(), group.clone(), topic.to_owned());
            if blocking(move || committed_total(&b, &g, &t)).await?? >= n as i64 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{members} member(s) did not drain {n} records within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(spread)
    }
    .await;
    let mut processed = Vec::new();
    let (mut first, mut last) = (i64::MAX, 0i64);
    for c in &mut children {
        drop(c.stdin.take());
        if let Some(out) = c.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let f: Vec<i64> = line
                    .strip_prefix("processed ")
                    .map(|r| r.split(' ').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default();
                if let [count, f0, l0] = f[..] {
                    processed.push(count as u64);
                    if count > 0 {
                        first = first.min(f0);
                        last = last.max(l0);
                    }
                }
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let spread = res?;
    if processed.len() != members || last <= first {
        bail!("members reported {processed:?}");
    }
    Ok(Step {
        members,
        msgs_s: n as f64 / ((last - first) as f64 / 1e6),
        spread,
        processed,
    })
}

fn describe_spread(tools: &Tools, bootstrap: &str, group: &str, topic: &str) -> Result<Vec<usize>> {
    let out = tools.kafka_tool(&[
        "consumer-groups".into(),
        "--bootstrap-server".into(),
        bootstrap.into(),
        "--describe".into(),
        "--group".into(),
        group.into(),
        "--members".into(),
        "--verbose".into(),
    ])?;
    Ok(orderstream_testkit::partitions_per_member(
        &out, group, topic,
    ))
}

/// Sum of the committed offsets of `group` on `topic` (0 for partitions without a commit).
fn committed_total(bootstrap: &str, group: &str, topic: &str) -> Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum())
}

/// Member processed counts as `min–max` for the report.
pub(crate) fn share(processed: &[u64]) -> String {
    let v: Vec<f64> = processed.iter().map(|x| *x as f64).collect();
    let m = Mmm::of(&v);
    format!("{:.0}–{:.0}", m.min, m.max)
}
