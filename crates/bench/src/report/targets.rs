//! The targets table: one row per target, each named by its workload, in the order the
//! workloads' sections appear below it.

use std::fmt::Write as _;

use orderstream_producer::Compression;

use super::{pf, verdict};
use crate::Results;
use crate::codec::Codec;
use crate::drain::Drain;
use crate::latency::{Latency, ms};
use crate::memory::Memory;
use crate::notify::Notify;
use crate::produce::SettingResult;
use crate::rebalance::Rebalance;
use crate::scale_out::ScaleOut;

pub(super) fn table(r: &Results) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| workload | target | measured (median, min–max) | verdict |\n|---|---|---|---|"
    );
    produce(&mut t, &r.produce);
    if let Some(w) = &r.codec {
        codec(&mut t, w);
    }
    if let Some(w) = &r.drain {
        drain(&mut t, w);
    }
    if let Some(w) = &r.latency {
        latency(&mut t, w);
    }
    if let Some(m) = &r.memory {
        memory(&mut t, m);
    }
    rebalance(&mut t, &r.rebalance);
    if let Some(sc) = &r.scale_out {
        scale_out(&mut t, sc);
    }
    if let Some(w) = &r.notify {
        notify(&mut t, w);
    }
    t
}

fn produce(t: &mut String, runs: &[SettingResult]) {
    for x in runs.iter().filter(|x| x.setting.pad == 0) {
        let label = x.setting.label(x.size);
        let m = x.raw_vs_bare();
        let _ = writeln!(
            t,
            "| produce | raw-bytes producer ≥ 1.0× the bare rust-rdkafka loop, same records ({label}) | {}× | {} |",
            m.fmt(2),
            verdict(m, |v| v >= 1.0)
        );
        if x.setting.compression == Compression::None {
            let m = x.raw_vs_rdk();
            let _ = writeln!(
                t,
                "| produce | raw-bytes producer ≥ 0.90× `rdkafka_performance` ({label}) | {}× | {} |",
                m.fmt(2),
                verdict(m, |v| v >= 0.9)
            );
        } else {
            // rdkafka_performance sends one constant pattern, which compresses far better than
            // Avro: the comparable-payload ceiling under compression is the bare loop.
            let m = x.raw_vs_bare();
            let _ = writeln!(
                t,
                "| produce | raw-bytes producer ≥ 0.80× a ceiling with comparable payloads: the bare loop ({label}) | {}× | {} |",
                m.fmt(2),
                verdict(m, |v| v >= 0.8)
            );
        }
        let m = x.raw_vs_py();
        let _ = writeln!(
            t,
            "| produce | raw-bytes producer ≥ 2× Python confluent-kafka ({label}) | {}× | {} |",
            m.fmt(2),
            verdict(m, |v| v >= 2.0)
        );
    }
    for x in runs {
        let m = x.avro_vs_raw();
        let _ = writeln!(
            t,
            "| produce | keyed idempotent Avro ≥ 0.90× raw bytes ({}) | {}× | {} |",
            x.setting.label(x.size),
            m.fmt(2),
            verdict(m, |v| v >= 0.9)
        );
    }
}

fn codec(t: &mut String, w: &Codec) {
    let _ = writeln!(
        t,
        "| codec | encode ≤ 300 ns / event ({} B incl. header) | {} ns | {} |",
        w.encoded_len,
        w.enc_m().fmt(0),
        verdict(w.enc_m(), |x| x <= 300.0)
    );
    let _ = writeln!(
        t,
        "| codec | decode ≤ 300 ns / event | {} ns | {} |",
        w.dec_m().fmt(0),
        verdict(w.dec_m(), |x| x <= 300.0)
    );
}

fn drain(t: &mut String, w: &Drain) {
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
            "| drain | consumer drain, {label} ≥ 0.5× `rdkafka_performance -G` | {}× | {} |",
            rdk.fmt(2),
            verdict(rdk, |x| x >= 0.5)
        );
        let _ = writeln!(
            t,
            "| drain | same ≥ 1.5× `ConsumerPerformance` fetch rate | {}× | {} |",
            java.fmt(2),
            verdict(java, |x| x >= 1.5)
        );
    }
    let _ = writeln!(
        t,
        "| drain | interval commits ≥ 0.95× no-commit run | {}× | {} |",
        w.interval_vs_none().fmt(2),
        verdict(w.interval_vs_none(), |x| x >= 0.95)
    );
}

/// The targets hold at half the max rate (see [`crate::latency::MaxRate`]); the bare loop's
/// figure is context.
fn latency(t: &mut String, w: &Latency) {
    let Some(level) = w.levels.iter().find(|l| l.name == "50%") else {
        return;
    };
    let p99 = ms(&level.ours.end_to_end, |l| l.p99);
    let p999 = ms(&level.ours.end_to_end, |l| l.p999);
    let lim = w.linger_ms as f64 + 5.0;
    let _ = writeln!(
        t,
        "| latency | 50% load, linger {} ms: end-to-end p99 ≤ {lim:.0} ms | {} ms (bare rust-rdkafka loop, same run: {} ms; acknowledged by then: {} ms) | {} |",
        w.linger_ms,
        p99.fmt(1),
        ms(&level.bare.end_to_end, |l| l.p99).fmt(1),
        ms(&level.ours.acked, |l| l.p99).fmt(1),
        verdict(p99, |x| x <= lim)
    );
    let _ = writeln!(
        t,
        "| latency | 50% load: end-to-end p99.9 ≤ 20 ms | {} ms (bare rust-rdkafka loop: {} ms) | {} |",
        p999.fmt(1),
        ms(&level.bare.end_to_end, |l| l.p999).fmt(1),
        verdict(p999, |x| x <= 20.0)
    );
}

fn memory(t: &mut String, m: &Memory) {
    let limit = m.base_rss_mib + m.budget_mib + crate::memory::MEM_OVERHEAD_MIB;
    let _ = writeln!(
        t,
        "| memory | 10× slower handler, {:.0} s: peak RSS ≤ RSS before the member ({:.0} MiB) + budget {:.0} MiB + fixed overhead {:.0} MiB = {:.0} MiB | peak {:.0} MiB | {} |",
        m.secs,
        m.base_rss_mib,
        m.budget_mib,
        crate::memory::MEM_OVERHEAD_MIB,
        limit,
        m.peak_rss_mib,
        pf(m.peak_rss_mib <= limit)
    );
    let _ = writeln!(
        t,
        "| memory | same: RSS at the end ≤ 1.05× RSS at half time (highest sample of the quarter of the phase, at most 10 s, before each) | {:.0} → {:.0} MiB ({:.2}×) | {} |",
        m.rss_half_mib,
        m.rss_end_mib,
        m.rss_end_mib / m.rss_half_mib,
        pf(m.rss_end_mib <= 1.05 * m.rss_half_mib)
    );
}

fn rebalance(t: &mut String, runs: &[Rebalance]) {
    for w in runs {
        if w.error.is_none() {
            let _ = writeln!(
                t,
                "| rebalance | rebalance 2→3→2, {}: 0 records reprocessed | {} of {} | {} |",
                w.protocol,
                w.reprocessed,
                w.processed,
                pf(w.reprocessed == 0)
            );
        }
    }
}

fn scale_out(t: &mut String, sc: &ScaleOut) {
    for st in &sc.steps {
        let even = vec![6 / st.members; st.members];
        let _ = writeln!(
            t,
            "| scale-out | scale-out, {} member process(es): each owns 6 / {} orders partitions | {:?} | {} |",
            st.members,
            st.members,
            st.spread,
            pf(st.spread == even)
        );
    }
}

fn notify(t: &mut String, w: &Notify) {
    let m = w.rabbit_vs_baseline();
    let _ = writeln!(
        t,
        "| notify | RabbitMQ sink (confirmed, persistent, quorum queue) ≥ 10× channel-per-publish without confirms, notifications/s | {}× | {} |",
        m.fmt(1),
        verdict(m, |x| x >= 10.0)
    );
}
