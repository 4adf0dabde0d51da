//! The Prometheus `/metrics` endpoint of producer and consumer processes.

use std::net::SocketAddr;

use anyhow::Context;

/// Installs the global metrics recorder and serves it at `http://<addr>/metrics`.
///
/// Call once, before the producer or consumer is built, so their counters register with it.
pub(crate) fn serve(addr: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        crate::exit::UsageError(format!("--metrics-addr `{addr}` is not host:port: {e}"))
    })?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
        ])
        .context("metrics buckets")?
        .install()
        .with_context(|| format!("cannot serve metrics on {addr} (port taken?)"))?;
    orderstream_producer::metric::describe();
    orderstream_consumer::metric::describe();
    orderstream_notify::metric::describe();
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}
