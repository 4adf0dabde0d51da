//! Tracing set-up: logs to stderr (filtered by `RUST_LOG`) and, with `--otlp-endpoint` in a
//! build with the `otlp` feature, the same spans exported over OTLP/HTTP (protobuf) through a
//! `tracing-opentelemetry` layer. With that layer installed the producer's `traceparent` header
//! names real spans and consumers continue their traces (docs/operations.md, "Tracing").

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;

/// Whether spans are exported (an OpenTelemetry layer is installed).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// `true` once spans are exported over OTLP: commands that start traces of their own (one span
/// per produced event) only pay for them then.
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What has to be flushed before the process exits.
#[derive(Debug)]
pub(crate) struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still batched (bounded by the exporter's own timeout). Call it outside
    /// the async runtime: the OTLP client blocks.
    pub(crate) fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }
}

/// Where to export spans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint<'a> {
    /// The collector's base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g.
    /// `http://127.0.0.1:4318`; spans go to `/v1/traces`).
    pub(crate) url: &'a str,
    /// Given by `OTEL_EXPORTER_OTLP_ENDPOINT` rather than the flag.
    pub(crate) from_env: bool,
}

/// The filter when `RUST_LOG` is not set. Unless spans are exported, the consumer's per-record
/// `record` span (and the per-batch `batch` span) are off: a log subscriber builds each enabled
/// span and formats its fields, which cost about 1.5 µs per record, a quarter of
/// `orderstream consume`'s CPU, for log context that only the rare per-record lines use (and those
/// name their record, or the batch's topic and partition, themselves).
fn default_filter(export: bool) -> &'static str {
    if export {
        "info,rdkafka=warn"
    } else {
        "info,rdkafka=warn,orderstream_consumer::spans=warn"
    }
}

/// Installs the global subscriber, exporting spans to `endpoint` when given. A
/// [`UsageError`](crate::exit::UsageError) when `--otlp-endpoint` is given to a build without
/// the `otlp` feature (a set `OTEL_EXPORTER_OTLP_ENDPOINT` is only warned about there: it may be
/// meant for other programs), or the exporter cannot be built from it.
pub(crate) fn init(format: LogFormat, endpoint: Option<Endpoint<'_>>) -> anyhow::Result<Telemetry> {
    let endpoint = endpoint.filter(|e| !e.url.trim().is_empty());
    let export = cfg!(feature = "otlp") && endpoint.is_some();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(export)));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otlp")]
    {
        let provider = endpoint.map(|e| otlp::provider(e.url.trim())).transpose()?;
        let otel = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(p.tracer("orderstream"))
        });
        EXPORTING.store(otel.is_some(), Ordering::Relaxed);
        registry.with(otel).init();
        if let Some(e) = endpoint {
            let given_by = if e.from_env {
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            } else {
                "--otlp-endpoint"
            };
            tracing::info!(
                endpoint = e.url.trim(),
                given_by,
                "exporting spans over OTLP/HTTP"
            );
        }
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        const REBUILD: &str = "needs a build with the `otlp` feature (cargo build -p \
                               orderstream-cli --features otlp)";
        match endpoint {
            Some(Endpoint {
                url,
                from_env: false,
            }) => {
                return Err(crate::exit::UsageError(format!(
                    "--otlp-endpoint {url}: exporting spans {REBUILD}"
                ))
                .into());
            }
            Some(Endpoint { url, .. }) => {
                registry.init();
                tracing::warn!(
                    "OTEL_EXPORTER_OTLP_ENDPOINT={url} is ignored: exporting spans {REBUILD}"
                );
            }
            None => registry.init(),
        }
        Ok(Telemetry {})
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use crate::exit::UsageError;

    /// A tracer provider that batches spans to `<endpoint>/v1/traces` (OTLP/HTTP, protobuf,
    /// blocking client on the batch processor's own thread). Service name `orderstream` unless
    /// `OTEL_SERVICE_NAME` says otherwise.
    pub(super) fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .build()
            .map_err(|e| UsageError(format!("--otlp-endpoint {endpoint}: {e}")))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("orderstream");
        }
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build())
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Whether the consumer's per-record span is built under the default filter.
    fn record_span_enabled(export: bool) -> bool {
        let subscriber =
            tracing_subscriber::registry().with(EnvFilter::new(default_filter(export)));
        tracing::subscriber::with_default(subscriber, || {
            !tracing::info_span!(target: orderstream_consumer::SPAN_TARGET, "record").is_disabled()
        })
    }

    #[test]
    fn per_record_spans_are_built_only_when_exported() {
        assert!(!record_span_enabled(false));
        assert!(record_span_enabled(true));
        // the consumer's warnings still reach the log
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(default_filter(false)));
        tracing::subscriber::with_default(subscriber, || {
            assert!(
                tracing::enabled!(target: "orderstream_consumer::member::owner", tracing::Level::INFO)
            );
            assert!(
                tracing::enabled!(target: "orderstream_consumer::member::handler", tracing::Level::INFO)
            );
        });
    }
}
