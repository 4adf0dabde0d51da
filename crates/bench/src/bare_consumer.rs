//! The end-to-end latency's consumer baseline: a plain rust-rdkafka `BaseConsumer` poll loop, the
//! code a user would write without orderstream, fetching as our member does (`fetch.wait.max.ms`,
//! `fetch.queue.backoff.ms`) and committing automatically. Each record is decoded with the same
//! codec and recorded like ours, so what our consumer adds above it is ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use orderstream_schema::OrderCodec;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use crate::clients::now_us;
use crate::latency::Recorder;

/// Starts the loop on its own thread; it polls until `stop`.
pub(crate) fn spawn(
    bootstrap: &str,
    group: &str,
    topic: &str,
    fetch_wait_max: Duration,
    codec: OrderCodec,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", fetch_wait_max.as_millis().to_string())
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("creating the bare rust-rdkafka consumer")?;
    consumer
        .subscribe(&[topic])
        .context("subscribing the bare rust-rdkafka consumer")?;
    let rt = tokio::runtime::Handle::current();
    Ok(std::thread::Builder::new()
        .name("bench-bare-consumer".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let Some(bytes) = m.payload() else { continue };
                        let decoded = match codec.try_decode_cached(bytes) {
                            Some(r) => r,
                            None => rt.block_on(codec.decode(bytes)),
                        };
                        match decoded {
                            Ok(d) => {
                                rec.record(d.event.sequence, now_us() - d.event.occurred_at_micros);
                            }
                            Err(e) => eprintln!("  bare consumer: undecodable record: {e}"),
                        }
                    }
                    Some(Err(e)) => eprintln!("  bare consumer: {e}"),
                    None => {}
                }
            }
        })?)
}
