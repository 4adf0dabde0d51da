//! Notifications: our RabbitMQ sink (one connection, confirm-mode channel, persistent
//! messages into a durable quorum queue, a batch's confirms awaited together) against the
//! channel-per-publish, confirm-less pattern of the textbook example, on the same server with the
//! same messages; beside them our NATS JetStream sink and a Kafka→Kafka forward (idempotent
//! producer, acks=all) of the same bodies. Rounds interleave the four.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orderstream_notify::{
    NatsConfig, NatsSink, Notification, RabbitConfig, RabbitSink, Sink, endpoint,
};
use orderstream_schema::EventType;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::util::{self, Mmm};

/// Notifications per publish round of our sinks: what one partition's batch carries in a drain.
pub(crate) const BATCH: usize = 500;

#[derive(Debug, Default)]
pub(crate) struct Notify {
    pub(crate) messages: usize,
    pub(crate) body_bytes: usize,
    pub(crate) rabbit: Vec<f64>,
    pub(crate) baseline: Vec<f64>,
    pub(crate) nats: Vec<f64>,
    pub(crate) kafka: Vec<f64>,
    pub(crate) errors: Vec<String>,
}

impl Notify {
    pub(crate) fn m(v: &[f64]) -> Mmm {
        Mmm::of(v)
    }
    pub(crate) fn rabbit_vs_baseline(&self) -> Mmm {
        util::ratio(&self.rabbit, &self.baseline)
    }
    pub(crate) fn rabbit_vs_nats(&self) -> Mmm {
        util::ratio(&self.rabbit, &self.nats)
    }
    pub(crate) fn rabbit_vs_kafka(&self) -> Mmm {
        util::ratio(&self.rabbit, &self.kafka)
    }
}

fn notes(round: usize, n: usize) -> Vec<Notification> {
    (0..n as u64)
        .map(|i| {
            let mut e = util::event(i + (round as u64) * 10_000_000, 0);
            e.event_type = EventType::Created;
            Notification::of(&e, None)
        })
        .collect()
}

/// msgs/s of `sink` publishing `notes` in rounds of [`BATCH`], every confirm awaited.
async fn ours<S: Sink>(sink: &S, notes: &[Notification]) -> Result<f64> {
    let t = Instant::now();
    for chunk in notes.chunks(BATCH) {
        for r in sink.publish(chunk).await {
            r.context("publish")?;
        }
    }
    Ok(notes.len() as f64 / t.elapsed().as_secs_f64())
}

/// The textbook pattern: a new channel per message, no confirms, no persistence flag.
async fn channel_per_publish(
    conn: &Connection,
    queue: &str,
    notes: &[Notification],
) -> Result<f64> {
    let t = Instant::now();
    for n in notes {
        let ch = conn.create_channel().await?;
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &n.body(),
            BasicProperties::default().with_message_id(n.event_id.as_str().into()),
        )
        .await?;
        ch.close(200, "".into()).await?;
    }
    Ok(notes.len() as f64 / t.elapsed().as_secs_f64())
}

/// The same bodies through an idempotent Kafka producer (acks=all, linger 5 ms), each batch's
/// deliveries awaited together.
async fn kafka_forward(
    producer: &FutureProducer,
    topic: &str,
    notes: &[Notification],
) -> Result<f64> {
    let t = Instant::now();
    for chunk in notes.chunks(BATCH) {
        let mut pending = Vec::with_capacity(chunk.len());
        for n in chunk {
            let body = n.body();
            let record = FutureRecord::to(topic).key(&n.order_id).payload(&body);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
            );
        }
        for p in pending {
            p.await
                .context("delivery future dropped")?
                .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
        }
    }
    Ok(notes.len() as f64 / t.elapsed().as_secs_f64())
}

pub(crate) async fn run(
    amqp_url: &str,
    nats_url: &str,
    bootstrap: &str,
    n: usize,
    rounds: usize,
    topics: &mut Vec<String>,
) -> Result<Notify> {
    let run = format!("bench-notify-{}", std::process::id());
    let cancel = CancellationToken::new();
    let name = format!("{run}.notifications");
    let rabbit_cfg = RabbitConfig::named(amqp_url, &name, &name);
    let rabbit = RabbitSink::connect(rabbit_cfg.clone(), cancel.clone())
        .await
        .with_context(|| format!("RabbitMQ at {}", endpoint(amqp_url)))?;
    let mut nats_cfg = NatsConfig::new(nats_url);
    nats_cfg.stream = format!("BENCH_NOTIFY_{}", std::process::id());
    nats_cfg.subject_prefix = format!("bench.notify.{}", std::process::id());
    let nats = NatsSink::connect(nats_cfg.clone(), cancel.clone())
        .await
        .with_context(|| format!("NATS at {}", endpoint(nats_url)))?;
    let conn = Arc::new(Connection::connect(amqp_url, ConnectionProperties::default()).await?);
    let baseline_queue = format!("{run}.textbook");
    let setup = conn.create_channel().await?;
    setup
        .queue_declare(
            baseline_queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let topic = format!("{run}-forward");
    util::create_topic(bootstrap, &topic).await?;
    topics.push(topic.clone());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;

    let mut w = Notify {
        messages: n,
        body_bytes: notes(0, 1).first().map_or(0, |x| x.body().len()),
        ..Notify::default()
    };
    for round in 0..rounds {
        let batch = notes(round, n);
        match ours(&rabbit, &batch).await {
            Ok(r) => w.rabbit.push(r),
            Err(e) => w.errors.push(format!("RabbitMQ sink round {round}: {e:#}")),
        }
        match channel_per_publish(&conn, &baseline_queue, &batch).await {
            Ok(r) => w.baseline.push(r),
            Err(e) => w
                .errors
                .push(format!("channel-per-publish round {round}: {e:#}")),
        }
        match ours(&nats, &batch).await {
            Ok(r) => w.nats.push(r),
            Err(e) => w.errors.push(format!("NATS sink round {round}: {e:#}")),
        }
        match kafka_forward(&producer, &topic, &batch).await {
            Ok(r) => w.kafka.push(r),
            Err(e) => w.errors.push(format!("Kafka forward round {round}: {e:#}")),
        }
        eprintln!(
            "  notify round {round}: rabbitmq {:.0}/s, channel-per-publish {:.0}/s, nats {:.0}/s, kafka {:.0}/s",
            w.rabbit.last().copied().unwrap_or(f64::NAN),
            w.baseline.last().copied().unwrap_or(f64::NAN),
            w.nats.last().copied().unwrap_or(f64::NAN),
            w.kafka.last().copied().unwrap_or(f64::NAN),
        );
    }
    // Leave nothing behind on the servers.
    for q in [
        &rabbit_cfg.queue,
        &rabbit_cfg.alternate_exchange,
        &rabbit_cfg.dead_letter_exchange,
        &baseline_queue,
    ] {
        let _ = setup
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = setup.close(200, "".into()).await;
    rabbit.close().await;
    nats.close().await;
    if let Ok(client) = async_nats::connect(nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&nats_cfg.stream)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(w)
}
