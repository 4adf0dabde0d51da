//! The Prometheus `/metrics` endpoint of producer and consumer processes.
//!
//! Gauges left unset for [`GAUGE_IDLE_TIMEOUT`] leave the scrape: the consumer sets the gauges of
//! a partition it owns every [`GAUGE_TICK`] and stops when the partition is revoked, so a
//! revoked partition is reported by its new owner only. Gauges without a `partition` label (the
//! producer's in-flight count, set only when it changes) are set again on the same tick here, so
//! a quiet process keeps them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use metrics_util::MetricKindMask;
use orderstream_consumer::metric::{GAUGE_IDLE_TIMEOUT, GAUGE_TICK};

/// Installs the global metrics recorder and serves it at `http://<addr>/metrics`.
///
/// Call once, inside the tokio runtime, before the producer or consumer is built, so their
/// counters register with it.
pub(crate) fn serve(addr: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        crate::exit::UsageError(format!("--metrics-addr `{addr}` is not host:port: {e}"))
    })?;
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
        ])
        .context("metrics buckets")?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        .build()
        .with_context(|| format!("cannot serve metrics on {addr} (port taken?)"))?;
    tokio::spawn(exporter);
    let recorder = KeepUnpartitioned::new(recorder);
    let kept = Arc::clone(&recorder.kept);
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_TICK);
        loop {
            tick.tick().await;
            for g in lock(&kept).values() {
                // changes nothing but marks the gauge as set
                g.increment(0.0);
            }
        }
    });
    orderstream_producer::metric::describe();
    orderstream_consumer::metric::describe();
    orderstream_notify::metric::describe();
    tracing::info!(%addr, idle_timeout = ?GAUGE_IDLE_TIMEOUT, "serving Prometheus metrics at /metrics");
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Prometheus recorder, remembering every gauge without a `partition` label so that they
/// can be kept from the idle timeout (which applies to all gauges alike).
#[derive(Debug)]
struct KeepUnpartitioned {
    inner: PrometheusRecorder,
    kept: Arc<Mutex<HashMap<Key, Gauge>>>,
}

impl KeepUnpartitioned {
    fn new(inner: PrometheusRecorder) -> Self {
        Self {
            inner,
            kept: Arc::default(),
        }
    }
}

impl Recorder for KeepUnpartitioned {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let gauge = self.inner.register_gauge(key, metadata);
        if !key.labels().any(|l| l.key() == "partition") {
            lock(&self.kept)
                .entry(key.clone())
                .or_insert_with(|| gauge.clone());
        }
        gauge
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}
