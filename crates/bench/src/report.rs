//! The Markdown report (`BENCHMARKS.md`).

use std::fmt::Write as _;

use crate::util::Mmm;
use crate::{Args, Results, Tools};
use orderstream_producer::Compression;

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

    // ---------------- targets
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| # | target | measured (median, min–max) | verdict |\n|---|---|---|---|"
    );
    for x in r.w1.iter().filter(|x| x.setting.pad == 0) {
        let label = x.setting.label(x.size);
        let m = x.raw_vs_bare();
        let _ = writeln!(
            t,
            "| 1 | raw-bytes producer ≥ 1.0× the bare rust-rdkafka loop, same records ({label}) | {}× | {} |",
            m.fmt(2),
            verdict(m, |v| v >= 1.0)
        );
        if x.setting.compression == Compression::None {
            let m = x.raw_vs_rdk();
            let _ = writeln!(
                t,
                "| 1 | raw-bytes producer ≥ 0.90× `rdkafka_performance` ({label}) | {}× | {} |",
                m.fmt(2),
                verdict(m, |v| v >= 0.9)
            );
        } else {
            // rdkafka_performance sends one constant pattern, which compresses far better than
            // Avro: the comparable-payload ceiling under compression is the bare loop.
            let m = x.raw_vs_bare();
            let _ = writeln!(
                t,
                "| 1 | raw-bytes producer ≥ 0.80× a ceiling with comparable payloads: the bare loop ({label}) | {}× | {} |",
                m.fmt(2),
                verdict(m, |v| v >= 0.8)
            );
        }
        let m = x.raw_vs_py();
        let _ = writeln!(
            t,
            "| 1 | raw-bytes producer ≥ 2× Python confluent-kafka ({label}) | {}× | {} |",
            m.fmt(2),
            verdict(m, |v| v >= 2.0)
        );
    }
    for x in &r.w1 {
        let m = x.avro_vs_raw();
        let _ = writeln!(
            t,
            "| 2 | keyed idempotent Avro ≥ 0.90× raw bytes ({}) | {}× | {} |",
            x.setting.label(x.size),
            m.fmt(2),
            verdict(m, |v| v >= 0.9)
        );
    }
    if let Some(w) = &r.w0 {
        let _ = writeln!(
            t,
            "| 3 | encode ≤ 300 ns / event ({} B incl. header) | {} ns | {} |",
            w.encoded_len,
            w.enc_m().fmt(0),
            verdict(w.enc_m(), |x| x <= 300.0)
        );
        let _ = writeln!(
            t,
            "| 3 | decode ≤ 300 ns / event | {} ns | {} |",
            w.dec_m().fmt(0),
            verdict(w.dec_m(), |x| x <= 300.0)
        );
    }
    if let Some(w) = &r.w3 {
        for (label, java, rdk) in [
            (
                "decode + key-ordered handler + interval commits",
                w.vs_java(),
                w.vs_rdk(),
            ),
            (
                "the same with the batch handler (`run_batched`)",
                w.batch_vs_java(),
                w.batch_vs_rdk(),
            ),
        ] {
            let _ = writeln!(
                t,
                "| 4 | consumer drain, {label} ≥ 0.5× `rdkafka_performance -G` | {}× | {} |",
                rdk.fmt(2),
                verdict(rdk, |x| x >= 0.5)
            );
            let _ = writeln!(
                t,
                "| 4 | same ≥ 1.5× `ConsumerPerformance` fetch rate | {}× | {} |",
                java.fmt(2),
                verdict(java, |x| x >= 1.5)
            );
        }
        let _ = writeln!(
            t,
            "| 4 | interval commits ≥ 0.95× no-commit run | {}× | {} |",
            w.interval_vs_none().fmt(2),
            verdict(w.interval_vs_none(), |x| x >= 0.95)
        );
    }
    if let Some(w) = &r.w2
        && let Some((_, _, _, lats)) = w.levels.iter().find(|l| l.0 == "50%")
    {
        let p99 = Mmm::of(&lats.iter().map(|l| l.p99 / 1e3).collect::<Vec<_>>());
        let p999 = Mmm::of(&lats.iter().map(|l| l.p999 / 1e3).collect::<Vec<_>>());
        let lim = w.linger_ms as f64 + 5.0;
        let _ = writeln!(
            t,
            "| 5 | 50% load, linger {} ms: end-to-end p99 ≤ {lim:.0} ms | {} ms | {} |",
            w.linger_ms,
            p99.fmt(1),
            verdict(p99, |x| x <= lim)
        );
        let _ = writeln!(
            t,
            "| 5 | 50% load: end-to-end p99.9 ≤ 20 ms | {} ms | {} |",
            p999.fmt(1),
            verdict(p999, |x| x <= 20.0)
        );
    }
    if let Some(m) = &r.mem {
        let limit = m.base_rss_mib + m.budget_mib + crate::consume::MEM_OVERHEAD_MIB;
        let _ = writeln!(
            t,
            "| 6 | 10× slower handler, {:.0} s: peak RSS ≤ RSS before the member ({:.0} MiB) + budget {:.0} MiB + fixed overhead {:.0} MiB = {:.0} MiB | peak {:.0} MiB | {} |",
            m.secs,
            m.base_rss_mib,
            m.budget_mib,
            crate::consume::MEM_OVERHEAD_MIB,
            limit,
            m.peak_rss_mib,
            pf(m.peak_rss_mib <= limit)
        );
        let _ = writeln!(
            t,
            "| 6 | same: RSS at the end ≤ 1.05× RSS at half time (highest sample of the quarter of the phase, at most 10 s, before each) | {:.0} → {:.0} MiB ({:.2}×) | {} |",
            m.rss_half_mib,
            m.rss_end_mib,
            m.rss_end_mib / m.rss_half_mib,
            pf(m.rss_end_mib <= 1.05 * m.rss_half_mib)
        );
    }
    for w in &r.w5 {
        if w.error.is_none() {
            let _ = writeln!(
                t,
                "| 7 | rebalance 2→3→2, {}: 0 records reprocessed | {} of {} | {} |",
                w.protocol,
                w.reprocessed,
                w.processed,
                pf(w.reprocessed == 0)
            );
        }
    }
    if let Some(sc) = &r.scale {
        for st in &sc.steps {
            let even = vec![6 / st.members; st.members];
            let _ = writeln!(
                t,
                "| 8 | scale-out, {} member process(es): each owns 6 / {} orders partitions | {:?} | {} |",
                st.members,
                st.members,
                st.spread,
                pf(st.spread == even)
            );
        }
    }
    if let Some(w) = &r.w6 {
        let m = w.rabbit_vs_baseline();
        let _ = writeln!(
            t,
            "| 9 | RabbitMQ sink (confirmed, persistent, quorum queue) ≥ 10× channel-per-publish without confirms, notifications/s | {}× | {} |",
            m.fmt(1),
            verdict(m, |x| x >= 10.0)
        );
    }
    let _ = writeln!(s, "## Targets\n\n{t}");

    // ---------------- W0
    if let Some(w) = &r.w0 {
        let _ = writeln!(
            s,
            "## W0 codec (no broker)\n\nOrder event `OrderEvent::example()`, {} B encoded incl. the 5-byte Confluent header. \
             Warm cache: `encode_with_cached_id`, `try_decode_cached` (owned event), `try_decode_cached_into` (reused buffer). \
             Baselines in the same loop: apache-avro's generic `Value` path (`to_value` → `resolve` → `to_avro_datum`; \
             `from_avro_datum` → `from_value`) and apache-avro's schema-aware serde (`write_ser` / `read_deser`).\n",
            w.encoded_len
        );
        let _ = writeln!(
            s,
            "| operation | orderstream ns/op | Value path ns/op | speed-up vs Value | apache-avro serde ns/op |\n|---|---|---|---|---|"
        );
        let _ = writeln!(
            s,
            "| encode | {} | {} | {}× | {} |",
            w.enc_m().fmt(0),
            Mmm::of(&w.value_enc).fmt(0),
            w.enc_vs_value().fmt(1),
            Mmm::of(&w.serde_enc).fmt(0)
        );
        let _ = writeln!(
            s,
            "| decode | {} | {} | {}× | {} |",
            w.dec_m().fmt(0),
            Mmm::of(&w.value_dec).fmt(0),
            w.dec_vs_value().fmt(1),
            Mmm::of(&w.serde_dec).fmt(0)
        );
        let _ = writeln!(
            s,
            "| decode into a reused event | {} | | | |",
            Mmm::of(&w.dec_into).fmt(0)
        );
        let _ = writeln!(
            s,
            "\nTwo threads sharing one codec (encode + decode per op): one thread {} ns/op, two threads {} ns/op per thread; \
             ratio two/one {}× (1.0 = no contention; on 2 noisy cores anything below ~1.3 is within noise).\n",
            Mmm::of(&w.one_thread).fmt(0),
            Mmm::of(&w.two_threads).fmt(0),
            w.contention().fmt(2)
        );
        let _ = writeln!(
            s,
            "Cold lookup ({}): first `encode` on a fresh codec {} µs, first `decode` of an unknown id {} µs; \
             that is {:.0}× / {:.0}× a warm encode / decode, paid once per subject / schema id.\n",
            w.cold_note,
            Mmm::of(&w.cold_encode_us).fmt(0),
            Mmm::of(&w.cold_decode_us).fmt(0),
            Mmm::of(&w.cold_encode_us).med * 1e3 / w.enc_m().med,
            Mmm::of(&w.cold_decode_us).med * 1e3 / w.dec_m().med,
        );
    }

    // ---------------- W1
    if !r.w1.is_empty() {
        let _ = writeln!(
            s,
            "## W1 producer saturation\n\nIdempotent, acks=all, max in flight 5, keyed over 10 000 order ids (murmur2), Avro in the Confluent frame (the ~1 KB records pad a free-text note with words, about 2× under lz4) with \
             `event_id` + `content-type` headers; 8 concurrent workers × `send_batch` of 10 000 (at most 80 000 in flight, under librdkafka's queue of 100 000, as far ahead as the bare loop gets). `raw` = the same binary and producer sending \
             the same pre-encoded values and keys (`RawProducer::send_raw_batch`, same batching; only the shared `content-type` header, no per-record `event_id` header, so raw does slightly less work): the difference is the codec. \
             `bare rust-rdkafka loop` (baseline, `crates/bench/src/bare.rs`) is the code a user would write without orderstream: a `ThreadedProducer` with exactly our producer's librdkafka properties sending the same keys, values and `content-type` header, delivery reports only counted; the floor for raw. \
             `Python confluent-kafka` (baseline, `crates/bench/python/produce_baseline.py`, one process per round) sends the same pre-encoded keys, values and `content-type` header as raw, \
             with exactly our producer's librdkafka properties (murmur2 partitioner, so the same partitions) but through the librdkafka bundled in the wheel (version above): \
             a `produce()` loop (`poll(0)` every 1 000 records, `poll(0.1)` and retry on a full queue), then `flush()`; its timed window starts at the first `produce()` after a warm-up \
             (connections, producer id; interpreter start-up excluded), its CPU is the Python process's and its latency ends when `poll()`/`flush()` serves the delivery report. \
             `rdkafka_performance` (same librdkafka, `-a -1 -X enable.idempotence=true -X linger.ms=… -z … -X sticky.partitioning.linger.ms=0`, batch and queue limits as ours, 5× our record count so its ~0.5 s start-up — connect + idempotent producer id, during which it fills its queue — is amortised; its payload is a constant pattern, which lz4 compresses far better than Avro) and `ProducerPerformance` \
             (Java client defaults except acks/idempotence/linger/compression) send **unkeyed** records of the same size: ceilings. \
             Delivery latency = enqueue → ack (closed loop, so it is mostly queueing). CPU = this process's user+sys time (all threads) per message \
             (the Python baseline: its own process; n/a for the other external tools). The bench process overrides `malloc` with mimalloc (librdkafka's allocations included), like the `orderstream` binary; the external baselines use their own allocators.\n"
        );
        let _ = writeln!(
            s,
            "| setting | records/run | variant | msgs/s | MB/s | CPU µs/msg | delivery p50 / p99 / p99.9 ms |\n|---|---|---|---|---|---|---|"
        );
        for x in &r.w1 {
            for (name, v) in [
                ("Avro (OrderProducer)", &x.avro),
                ("raw bytes (RawProducer)", &x.raw),
                ("bare rust-rdkafka loop (baseline)", &x.bare),
                ("Python confluent-kafka (baseline)", &x.py),
                ("rdkafka_performance (5× records)", &x.rdk),
                ("ProducerPerformance", &x.java),
            ] {
                if v.runs.is_empty() && v.errors.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {name} | {} | {} | {} | {} / {} / {} |",
                    x.setting.label(x.size),
                    x.records,
                    v.m(|r| r.msgs_s).fmt(0),
                    v.m(|r| r.mb_s).fmt(1),
                    v.m(|r| r.cpu_us_per_msg).fmt(1),
                    v.m(|r| r.p50_us / 1e3).fmt(1),
                    v.m(|r| r.p99_us / 1e3).fmt(1),
                    v.m(|r| r.p999_us / 1e3).fmt(1),
                );
                for e in &v.errors {
                    let _ = writeln!(s, "| | | {name} error | {e} | | | |");
                }
            }
        }
        let _ = writeln!(
            s,
            "\n| setting | Avro / raw | raw / bare rust-rdkafka | raw / rdkafka_performance | bare rust-rdkafka / rdkafka_performance | raw Rust producer / Python confluent-kafka (baseline) | Avro / ProducerPerformance |\n|---|---|---|---|---|---|---|"
        );
        for x in &r.w1 {
            let _ = writeln!(
                s,
                "| {} | {}× | {}× | {}× | {}× | {}× | {}× |",
                x.setting.label(x.size),
                x.avro_vs_raw().fmt(2),
                x.raw_vs_bare().fmt(2),
                x.raw_vs_rdk().fmt(2),
                x.bare_vs_rdk().fmt(2),
                x.raw_vs_py().fmt(2),
                x.avro_vs_java().fmt(2)
            );
        }
        if let Err(why) = &tools.python {
            let _ = writeln!(s, "\nPython baseline not run: {why}");
        }
        let _ = writeln!(s);
    }

    // ---------------- W2
    if let Some(w) = &r.w2 {
        let _ = writeln!(
            s,
            "## W2 fixed-rate end-to-end latency\n\nOpen loop at a fraction of W1's Avro max ({:.0} msgs/s, linger {} ms, lz4): every event carries its *scheduled* \
             send time (`occurred_at_micros`); the consumer's handler (consumer crate `run`, decode) records `now − scheduled` in an HdrHistogram (µs). \
             Levels are interleaved (reference, 10, 50, 80 %, repeated); before each level the consumer must have caught up with everything sent (up to 45 s), so a backlog cannot leak into the next level; one histogram per level and round. A level the pipeline cannot sustain shows up as queueing (seconds). Max is reported, not targeted.\n",
            w.max_rate, w.linger_ms
        );
        let _ = writeln!(
            s,
            "| load | offered msgs/s | achieved msgs/s | records/round | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|"
        );
        for (name, offered, rate, lats) in &w.levels {
            let m = |g: fn(&crate::consume::Lat) -> f64| {
                Mmm::of(&lats.iter().map(|l| g(l) / 1e3).collect::<Vec<_>>()).fmt(1)
            };
            let _ = writeln!(
                s,
                "| {name} | {offered:.0} | {rate:.0} | {} | {} | {} | {} | {} |",
                lats.first().map_or(0, |l| l.count),
                m(|l| l.p50),
                m(|l| l.p99),
                m(|l| l.p999),
                m(|l| l.max),
            );
        }
        let _ = writeln!(s);
    }

    // ---------------- W3
    if let Some(w) = &r.w3 {
        let _ = writeln!(
            s,
            "## W3 consumer drain\n\nPre-filled topic, {} Avro records (~100 B, 6 partitions). orderstream = consumer crate `run` (new group each run, key-ordered \
             handler that decodes into a reused event and checks per-order sequence order, max concurrency 16 per partition; `batch` = `run_batched` with the same per-record work), rate from the first to the last handled record (group join excluded). \
             CPU = this process's user+sys time from the first to the last handled record, per record; context switches = voluntary + involuntary switches of all its threads (`/proc/self/task/*/status`) over the same span, per record. \
             `ConsumerPerformance`: its `fetch.nMsg.sec` (excludes the group join). `rdkafka_performance -G`: its msgs/s. Neither baseline decodes. \
             Variant order rotates every round. Per-message synchronous commits (the anti-pattern) are not offered by the consumer crate and were not run.\n",
            w.records
        );
        let _ = writeln!(s, "| variant | msgs/s | ratio |\n|---|---|---|");
        let _ = writeln!(
            s,
            "| orderstream, async frontier commit every 1 000 records or 1 s | {} | 1.00 |",
            Mmm::of(&w.interval).fmt(0)
        );
        let _ = writeln!(
            s,
            "| orderstream batch handler, async frontier commit every 1 000 records or 1 s | {} | {}× of interval |",
            Mmm::of(&w.batch).fmt(0),
            crate::util::ratio(&w.batch, &w.interval).fmt(2)
        );
        let _ = writeln!(
            s,
            "| orderstream, async commit every 100 records | {} | {}× of interval |",
            Mmm::of(&w.every100).fmt(0),
            crate::util::ratio(&w.every100, &w.interval).fmt(2)
        );
        let _ = writeln!(
            s,
            "| orderstream, no commits (final commit only) | {} | interval / this = {}× |",
            Mmm::of(&w.no_commit).fmt(0),
            w.interval_vs_none().fmt(2)
        );
        let _ = writeln!(
            s,
            "| ConsumerPerformance fetch rate | {} | interval / this = {}× |",
            Mmm::of(&w.java).fmt(0),
            w.vs_java().fmt(2)
        );
        let _ = writeln!(
            s,
            "| rdkafka_performance -G | {} | interval / this = {}× |",
            Mmm::of(&w.rdk).fmt(0),
            w.vs_rdk().fmt(2)
        );
        let _ = writeln!(
            s,
            "\nPer-order order violations seen by the handler: {}.\n\n| variant | CPU µs / record | context switches / record |\n|---|---|---|",
            w.out_of_order
        );
        for (label, (cpu, sw)) in &w.usage {
            let _ = writeln!(
                s,
                "| {label} | {} | {} |",
                Mmm::of(cpu).fmt(2),
                Mmm::of(sw).fmt(3)
            );
        }
        for e in &w.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        let _ = writeln!(s);
    }

    // ---------------- memory
    if let Some(m) = &r.mem {
        let _ = writeln!(
            s,
            "## Memory with a slow handler\n\nTwo processes: an open-loop producer (this binary, `--produce-only`) at {:.0} msgs/s of ~{} B events (a free-text note of words that compresses about 2× under lz4) for {:.0} s, and a fresh process of this binary (`--mem-phase-secs`, so its RSS holds nothing from earlier workloads) with one consumer member \
             (memory budget {:.0} MiB) whose handler sleeps ({} concurrent per partition) so it processes ~{:.0} msgs/s (10× slower). Offset window {} records per partition (pause / resume). \
             Produced {}, processed {}. RSS: start {:.1} MiB, at half time {:.1} MiB, at the end {:.1} MiB (each the highest 250 ms sample of the quarter of the phase, at most 10 s, before it), peak {:.1} MiB ({}).\n",
            m.produce_rate,
            m.record_bytes,
            m.secs,
            m.budget_mib,
            m.concurrency,
            m.handler_rate,
            m.window,
            m.produced,
            m.processed,
            m.base_rss_mib,
            m.rss_half_mib,
            m.rss_end_mib,
            m.peak_rss_mib,
            if m.hwm_reset {
                "VmHWM reset at the start of the phase"
            } else {
                "sampled every 250 ms"
            }
        );
    }

    // ---------------- W5
    if !r.w5.is_empty() {
        let _ = writeln!(
            s,
            "## W5 rebalance 2 → 3 → 2 under load\n\nOne topic (6 partitions) per protocol, open-loop producer; members are consumer crate `run`s in one process. \
             Gap = longest time a partition went without a processed record, from the change to the end of the observation window. \
             Time to stable = until the last stall > 200 ms after the change ended. Reprocessed = (partition, offset) handled more than once.\n"
        );
        let _ = writeln!(
            s,
            "| protocol | msgs/s | change | max gap ms | median gap ms | time to stable ms | processed | reprocessed |\n|---|---|---|---|---|---|---|---|"
        );
        for w in &r.w5 {
            if let Some(e) = &w.error {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | error: {e} | | | | | |",
                    w.protocol, w.rate
                );
            }
            for e in &w.events {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
                    w.protocol,
                    w.rate,
                    e.what,
                    e.max_gap_ms,
                    e.median_gap_ms,
                    e.time_to_stable_ms,
                    w.processed,
                    w.reprocessed
                );
            }
        }
        let _ = writeln!(
            s,
            "\nOne run per protocol (not repeated: W5 is a behaviour figure, not a ratio).\n"
        );
    }
    if let Some(sc) = &r.scale {
        let _ = writeln!(
            s,
            "## Scale-out: 1 → 2 → 3 member processes\n\nPer step a fresh topic (6 partitions) and group: N child processes (this binary, `--member-of`; default consumer config, retry topic consumed in its own group) join while it is empty; once `ConsumerGroupCommand --describe --members --verbose` shows the orders partitions spread (or after 60 s) this process produces {} records into it. \
             msgs/s = records / (last − first record handled by any member); the producer runs meanwhile on the same 2 cores, so this is a throughput of the whole pipeline. \
             On 2 cores more processes add no CPU: the figure shows the cost of the split, not a speed-up.\n\n| members | msgs/s | vs 1 member | orders partitions per member | records per member (min–max) |\n|---|---|---|---|---|",
            sc.records
        );
        for st in &sc.steps {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2}× | {:?} | {} |",
                st.members,
                st.msgs_s,
                sc.speedup(st.members).unwrap_or(f64::NAN),
                st.spread,
                crate::procs::share(&st.processed)
            );
        }
        for e in &sc.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        let _ = writeln!(s);
    }
    if let Some(w) = &r.w7 {
        let _ = writeln!(
            s,
            "## W7 transactional stage\n\nThe order-status stage (`run_transactional`, decode + JSON status record \
             per event) drains a {}-record backlog ({} partitions) with a fresh group per run, at most {} records per \
             transaction (commit interval 100 ms); the baseline is the same loop at least once \
             (`StageConfig::transactional = false`: idempotent producer flushed, then a plain offset commit). Rates count \
             from the first transformed record to the member's stop; rounds interleaved.\n\n\
             | variant | records/s | vs at least once |\n|---|---|---|\n\
             | transactions (exactly once) | {} | {}× |\n\
             | at least once (baseline) | {} | 1.00× |\n\n\
             Transactions per transactional drain: {}.",
            w.records,
            crate::util::PARTITIONS,
            w.batch,
            crate::util::Mmm::of(&w.transactional).fmt(0),
            w.ratio().fmt(2),
            crate::util::Mmm::of(&w.plain).fmt(0),
            crate::util::Mmm::of(&w.transactions).fmt(0),
        );
        for e in &w.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        let _ = writeln!(s);
    }
    if let Some(w) = &r.w8 {
        let _ = writeln!(
            s,
            "## W8 order projection in PostgreSQL\n\n`StoreProcessor` (decode, then inbox + order state machine + \
             customer totals) drains a {}-record backlog of complete order lifecycles ({} partitions, key order, a fresh group and \
             a fresh database per run, so every event has its effect). Batched: one database transaction per partition \
             batch of up to {} records; per record: `max_batch_records = 1`, one transaction per event, on a {}-record \
             backlog of the same shape. Each run checks, in the database, that every event was applied once and every \
             order ended delivered, and that nothing was refused. The baseline is the plain drain of the batched \
             variant's backlog (decode + key order, no store, W3's batch handler). Store rates count from the first \
             batch to the last event applied; rounds interleaved.\n\n\
             | variant | effects/s | vs plain drain | batched vs it |\n|---|---|---|---|\n\
             | batched transactions | {} | {}× | 1.00× |\n\
             | one transaction per record | {} | {}× | {}× |\n\
             | plain drain, no store (baseline) | {} | 1.00× | |",
            w.records,
            crate::util::PARTITIONS,
            w.batch,
            w.single_records,
            crate::util::Mmm::of(&w.batched).fmt(0),
            w.batched_vs_drain().fmt(2),
            crate::util::Mmm::of(&w.single).fmt(0),
            w.single_vs_drain().fmt(3),
            w.batched_vs_single().fmt(1),
            crate::util::Mmm::of(&w.drain).fmt(0),
        );
        for e in &w.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        let _ = writeln!(s);
    }
    if let Some(w) = &r.w6 {
        let _ = writeln!(
            s,
            "## W6 notifications\n\n{} notifications of new orders ({} B JSON bodies) per round, the same messages to each \
             sink, rounds interleaved. Our sinks publish rounds of {} (one partition's batch) and await every confirm: \
             RabbitMQ = `RabbitSink` (one connection, confirm-mode channel, persistent messages, durable quorum queue, \
             `mandatory` with an alternate exchange); NATS = `NatsSink` (JetStream file stream, `Nats-Msg-Id`, publish acks). \
             Baseline = a new channel per message, no confirms, no persistence flag, classic transient queue (the textbook \
             example). Kafka forward = the same bodies through an idempotent producer (acks=all, linger 5 ms) to a {}-partition topic.\n\n\
             | sink | notifications/s | our RabbitMQ sink vs it |\n|---|---|---|",
            w.messages,
            w.body_bytes,
            crate::notify::BATCH,
            crate::util::PARTITIONS
        );
        let _ = writeln!(
            s,
            "| RabbitMQ sink (ours) | {} | 1.00× |",
            crate::notify::W6::m(&w.rabbit).fmt(0)
        );
        let _ = writeln!(
            s,
            "| channel per publish, no confirms (baseline) | {} | {}× |",
            crate::notify::W6::m(&w.baseline).fmt(0),
            w.rabbit_vs_baseline().fmt(1)
        );
        let _ = writeln!(
            s,
            "| NATS JetStream sink (ours) | {} | {}× |",
            crate::notify::W6::m(&w.nats).fmt(0),
            w.rabbit_vs_nats().fmt(2)
        );
        let _ = writeln!(
            s,
            "| Kafka→Kafka forward | {} | {}× |",
            crate::notify::W6::m(&w.kafka).fmt(0),
            w.rabbit_vs_kafka().fmt(2)
        );
        for e in &w.errors {
            let _ = writeln!(s, "\n- error: {e}");
        }
        let _ = writeln!(s);
    }
    if !r.errors.is_empty() {
        let _ = writeln!(s, "## Errors\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}
