//! Shared helpers: statistics over rounds, process CPU / RSS from `/proc`, order-event
//! generation, topic administration and the external baseline tools.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use orderstream_schema::OrderEvent;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Keys (order ids) the keyed workloads spread over.
pub(crate) const KEYS: usize = 10_000;
/// Partitions of every bench topic.
pub(crate) const PARTITIONS: i32 = 6;

/// min / median / max of a set of rounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mmm {
    pub(crate) min: f64,
    pub(crate) med: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

impl Mmm {
    pub(crate) fn of(v: &[f64]) -> Mmm {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Mmm {
                min: f64::NAN,
                med: f64::NAN,
                max: f64::NAN,
                n: 0,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let med = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Mmm {
            min: v[0],
            med,
            max: v[n - 1],
            n,
        }
    }

    /// `median (min–max)` with `prec` decimals.
    pub(crate) fn fmt(&self, prec: usize) -> String {
        if self.n == 0 {
            return "n/a".to_owned();
        }
        format!(
            "{:.p$} ({:.p$}–{:.p$})",
            self.med,
            self.min,
            self.max,
            p = prec
        )
    }
}

/// Element-wise ratio of paired rounds (`a[i] / b[i]`), as min/median/max.
pub(crate) fn ratio(a: &[f64], b: &[f64]) -> Mmm {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    Mmm::of(&r)
}

/// CPU time (user + system) of this process, all threads, from `/proc/self/stat`
/// (clock ticks; USER_HZ is 100 on Linux).
pub(crate) fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the `(comm)`: state is field 3; utime 14, stime 15 (1-based).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // rest starts at field 3 → index 0; utime = field 14 → index 11.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Context switches (voluntary + involuntary) of every live thread of this process, by thread
/// id, from `/proc/self/task/*/status` (`/proc/self/status` covers the main thread only).
pub(crate) fn thread_switches() -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let n: u64 = st
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(tid, n);
    }
    out
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
pub(crate) fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

/// Resets the peak-RSS counter (`VmHWM`) of this process (Linux ≥ 4.0).
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Order event `i`, keyed over [`KEYS`] order ids. `pad` extra bytes in `note` make a ~1 KB event.
pub(crate) fn event(i: u64, pad: usize) -> OrderEvent {
    orderstream_orders::fixtures::numbered(i, KEYS as u64, pad)
}

pub(crate) fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// Live broker count.
pub(crate) fn brokers(bootstrap: &str) -> Result<usize> {
    let a = admin(bootstrap)?;
    Ok(a.inner()
        .fetch_metadata(None, Duration::from_secs(10))?
        .brokers()
        .len())
}

/// Creates `name` with [`PARTITIONS`] partitions (RF 3 / min ISR 2 on ≥ 3 brokers, else RF 1)
/// and waits until every partition has a leader.
pub(crate) async fn create_topic(bootstrap: &str, name: &str) -> Result<()> {
    let a = admin(bootstrap)?;
    let rf = if brokers(bootstrap)? >= 3 { 3 } else { 1 };
    let t = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(rf))
        .set("min.insync.replicas", if rf == 3 { "2" } else { "1" });
    for r in a.create_topics([&t], &AdminOptions::new()).await? {
        if let Err((topic, code)) = r {
            bail!("creating topic {topic}: {code}");
        }
    }
    for _ in 0..100 {
        let md = a
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))?;
        let ok = md.topics().first().is_some_and(|t| {
            t.partitions().len() == PARTITIONS as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ok {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("topic {name}: partitions without a leader after 10 s")
}

pub(crate) async fn delete_topics(bootstrap: &str, names: &[String]) {
    if let Ok(a) = admin(bootstrap) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = a.delete_topics(&refs, &AdminOptions::new()).await;
    }
}

/// Where the external tools are.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) root: PathBuf,
    pub(crate) rdkafka_performance: Option<PathBuf>,
    /// The Python `confluent-kafka` baseline, or why it is not run.
    pub(crate) python: Result<PythonBaseline, String>,
}

/// A Python interpreter with `confluent_kafka` importable (scripts/bench.sh's venv).
#[derive(Debug, Clone)]
pub(crate) struct PythonBaseline {
    pub(crate) python: PathBuf,
    /// `confluent_kafka=… librdkafka=… python=…`, as the script prints it.
    pub(crate) versions: String,
}

impl PythonBaseline {
    /// A `versions` field (`confluent_kafka`, `librdkafka`, `python`), or `?`.
    pub(crate) fn version(&self, name: &str) -> &str {
        self.versions
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("?")
    }
}

/// `crates/bench/python/produce_baseline.py`.
pub(crate) fn python_script(root: &Path) -> PathBuf {
    root.join("crates/bench/python/produce_baseline.py")
}

/// Checks the Python baseline: `python` runs the script's `--version` (which imports
/// `confluent_kafka`). Without an interpreter, `unavailable` (scripts/bench.sh's reason) or a
/// note that none was given.
pub(crate) fn python_baseline(
    root: &Path,
    python: Option<&Path>,
    unavailable: Option<&str>,
) -> Result<PythonBaseline, String> {
    let Some(python) = python else {
        return Err(unavailable.map_or_else(
            || "no interpreter given (--python / ORDERSTREAM_BENCH_PYTHON; scripts/bench.sh installs one)".to_owned(),
            str::to_owned,
        ));
    };
    let out = Command::new(python)
        .arg(python_script(root))
        .arg("--version")
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !stdout.contains("confluent_kafka=") {
        return Err(format!(
            "`{} produce_baseline.py --version` failed: {}",
            python.display(),
            tail(&String::from_utf8_lossy(&out.stderr), 2)
        ));
    }
    Ok(PythonBaseline {
        python: python.to_owned(),
        versions: stdout,
    })
}

impl Tools {
    fn kafka_sh(&self) -> PathBuf {
        self.root.join("scripts/kafka.sh")
    }

    /// `scripts/kafka.sh tool ARGS`: stdout.
    pub(crate) fn kafka_tool(&self, args: &[String]) -> Result<String> {
        let out = Command::new("bash")
            .arg(self.kafka_sh())
            .arg("tool")
            .args(args)
            .output()
            .context("running scripts/kafka.sh tool")?;
        if !out.status.success() {
            bail!(
                "kafka.sh tool {} failed: {}",
                args.first().map_or("", String::as_str),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `rdkafka_performance ARGS`: combined stdout + stderr.
    pub(crate) fn rdkperf(&self, args: &[String]) -> Result<String> {
        let Some(bin) = &self.rdkafka_performance else {
            bail!("rdkafka_performance not built");
        };
        let out = Command::new(bin)
            .args(args)
            .output()
            .context("running rdkafka_performance")?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("rdkafka_performance failed: {}", tail(&s, 3));
        }
        Ok(s)
    }

    /// `produce_baseline.py ARGS`: its stdout; a non-zero exit is an error carrying its stderr.
    pub(crate) fn python_produce(&self, args: &[String]) -> Result<String> {
        let py = match &self.python {
            Ok(py) => py,
            Err(why) => bail!("Python baseline not run: {why}"),
        };
        let out = Command::new(&py.python)
            .arg(python_script(&self.root))
            .args(args)
            .output()
            .context("running produce_baseline.py")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "produce_baseline.py failed ({}): {} {}",
                out.status,
                tail(&stdout, 1),
                tail(&String::from_utf8_lossy(&out.stderr), 3)
            );
        }
        Ok(stdout)
    }
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().rev().take(n).collect();
    v.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// First number in `s` after `marker` (e.g. `" in "` for `in 1630ms`).
pub(crate) fn number_after(s: &str, marker: &str) -> Option<f64> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// The number right before `marker` (e.g. `" msgs/s"`).
pub(crate) fn number_before(s: &str, marker: &str) -> Option<f64> {
    let head = &s[..s.find(marker)?];
    let num: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    num.parse().ok()
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child run of this binary with `args`, given the parent's cluster and registry.
pub(crate) fn child(bootstrap: &str, registry: &str, args: &[String]) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["--bootstrap", bootstrap, "--registry-url", registry])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a child bench process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmm_and_parsing() {
        let m = Mmm::of(&[3.0, 1.0, 2.0]);
        assert_eq!((m.min, m.med, m.max), (1.0, 2.0, 3.0));
        let line = "% 50000 messages produced (5000000 bytes), 50000 delivered (offset 49997, 0 failed) in 1630ms: 30659 msgs/s and 3.07 MB/s";
        assert_eq!(number_before(line, " msgs/s"), Some(30659.0));
        assert_eq!(number_after(line, ") in "), Some(1630.0));
        let py = "delivered=30000 errors=0 elapsed_ms=171.250 cpu_ms=99.000 p50_us=27186 p99_us=51034 p999_us=nan confluent_kafka=2.16.1 librdkafka=2.16.0 python=3.11.7";
        assert_eq!(number_after(py, "elapsed_ms="), Some(171.25));
        assert_eq!(number_after(py, "p99_us="), Some(51034.0));
        assert_eq!(number_after(py, "p999_us="), None);
        let b = PythonBaseline {
            python: PathBuf::from("python3"),
            versions: "confluent_kafka=2.16.1 librdkafka=2.16.0 python=3.11.7".to_owned(),
        };
        assert_eq!(b.version("librdkafka"), "2.16.0");
        assert_eq!(b.version("confluent_kafka"), "2.16.1");
        assert_eq!(b.version("java"), "?");
        assert!(process_cpu() >= Duration::ZERO);
        assert!(!event(1, 0).event_id.is_empty());
    }
}
