//! The latency workload's sender: a child process of this binary (`--sender-of TOPIC`) holding one
//! `OrderProducer`, which runs an open loop each time the parent asks. Services produce from
//! their own processes: a sender inside the consumer's process would share its async runtime and
//! its allocator with the consumer under test, and each would delay the other.
//!
//! Protocol, one line each way per run: the parent writes `PHASE FIRST_ID RATE N`; the child
//! answers `acked achieved=R p50=US p99=US p999=US max=US count=C` once every event was
//! acknowledged (scheduled send → acknowledgement). It writes `ready` once its producer is up and
//! exits when its stdin closes.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use orderstream_schema::OrderCodec;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::clients::{open_loop, producer};
use crate::latency::{LINGER_MS, Lat};
use crate::util::number_after;

/// Child role: serves runs until stdin closes.
pub(crate) async fn serve(bootstrap: &str, codec: &OrderCodec, topic: &str) -> Result<()> {
    let p = producer(bootstrap, codec, topic, LINGER_MS).await?;
    // stdin is read on a thread of its own (the runtime has no async stdio here)
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let answer = |line: &str| -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    };
    answer("ready")?;
    while let Some(line) = lines.recv().await {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [phase, first_id, rate, n] = f[..] else {
            bail!("sender: expected `PHASE FIRST_ID RATE N`, got {line:?}");
        };
        let (phase, first_id, rate, n) = (
            phase.parse::<i64>()?,
            first_id.parse::<u64>()?,
            rate.parse::<f64>()?,
            n.parse::<u64>()?,
        );
        let t = Instant::now();
        let acked = open_loop(&p, rate, n, phase, first_id, 0).await;
        let achieved = n as f64 / t.elapsed().as_secs_f64();
        let l = Lat::of(&acked);
        answer(&format!(
            "acked achieved={achieved:.1} p50={} p99={} p999={} max={} count={}",
            l.p50, l.p99, l.p999, l.max, l.count
        ))?;
    }
    p.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// The parent's handle on a sender process.
#[derive(Debug)]
pub(crate) struct Sender {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

impl Sender {
    /// Starts a sender for `topic` and waits until its producer is up.
    pub(crate) async fn start(bootstrap: &str, registry: &str, topic: &str) -> Result<Sender> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--bootstrap", bootstrap, "--registry-url", registry])
            .args(["--sender-of", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a sender process")?;
        let stdin = child.stdin.take().context("sender stdin")?;
        let out = BufReader::new(child.stdout.take().context("sender stdout")?).lines();
        let mut s = Sender { child, stdin, out };
        match tokio::time::timeout(Duration::from_secs(60), s.out.next_line()).await {
            Ok(Ok(Some(l))) if l == "ready" => Ok(s),
            other => bail!("the sender for {topic} did not start: {other:?}"),
        }
    }

    /// Sends `n` events at `rate`/s as phase `phase`; returns the achieved rate and the
    /// scheduled send → acknowledgement latencies.
    pub(crate) async fn run(
        &mut self,
        phase: i64,
        first_id: u64,
        rate: f64,
        n: u64,
    ) -> Result<(f64, Lat)> {
        self.stdin
            .write_all(format!("{phase} {first_id} {rate} {n}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        // the run's own length plus the producer's delivery timeout and some
        let limit = Duration::from_secs_f64(n as f64 / rate) + Duration::from_secs(180);
        let line = tokio::time::timeout(limit, self.out.next_line())
            .await
            .context("the sender process did not answer")??
            .context("the sender process ended")?;
        parse_acked(&line)
    }

    /// Closes its stdin and waits for it to flush and exit.
    pub(crate) async fn stop(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Reads a sender's answer: the achieved rate and the latencies.
fn parse_acked(line: &str) -> Result<(f64, Lat)> {
    let field = |k: &str| number_after(line, &format!("{k}=")).context(format!("{k} in {line:?}"));
    Ok((
        field("achieved")?,
        Lat {
            p50: field("p50")?,
            p99: field("p99")?,
            p999: field("p999")?,
            max: field("max")?,
            count: field("count")? as u64,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_back() {
        let line = "acked achieved=263000.5 p50=9000 p99=25000 p999=36000 max=43000 count=1315000";
        let (rate, l) = parse_acked(line).expect("parses");
        assert_eq!(rate, 263000.5);
        assert_eq!(
            (l.p50, l.p99, l.p999, l.max, l.count),
            (9000.0, 25000.0, 36000.0, 43000.0, 1_315_000)
        );
        assert!(parse_acked("acked achieved=1 p50=1").is_err());
    }
}
