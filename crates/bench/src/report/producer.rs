//! The sections of the workloads without a consumer: the codec and the producer.

use std::fmt::Write as _;

use crate::Tools;
use crate::codec::Codec;
use crate::produce::SettingResult;
use crate::util::Mmm;

pub(super) fn codec(s: &mut String, w: &Codec) {
    let _ = writeln!(
        s,
        "## Codec (no broker)\n\nOrder event `OrderEvent::example()`, {} B encoded incl. the 5-byte Confluent header. \
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

pub(super) fn produce(s: &mut String, runs: &[SettingResult], tools: &Tools) {
    let _ = writeln!(
        s,
        "## Producer saturation\n\nIdempotent, acks=all, max in flight 5, keyed over 10 000 order ids (murmur2), Avro in the Confluent frame (the ~1 KB records pad a free-text note with words, about 2× under lz4) with \
         `event_id` + `content-type` headers; 8 concurrent workers × `send_batch` of 10 000 (at most 80 000 in flight, under librdkafka's queue of 100 000, as far ahead as the bare loop gets). Each setting starts with one unmeasured run of Avro, raw and the bare loop (broker JIT and page cache warm-up); then in each round those three take turns going first and the external tools follow. `raw` = the same binary and producer sending \
         the same records pre-encoded (`RawProducer::batch`, same batching, same keys, values and `event_id` + `content-type` headers): the difference is the codec. \
         `bare rust-rdkafka loop` (baseline, `crates/bench/src/bare.rs`) is the code a user would write without orderstream: a `ThreadedProducer` with exactly our producer's librdkafka properties sending the same keys, values and headers, delivery reports only counted; the floor for raw. \
         `Python confluent-kafka` (baseline, `crates/bench/python/produce_baseline.py`, one process per round) sends the same pre-encoded keys, values and headers as raw, \
         with exactly our producer's librdkafka properties (murmur2 partitioner, so the same partitions) but through the librdkafka bundled in the wheel (version above): \
         a `produce()` loop (`poll(0)` every 1 000 records, `poll(0.1)` and retry on a full queue), then `flush()`; its timed window starts at the first `produce()` after a warm-up \
         (connections, producer id; interpreter start-up excluded), its CPU is the Python process's and its latency ends when `poll()`/`flush()` serves the delivery report. \
         `rdkafka_performance` (same librdkafka, `-a -1 -X enable.idempotence=true -X linger.ms=… -z … -X sticky.partitioning.linger.ms=0`, batch and queue limits as ours, 5× our record count so its ~0.5 s start-up — connect + idempotent producer id, during which it fills its queue — is amortised; its payload is a constant pattern, which lz4 compresses far better than Avro; \
         `our record shape` = the same run with an order id as key under the random partitioner, so records still spread over the partitions per message, and our two headers, \
         `-k … -X partitioner=random -H event_id=… -H content-type=…`, constant values: what librdkafka costs for records like ours without the key hash or a per-record key and event id) and `ProducerPerformance` \
         (Java client defaults except acks/idempotence/linger/compression) send **unkeyed** records of the same size: ceilings. \
         Delivery latency = enqueue → ack (closed loop, so it is mostly queueing). CPU = this process's user+sys time (all threads) per message \
         (the Python baseline: its own process; n/a for the other external tools). The bench process overrides `malloc` with mimalloc (librdkafka's allocations included), like the `orderstream` binary; the external baselines use their own allocators.\n"
    );
    let _ = writeln!(
        s,
        "| setting | records/run | variant | msgs/s | MB/s | CPU µs/msg | delivery p50 / p99 / p99.9 ms |\n|---|---|---|---|---|---|---|"
    );
    for x in runs {
        for (name, v) in [
            ("Avro (OrderProducer)", &x.avro),
            ("raw bytes (RawProducer)", &x.raw),
            ("bare rust-rdkafka loop (baseline)", &x.bare),
            ("Python confluent-kafka (baseline)", &x.py),
            ("rdkafka_performance (5× records)", &x.rdk),
            (
                "rdkafka_performance, our record shape (5× records)",
                &x.rdk_shaped,
            ),
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
        "\n| setting | Avro / raw | raw / bare rust-rdkafka | raw / rdkafka_performance | raw / rdkafka_performance, our record shape | bare rust-rdkafka / rdkafka_performance | raw Rust producer / Python confluent-kafka (baseline) | Avro / ProducerPerformance |\n|---|---|---|---|---|---|---|---|"
    );
    for x in runs {
        let _ = writeln!(
            s,
            "| {} | {}× | {}× | {}× | {}× | {}× | {}× | {}× |",
            x.setting.label(x.size),
            x.avro_vs_raw().fmt(2),
            x.raw_vs_bare().fmt(2),
            x.raw_vs_rdk().fmt(2),
            x.raw_vs_rdk_shaped().fmt(2),
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
