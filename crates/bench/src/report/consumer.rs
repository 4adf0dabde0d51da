//! The sections of the workloads with a consumer: latency, drain, memory, rebalance, scale-out.

use std::fmt::Write as _;

use crate::drain::Drain;
use crate::latency::{Lat, Latency, ms};
use crate::memory::Memory;
use crate::rebalance::Rebalance;
use crate::scale_out::ScaleOut;
use crate::util::{Mmm, ratio};

pub(super) fn latency(s: &mut String, w: &Latency) {
    let _ = writeln!(
        s,
        "## End-to-end latency at a fixed rate\n\nOpen loop at fractions of {} ({:.0} msgs/s; the senders use linger {} ms, lz4): every event carries its *scheduled* \
         send time (`occurred_at_micros`); the consumer records `now − scheduled` in an HdrHistogram (µs) after decoding the event. Two consumers, each with its own topic and its own \
         producer (`OrderProducer`, the same settings): orderstream = the consumer crate's `run`; bare rust-rdkafka loop (baseline, `crates/bench/src/bare_consumer.rs`) = a plain \
         `BaseConsumer` poll loop with our fetch wait and fetch backoff and automatic commits, the code a user would write without orderstream. `acked` = scheduled send → the producer's \
         acknowledgement of the same events: the part of the end-to-end latency spent before any consumer could see them (it counts from the hand-over of each 1 ms batch of events plus each event's own enqueue → acknowledgement, \
         so the enqueueing of the events before it in its batch, under a millisecond unless librdkafka's queue is full, is left out); \
         where an end-to-end tail (p99.9, max) matches the acknowledgements' of the same consumer and level, the records were late before any consumer could read them. \
         Each sender is a process of its own (this binary, `--sender-of`), as a service producing orders would be: the consumers' process holds the two consumers alone, and its CPU time per record handled \
         (from the start of a run until its consumer caught up; not counted for a run whose consumer did not catch up) is the running consumer's plus the idle one's polling (which dominates at 1 000 msgs/s). All of them, the broker included, share the machine's cores. \
         Levels and consumers are interleaved (reference, 10, 50, 80 %, repeated; which consumer goes first alternates from one level to the next); before each step its consumer must have caught up with everything sent \
         to it (up to 45 s), so a backlog cannot leak into the next step; one histogram per level, consumer and round. A level the pipeline cannot sustain shows up as queueing (seconds). Max is reported, not targeted.\n",
        w.max_rate.from, w.max_rate.msgs_s, w.linger_ms
    );
    let _ = writeln!(
        s,
        "| load | consumer | offered msgs/s | achieved msgs/s | records/round | p50 ms | p99 ms | p99.9 ms | max ms | acked p50 / p99 / p99.9 / max ms | consumer CPU µs / record |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for level in &w.levels {
        for (consumer, lane) in [
            ("orderstream", &level.ours),
            ("bare rust-rdkafka loop (baseline)", &level.bare),
        ] {
            let m = |v: &[Lat], field: fn(&Lat) -> f64| ms(v, field).fmt(1);
            let _ = writeln!(
                s,
                "| {} | {consumer} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} |",
                level.name,
                level.offered,
                lane.achieved(),
                lane.end_to_end.first().map_or(0, |l| l.count),
                m(&lane.end_to_end, |l| l.p50),
                m(&lane.end_to_end, |l| l.p99),
                m(&lane.end_to_end, |l| l.p999),
                m(&lane.end_to_end, |l| l.max),
                m(&lane.acked, |l| l.p50),
                m(&lane.acked, |l| l.p99),
                m(&lane.acked, |l| l.p999),
                m(&lane.acked, |l| l.max),
                Mmm::of(&lane.cpu_us_per_record).fmt(2),
            );
        }
    }
    let _ = writeln!(s);
}

pub(super) fn drain(s: &mut String, w: &Drain) {
    let _ = writeln!(
        s,
        "## Consumer drain\n\nPre-filled topic, {} Avro records (~100 B, 6 partitions). orderstream = consumer crate `run` (new group each run, key-ordered \
         handler that decodes into a reused event and checks per-order sequence order, max concurrency 16 per partition; `batch` = `run_batched` with the same per-record work), rate from the first to the last handled record (group join excluded). \
         CPU = this process's user+sys time from the first to the last handled record, per record; context switches = voluntary + involuntary switches of all its threads (`/proc/self/task/*/status`) over the same span, per record. \
         `ConsumerPerformance`: its `fetch.nMsg.sec` (excludes the group join). `rdkafka_performance -G`: its msgs/s; with `-H parse` it also has librdkafka parse every record's headers, as turning a message into a `Record` does (the plain run never asks for them). Neither baseline decodes. \
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
        ratio(&w.batch, &w.interval).fmt(2)
    );
    let _ = writeln!(
        s,
        "| orderstream, async commit every 100 records | {} | {}× of interval |",
        Mmm::of(&w.every100).fmt(0),
        ratio(&w.every100, &w.interval).fmt(2)
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
        "| rdkafka_performance -G -H parse (also parses each record's headers) | {} | interval / this = {}× |",
        Mmm::of(&w.rdk_headers).fmt(0),
        w.vs_rdk_headers().fmt(2)
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

pub(super) fn memory(s: &mut String, m: &Memory) {
    let _ = writeln!(
        s,
        "## Memory with a slow handler\n\nTwo processes: an open-loop producer (this binary, `--produce-only`) at {:.0} msgs/s of ~{} B events (a free-text note of words that compresses about 2× under lz4) for {:.0} s, and a fresh process of this binary (`--mem-phase-secs`, so its RSS holds nothing from earlier workloads) with one consumer member \
         (memory budget {:.0} MiB) whose handler sleeps ({} concurrent per partition) so it processes ~{:.0} msgs/s (10× slower). Offset window {} records per partition (pause / resume). \
         Produced {}, processed {}; partition pauses {}. RSS: start {:.1} MiB, at half time {:.1} MiB, at the end {:.1} MiB (each the highest 250 ms sample of the quarter of the phase, at most 10 s, before it), peak {:.1} MiB ({}).\n",
        m.produce_rate,
        m.record_bytes,
        m.secs,
        m.budget_mib,
        m.concurrency,
        m.handler_rate,
        m.window,
        m.produced,
        m.processed,
        m.pauses,
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

pub(super) fn rebalance(s: &mut String, runs: &[Rebalance]) {
    let _ = writeln!(
        s,
        "## Rebalance 2 → 3 → 2 under load\n\nOne topic (6 partitions) per protocol, open-loop producer; members are consumer crate `run`s in one process. \
         Gap = longest time a partition went without a processed record, from the change to the end of the observation window. \
         Time to stable = until the last stall > 200 ms after the change ended. Reprocessed = (partition, offset) handled more than once.\n"
    );
    let _ = writeln!(
        s,
        "| protocol | msgs/s | change | max gap ms | median gap ms | time to stable ms | processed | reprocessed |\n|---|---|---|---|---|---|---|---|"
    );
    for w in runs {
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
        "\nOne run per protocol (not repeated: the rebalance is a behaviour figure, not a ratio).\n"
    );
}

pub(super) fn scale_out(s: &mut String, sc: &ScaleOut) {
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
            crate::scale_out::share(&st.processed)
        );
    }
    for e in &sc.errors {
        let _ = writeln!(s, "\n- error: {e}");
    }
    let _ = writeln!(s);
}
