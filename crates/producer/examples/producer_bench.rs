//! Producer benchmark (not a timed test): Avro order events through [`OrderProducer`]
//! (idempotent, acks=all, keyed over 10 000 order ids, lz4, linger 5 ms) next to the same binary
//! producing the pre-encoded bytes, and Kafka's own `ProducerPerformance` (unkeyed, so a ceiling)
//! against the same cluster, topic layout and settings, interleaved A/B/C and repeated.
//!
//! ```text
//! cargo run --release -p orderstream-producer --example producer_bench -- [records] [rounds]
//! ```
//! Env: `ORDERSTREAM_BOOTSTRAP` (default 127.0.0.1:9092), `ORDERSTREAM_REGISTRY_URL`
//! (default http://127.0.0.1:8081/apis/ccompat/v7).

use std::process::Command;
use std::time::{Duration, Instant};

use futures::future::join_all;
use orderstream_producer::{OrderProducer, ProducerConfig, ProducerTopic};
use orderstream_schema::{EventType, LineItem, OrderCodec, OrderEvent, RegistryConfig};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const KEYS: usize = 10_000;
const PARTITIONS: i32 = 6;
const WORKERS: usize = 4;
const CHUNK: usize = 5_000;

fn event(i: usize) -> OrderEvent {
    let order = i % KEYS;
    OrderEvent {
        event_id: {
            let h = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                (h >> 96) as u32,
                (h >> 80) as u16,
                (h >> 64) as u16 & 0xfff,
                (h >> 48) as u16 & 0xfff,
                h as u64 & 0xffff_ffff_ffff
            )
        },
        order_id: format!("order-{order:06}"),
        customer_id: format!("cust-{:04}", order % 997),
        sequence: (i / KEYS) as i64,
        event_type: EventType::Paid,
        amount_minor: 12_345,
        currency: "EUR".into(),
        items: vec![LineItem {
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price_minor: 4_000,
        }],
        occurred_at_micros: 1_767_225_600_000_000 + i as i64,
        note: None,
        channel: Some("web".into()),
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    msgs_per_s: f64,
    mb_per_s: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

async fn create_topic(bootstrap: &str, name: &str) -> i32 {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let brokers = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .brokers()
        .len();
    let rf = if brokers >= 3 { 3 } else { 1 };
    let topic = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(rf))
        .set("min.insync.replicas", if rf == 3 { "2" } else { "1" });
    admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("create topic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    rf
}

async fn run_avro(p: &OrderProducer, events: &[OrderEvent], bytes_per_record: f64) -> Run {
    let started = Instant::now();
    let chunks: Vec<&[OrderEvent]> = events.chunks(CHUNK).collect();
    let per_worker = chunks.len().div_ceil(WORKERS);
    let work = chunks.chunks(per_worker).map(|mine| async move {
        let mut ok = 0usize;
        for c in mine {
            ok += p
                .send_batch(c)
                .await
                .iter()
                .filter(|o| o.is_delivered())
                .count();
        }
        ok
    });
    let ok: usize = join_all(work).await.into_iter().sum();
    assert_eq!(ok, events.len(), "every record must be delivered");
    let s = started.elapsed().as_secs_f64();
    Run {
        msgs_per_s: ok as f64 / s,
        mb_per_s: ok as f64 * bytes_per_record / s / 1e6,
    }
}

async fn run_raw(p: &OrderProducer, records: &[(Vec<u8>, Vec<u8>)]) -> Run {
    let started = Instant::now();
    let bytes: usize = records.iter().map(|(_, v)| v.len()).sum();
    let chunks: Vec<&[(Vec<u8>, Vec<u8>)]> = records.chunks(CHUNK).collect();
    let per_worker = chunks.len().div_ceil(WORKERS);
    let work = chunks.chunks(per_worker).map(|mine| async move {
        let mut ok = 0usize;
        for c in mine {
            let batch: Vec<(Option<&[u8]>, &[u8])> = c
                .iter()
                .map(|(k, v)| (Some(k.as_slice()), v.as_slice()))
                .collect();
            ok += p
                .raw()
                .send_raw_batch(&batch, &[])
                .await
                .iter()
                .filter(|o| o.is_delivered())
                .count();
        }
        ok
    });
    let ok: usize = join_all(work).await.into_iter().sum();
    assert_eq!(ok, records.len());
    let s = started.elapsed().as_secs_f64();
    Run {
        msgs_per_s: ok as f64 / s,
        mb_per_s: bytes as f64 / s / 1e6,
    }
}

fn run_java(bootstrap: &str, topic: &str, records: usize, record_size: usize) -> Option<Run> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/kafka.sh"))
        .args([
            "tool",
            "producer-perf-test",
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &record_size.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={bootstrap}"),
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "compression.type=lz4",
            "max.in.flight.requests.per.connection=5",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "N records sent, X records/sec (Y MB/sec), ..."
    let line = text.lines().rev().find(|l| l.contains("records sent"))?;
    let rps: f64 = line.split(", ").nth(1)?.split(' ').next()?.parse().ok()?;
    let mbs: f64 = line.split('(').nth(1)?.split(' ').next()?.parse().ok()?;
    Some(Run {
        msgs_per_s: rps,
        mb_per_s: mbs * 1.048_576, // the tool reports MiB/s
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let bootstrap =
        std::env::var("ORDERSTREAM_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let registry = std::env::var("ORDERSTREAM_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    let topic = format!("orderstream-bench-{}", std::process::id());
    let rf = create_topic(&bootstrap, &topic).await;
    let codec = OrderCodec::new(RegistryConfig {
        url: registry,
        ..RegistryConfig::default()
    })
    .expect("codec");
    let cfg = ProducerConfig {
        bootstrap_servers: bootstrap.clone(),
        ..ProducerConfig::default()
    };
    let p = OrderProducer::new(cfg, codec.clone(), ProducerTopic::new(&topic, PARTITIONS))
        .await
        .expect("producer");
    let events: Vec<OrderEvent> = (0..records).map(event).collect();
    let schema_id = codec.schema_id_for(&topic).await.expect("registry");
    let pre: Vec<(Vec<u8>, Vec<u8>)> = events
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            codec
                .encode_with_cached_id(schema_id, e, &mut b)
                .expect("encode");
            (e.order_id.as_bytes().to_vec(), b)
        })
        .collect();
    let avg = pre.iter().map(|(_, v)| v.len()).sum::<usize>() as f64 / pre.len() as f64;
    println!(
        "producer_bench: {records} records/run, {rounds} rounds, ~{avg:.0} B Avro value, {KEYS} keys, \
         {PARTITIONS} partitions RF {rf}, idempotent acks=all lz4 linger 5 ms, {WORKERS}x{CHUNK} batches"
    );
    // Warm-up (registry, connections, JIT of the brokers).
    run_raw(&p, &pre[..records.min(20_000)]).await;
    let (mut a, mut r, mut j) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let avro = run_avro(&p, &events, avg).await;
        let raw = run_raw(&p, &pre).await;
        let java = tokio::task::spawn_blocking({
            let (b, t) = (bootstrap.clone(), topic.clone());
            move || run_java(&b, &t, records, avg.round() as usize)
        })
        .await
        .ok()
        .flatten();
        println!(
            "round {round}: avro {:>9.0} msg/s {:>6.2} MB/s | raw {:>9.0} msg/s {:>6.2} MB/s | ProducerPerformance {}",
            avro.msgs_per_s,
            avro.mb_per_s,
            raw.msgs_per_s,
            raw.mb_per_s,
            java.map_or("unavailable".to_owned(), |j| format!(
                "{:>9.0} msg/s {:>6.2} MB/s",
                j.msgs_per_s, j.mb_per_s
            )),
        );
        a.push(avro.msgs_per_s);
        r.push(raw.msgs_per_s);
        if let Some(j0) = java {
            j.push(j0.msgs_per_s);
        }
    }
    let (ma, mr) = (median(&mut a), median(&mut r));
    println!(
        "avro min/median/max {:.0}/{ma:.0}/{:.0} msg/s; raw {:.0}/{mr:.0}/{:.0} msg/s; avro/raw = {:.2} (of medians)",
        a[0],
        a[a.len() - 1],
        r[0],
        r[r.len() - 1],
        ma / mr
    );
    if !j.is_empty() {
        let mj = median(&mut j);
        println!(
            "median: ProducerPerformance {mj:.0} msg/s; avro/java = {:.2}, raw/java = {:.2}",
            ma / mj,
            mr / mj
        );
    }
    p.shutdown(Duration::from_secs(30)).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    let _ = admin
        .delete_topics(&[topic.as_str()], &AdminOptions::new())
        .await;
}
