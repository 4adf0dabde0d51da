//! The Markdown report (`BENCHMARKS.md`): a header, the targets table, then one section per
//! workload that ran, in the order they run; workloads that did not run leave no trace.

mod consumer;
mod producer;
mod sinks;
mod targets;

use std::fmt::Write as _;

use crate::util::Mmm;
use crate::{Args, Results, Tools};

fn pf(ok: bool) -> &'static str {
    if ok { "**PASS**" } else { "**MISS**" }
}

fn verdict(m: Mmm, ok: impl Fn(f64) -> bool) -> &'static str {
    if m.n == 0 { "n/a" } else { pf(ok(m.med)) }
}

/// The Python baseline in one phrase: versions, or `Python baseline not run: <reason>`.
fn python_note(tools: &Tools) -> String {
    match &tools.python {
        Ok(py) => format!(
            "Python `confluent-kafka` {} (wheel-bundled librdkafka {}, Python {}) sending the pre-encoded records",
            py.version("confluent_kafka"),
            py.version("librdkafka"),
            py.version("python")
        ),
        Err(why) => format!("Python baseline not run: {why}"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {} of memory",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
    )
}

pub(crate) fn render(args: &Args, rounds: usize, tools: &Tools, r: &Results) -> String {
    let mut s = String::new();
    header(&mut s, args, rounds, tools, r);
    let _ = writeln!(s, "## Targets\n\n{}", targets::table(r));
    if let Some(w) = &r.codec {
        producer::codec(&mut s, w);
    }
    if !r.produce.is_empty() {
        producer::produce(&mut s, &r.produce, tools);
    }
    if let Some(w) = &r.latency {
        consumer::latency(&mut s, w);
    }
    if let Some(w) = &r.drain {
        consumer::drain(&mut s, w);
    }
    if let Some(m) = &r.memory {
        consumer::memory(&mut s, m);
    }
    if !r.rebalance.is_empty() {
        consumer::rebalance(&mut s, &r.rebalance);
    }
    if let Some(sc) = &r.scale_out {
        consumer::scale_out(&mut s, sc);
    }
    if let Some(w) = &r.stage {
        sinks::stage(&mut s, w);
    }
    if let Some(w) = &r.store {
        sinks::store(&mut s, w);
    }
    if let Some(w) = &r.notify {
        sinks::notify(&mut s, w);
    }
    if !r.errors.is_empty() {
        let _ = writeln!(s, "## Errors\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

/// Title, how to read the figures, and what they were measured on and against.
fn header(s: &mut String, args: &Args, rounds: usize, tools: &Tools, r: &Results) {
    let (_, rdk_version) = rdkafka::util::get_rdkafka_version();
    let _ = writeln!(s, "# orderstream benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `scripts/bench.sh` (`orderstream-bench{}`), run time {:.0} s. Every figure is \
         `median (min–max)` over {rounds} rounds; comparisons are ratios against a baseline \
         measured in the same invocation, interleaved A/B/A/B. Absolute numbers are for this \
         machine at this moment only: read the ratios.\n",
        if args.quick { " --quick" } else { "" },
        r.elapsed.as_secs_f64()
    );
    let _ = writeln!(s, "- Machine: {}", machine());
    let _ = writeln!(s, "- Cluster: {}", r.cluster);
    let _ = writeln!(
        s,
        "- Versions: librdkafka {rdk_version} (rdkafka-sys, bundled), Apache Kafka brokers and tools from `scripts/kafka.sh`, Apicurio Registry from `scripts/registry.sh`, apache-avro 0.22{}",
        match &tools.python {
            Ok(py) => format!(
                "; Python baseline: confluent-kafka {} with its own bundled librdkafka {} (Python {})",
                py.version("confluent_kafka"),
                py.version("librdkafka"),
                py.version("python")
            ),
            Err(_) => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "- Baselines: `rdkafka_performance` {}; `ProducerPerformance` / `ConsumerPerformance` via `scripts/kafka.sh tool`; {}\n",
        if tools.rdkafka_performance.is_some() {
            "built from rdkafka-sys's librdkafka sources, linked with the same static librdkafka"
        } else {
            "NOT available (skipped)"
        },
        python_note(tools)
    );
}
