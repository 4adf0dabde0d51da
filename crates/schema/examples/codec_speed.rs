//! Quick codec timing (not the benchmark harness: `orderstream-bench --only codec` is the
//! measured one).
//! Interleaves the codec with apache-avro's own schema-aware serde path (the baseline) and an
//! allocation floor (clone + drop of the event), in the same run.
//!
//! `cargo run --release -p orderstream-schema --example codec_speed`
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig, types_schema, types_version};

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let codec = OrderCodec::new(RegistryConfig::default()).unwrap();
    codec.insert_writer_schema(3, types_version().text).unwrap();
    let event = OrderEvent::example();
    let mut buf = Vec::with_capacity(256);
    codec.encode_with_cached_id(3, &event, &mut buf).unwrap();
    let framed = buf.clone();
    println!("encoded size: {} bytes (incl. 5-byte header)", framed.len());
    let writer = GenericDatumWriter::builder(types_schema())
        .human_readable(false)
        .build()
        .unwrap();
    let reader = GenericDatumReader::builder(types_schema())
        .human_readable(false)
        .build()
        .unwrap();
    let n = 300_000u32;
    let mut rows = Vec::new();
    for round in 0..5 {
        let enc = per_op(n, || {
            buf.clear();
            codec
                .encode_with_cached_id(black_box(3), black_box(&event), &mut buf)
                .unwrap();
        });
        let base_enc = per_op(n, || {
            buf.clear();
            buf.extend_from_slice(&[0, 0, 0, 0, 3]);
            writer.write_ser(&mut buf, black_box(&event)).unwrap();
        });
        let dec = per_op(n, || {
            black_box(
                codec
                    .try_decode_cached(black_box(&framed))
                    .unwrap()
                    .unwrap(),
            );
        });
        let mut reused = OrderEvent::default();
        let dec_into = per_op(n, || {
            codec
                .try_decode_cached_into(black_box(&framed), &mut reused)
                .unwrap()
                .unwrap();
            black_box(&reused);
        });
        let base_dec = per_op(n, || {
            let mut body = &black_box(&framed)[5..];
            black_box(reader.read_deser::<OrderEvent>(&mut body).unwrap());
        });
        let clone = per_op(n, || {
            black_box(black_box(&event).clone());
        });
        println!(
            "round {round}: encode {enc:.0} ns (apache-avro write_ser {base_enc:.0} ns, x{:.2}) | decode {dec:.0} ns (apache-avro read_deser {base_dec:.0} ns, x{:.2}) | decode_into {dec_into:.0} ns | clone+drop {clone:.0} ns",
            enc / base_enc,
            dec / base_dec
        );
        rows.push((enc, dec, enc / base_enc, dec / base_dec, dec_into));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (a, b, c) = med(rows.iter().map(|r| r.0).collect());
    println!("encode ns   min {a:.0} median {b:.0} max {c:.0} (target <= 300)");
    let (a, b, c) = med(rows.iter().map(|r| r.1).collect());
    println!("decode ns   min {a:.0} median {b:.0} max {c:.0} (target <= 300)");
    let (a, b, c) = med(rows.iter().map(|r| r.4).collect());
    println!("decode_into ns min {a:.0} median {b:.0} max {c:.0} (target <= 300; reused buffer)");
    let (a, b, c) = med(rows.iter().map(|r| r.2).collect());
    println!("encode / apache-avro ratio min {a:.2} median {b:.2} max {c:.2}");
    let (a, b, c) = med(rows.iter().map(|r| r.3).collect());
    println!("decode / apache-avro ratio min {a:.2} median {b:.2} max {c:.2}");
}
