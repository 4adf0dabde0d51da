//! Codec, without a broker. Hand-rolled timing loops, interleaved with the same-run
//! baselines (apache-avro's generic `Value` path, and its schema-aware serde path), repeated.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
// The deprecated free functions *are* the generic `Value` path the issue names as the baseline.
#[allow(deprecated)]
use orderstream_schema::apache_avro::{self, from_avro_datum, from_value, to_avro_datum, to_value};
use orderstream_schema::{OrderCodec, OrderEvent, RegistryConfig, types_schema, types_version};

use crate::util::{Mmm, ratio};

#[derive(Debug, Default)]
pub(crate) struct Codec {
    pub(crate) encoded_len: usize,
    pub(crate) enc: Vec<f64>,
    pub(crate) dec: Vec<f64>,
    pub(crate) dec_into: Vec<f64>,
    pub(crate) value_enc: Vec<f64>,
    pub(crate) value_dec: Vec<f64>,
    pub(crate) serde_enc: Vec<f64>,
    pub(crate) serde_dec: Vec<f64>,
    /// Per-op ns of encode+decode, one thread alone.
    pub(crate) one_thread: Vec<f64>,
    /// Per-op ns of encode+decode, per thread, two threads sharing one codec.
    pub(crate) two_threads: Vec<f64>,
    /// Cold: fresh codec, first `encode` (registry lookup), µs.
    pub(crate) cold_encode_us: Vec<f64>,
    /// Cold: fresh codec, first `decode` (fetch writer schema by id), µs.
    pub(crate) cold_decode_us: Vec<f64>,
    pub(crate) cold_note: String,
}

impl Codec {
    pub(crate) fn enc_m(&self) -> Mmm {
        Mmm::of(&self.enc)
    }
    pub(crate) fn dec_m(&self) -> Mmm {
        Mmm::of(&self.dec)
    }
    pub(crate) fn enc_vs_value(&self) -> Mmm {
        ratio(&self.value_enc, &self.enc)
    }
    pub(crate) fn dec_vs_value(&self) -> Mmm {
        ratio(&self.value_dec, &self.dec)
    }
    pub(crate) fn contention(&self) -> Mmm {
        ratio(&self.two_threads, &self.one_thread)
    }
}

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn enc_dec_loop(codec: &OrderCodec, event: &OrderEvent, n: u32) -> f64 {
    let mut buf = Vec::with_capacity(256);
    per_op(n, || {
        buf.clear();
        let _ = codec.encode_with_cached_id(black_box(3), black_box(event), &mut buf);
        black_box(codec.try_decode_cached(black_box(&buf)));
    })
}

#[allow(deprecated)]
pub(crate) async fn run(rounds: usize, n: u32, registry: Option<&str>) -> Result<Codec> {
    let mut r = Codec::default();
    let codec = OrderCodec::new(RegistryConfig::default())?;
    let latest = types_version();
    codec.insert_writer_schema(3, latest.text)?;
    let event = OrderEvent::example();
    let schema = types_schema();
    let mut buf = Vec::with_capacity(256);
    codec.encode_with_cached_id(3, &event, &mut buf)?;
    let framed = buf.clone();
    r.encoded_len = framed.len();

    // Baseline 1: the generic Value path (to_value → resolve → to_avro_datum; from_avro_datum →
    // from_value), i.e. what a schema-agnostic converter does per record.
    let value_encode = |out: &mut Vec<u8>| -> Result<(), apache_avro::Error> {
        let v = to_value(&event)?.resolve(schema)?;
        out.clear();
        out.extend_from_slice(&[0, 0, 0, 0, 3]);
        out.extend_from_slice(&to_avro_datum(schema, v)?);
        Ok(())
    };
    let value_decode = |bytes: &[u8]| -> Result<OrderEvent, apache_avro::Error> {
        let mut body = &bytes[5..];
        let v = from_avro_datum(schema, &mut body, None)?;
        from_value::<OrderEvent>(&v)
    };
    value_encode(&mut buf).context("Value-path encode")?;
    let via_value = value_decode(&framed).context("Value-path decode")?;
    anyhow::ensure!(via_value == event, "Value path decodes differently");
    // Baseline 2: apache-avro's schema-aware serde (write_ser / read_deser).
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .human_readable(false)
        .build()?;
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .human_readable(false)
        .build()?;

    let mut reused = OrderEvent::default();
    let slow = (n / 4).max(1);
    for _ in 0..rounds {
        r.enc.push(per_op(n, || {
            buf.clear();
            let _ = codec.encode_with_cached_id(black_box(3), black_box(&event), &mut buf);
        }));
        r.value_enc.push(per_op(slow, || {
            let _ = value_encode(black_box(&mut buf));
        }));
        r.serde_enc.push(per_op(n, || {
            buf.clear();
            buf.extend_from_slice(&[0, 0, 0, 0, 3]);
            let _ = writer.write_ser(&mut buf, black_box(&event));
        }));
        r.dec.push(per_op(n, || {
            black_box(codec.try_decode_cached(black_box(&framed)));
        }));
        r.dec_into.push(per_op(n, || {
            let _ = codec.try_decode_cached_into(black_box(&framed), &mut reused);
            black_box(&reused);
        }));
        r.value_dec.push(per_op(slow, || {
            let _ = black_box(value_decode(black_box(&framed)));
        }));
        r.serde_dec.push(per_op(n, || {
            let mut body = &black_box(&framed)[5..];
            let _ = black_box(reader.read_deser::<OrderEvent>(&mut body));
        }));
        // Contention: one thread alone, then two threads on one shared codec.
        r.one_thread.push(enc_dec_loop(&codec, &event, n / 2));
        let shared = Arc::new(codec.clone());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&shared);
                let e = event.clone();
                std::thread::spawn(move || enc_dec_loop(&c, &e, n / 2))
            })
            .collect();
        let per: Vec<f64> = hs.into_iter().filter_map(|h| h.join().ok()).collect();
        r.two_threads
            .push(per.iter().sum::<f64>() / per.len().max(1) as f64);
    }

    // Cold lookups against the registry: a fresh codec per sample.
    match registry {
        Some(url) => {
            let topic = format!("orderstream-bench-codec-{}", std::process::id());
            let warm = OrderCodec::new(RegistryConfig {
                url: url.to_owned(),
                ..RegistryConfig::default()
            })?;
            let enc = warm.encode(&topic, &event).await?; // registers the subject once
            for _ in 0..rounds.max(3) {
                let fresh = OrderCodec::new(RegistryConfig {
                    url: url.to_owned(),
                    ..RegistryConfig::default()
                })?;
                let t = Instant::now();
                fresh.encode(&topic, &event).await?;
                r.cold_encode_us.push(t.elapsed().as_secs_f64() * 1e6);
                let fresh = OrderCodec::new(RegistryConfig {
                    url: url.to_owned(),
                    ..RegistryConfig::default()
                })?;
                let t = Instant::now();
                fresh.decode(&enc.bytes).await?;
                r.cold_decode_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            r.cold_note = format!("registry {url}, subject of topic `{topic}` already registered");
        }
        None => r.cold_note = "skipped: no registry".to_owned(),
    }
    Ok(r)
}
