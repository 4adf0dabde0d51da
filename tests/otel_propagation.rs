//! OpenTelemetry trace propagation end to end against the real cluster: a record produced under
//! a span carries that trace's `traceparent`; the consumer member's per-record span is a child of
//! the producer-side span; a failing record's retry copy, its dead letter and its replay stay in
//! the same trace, each hop a child of the one before. Spans are read back from an in-process
//! exporter (`tracing-opentelemetry` layer over the SDK's in-memory exporter).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use orderstream_consumer::{
    BackoffConfig, ConsumerConfig, ProcessError, Processor, Record, ReplaySelection, Topics,
    trace_context,
};
use orderstream_producer::{DeliveryOutcome, ProducerConfig, ProducerTopic, RawProducer};
use orderstream_testkit::{TestEnv, wait_until};
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter};

/// The process-wide subscriber: a `tracing-opentelemetry` layer (everything from `debug`) over
/// an in-memory exporter, beside the usual test log output (`RUST_LOG`, default `warn`).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("orderstream-test"))
            .with_filter(LevelFilter::DEBUG);
        let logs = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()));
        tracing_subscriber::registry()
            .with(otel)
            .with(logs)
            .try_init()
            .expect("no other subscriber installed in this test binary");
        exporter
    })
}

/// Fails every record keyed `bad` (transient, so it goes through the retry topic to the dead
/// letters); counts the others.
#[derive(Debug, Default)]
struct FailBad {
    ok: AtomicU64,
}

impl Processor for FailBad {
    async fn process(&self, record: &Record) -> Result<(), ProcessError> {
        if record.key() == Some(b"bad") {
            return Err(ProcessError::transient("bad record"));
        }
        self.ok.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// (trace id, span id) of a record's `traceparent`.
fn traceparent(m: &OwnedMessage) -> (TraceId, SpanId) {
    let v = m
        .headers()
        .and_then(|hs| hs.iter().find(|h| h.key == trace_context::TRACEPARENT))
        .and_then(|h| h.value)
        .unwrap_or_else(|| panic!("{}/{} has no traceparent", m.topic(), m.offset()));
    let sc = trace_context::parse(v)
        .unwrap_or_else(|| panic!("malformed traceparent {:?}", String::from_utf8_lossy(v)))
        .span_context();
    (sc.trace_id(), sc.span_id())
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| &kv.value)
}

/// The exported span of the member's work on `topic`/`offset`.
fn record_span<'a>(spans: &'a [SpanData], topic: &str, offset: i64) -> &'a SpanData {
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|s| {
            s.name == "record"
                && attr(s, "topic").map(Value::as_str).as_deref() == Some(topic)
                && attr(s, "offset") == Some(&Value::I64(offset))
        })
        .collect();
    assert_eq!(found.len(), 1, "one record span for {topic}/{offset}");
    found[0]
}

fn span_by_id(spans: &[SpanData], id: SpanId) -> &SpanData {
    spans
        .iter()
        .find(|s| s.span_context.span_id() == id)
        .unwrap_or_else(|| panic!("no exported span {id}"))
}

/// `child`'s OpenTelemetry parent is the span `parent` of trace `trace`.
fn assert_child(child: &SpanData, trace: TraceId, parent: SpanId, what: &str) {
    assert_eq!(
        child.span_context.trace_id(),
        trace,
        "{what}: same trace as the hop before"
    );
    assert_eq!(
        child.parent_span_id, parent,
        "{what}: parent is the span named by the traceparent it was handed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_joins_producer_consumer_retry_dead_letter_and_replay_in_one_trace() {
    let exporter = exporter();
    let env = TestEnv::connect().await;
    let base = env.unique("otel");
    let topics = Topics::new(base.clone(), format!("{base}.retry"), format!("{base}.dlq"));
    for t in [&topics.source, &topics.retry, &topics.dead_letter] {
        env.create_topic(t, 1).await;
    }

    // Two records, each sent under a root span of its own: two traces.
    let producer = RawProducer::new(
        ProducerConfig {
            bootstrap_servers: env.bootstrap.clone(),
            client_id: "orderstream-otel-test".into(),
            ..ProducerConfig::default()
        },
        ProducerTopic::new(&topics.source, 1),
    )
    .await
    .expect("producer starts");
    for key in ["good", "bad"] {
        let span = tracing::info_span!("checkout", key);
        let outcome = producer
            .send_raw(Some(key.as_bytes()), key.as_bytes(), &[])
            .instrument(span)
            .await;
        assert!(
            matches!(outcome, DeliveryOutcome::Delivered { .. }),
            "{outcome:?}"
        );
    }
    producer.shutdown(Duration::from_secs(10)).await;

    // The member: `bad` fails once in place, is parked, fails once from the retry topic and is
    // dead-lettered.
    let group = env.group_id("otel");
    let processor = Arc::new(FailBad::default());
    let cfg = ConsumerConfig {
        session_timeout: Duration::from_secs(10),
        revoke_drain_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        commit_interval: Duration::from_millis(200),
        statistics_interval: Duration::ZERO,
        backoff: BackoffConfig {
            initial: Duration::from_millis(10),
            max_attempts: 1,
            ..BackoffConfig::default()
        },
        retry_topic_delay: Duration::from_millis(100),
        max_retry_topic_attempts: 1,
        ..ConsumerConfig::new(&env.bootstrap, &group, topics.clone())
    };
    let cancel = CancellationToken::new();
    let mut member = tokio::spawn(orderstream_consumer::run(
        cfg,
        Arc::clone(&processor),
        cancel.clone(),
    ));
    let done = wait_until(
        "good processed and bad dead-lettered",
        Duration::from_secs(60),
        || {
            processor.ok.load(Ordering::SeqCst) == 1
                && env.end_offsets(&topics.dead_letter).get(&0) == Some(&1)
        },
    );
    tokio::select! {
        () = done => {}
        ended = &mut member => panic!("the member ended early: {ended:?}"),
    }
    cancel.cancel();
    let summary = member.await.expect("join").expect("member ran");
    assert_eq!((summary.parked, summary.dead_lettered), (1, 1));

    let replayed = orderstream_consumer::replay(
        &env.client_config(),
        &topics.dead_letter,
        &ReplaySelection::default(),
        Duration::from_secs(30),
    )
    .await
    .expect("replay");
    assert_eq!(replayed.read, 1);

    let source = env.read_all(&topics.source, Duration::from_secs(30)).await;
    let retry = env.read_all(&topics.retry, Duration::from_secs(30)).await;
    let dead = env
        .read_all(&topics.dead_letter, Duration::from_secs(30))
        .await;
    assert_eq!((source.len(), retry.len(), dead.len()), (3, 1, 1));
    let spans = exporter.get_finished_spans().expect("exported spans");

    // Producer → consumer, for both records.
    for (offset, key) in [(0, "good"), (1, "bad")] {
        assert_eq!(source[offset].key(), Some(key.as_bytes()));
        let (trace, sent_by) = traceparent(&source[offset]);
        let produce = span_by_id(&spans, sent_by);
        assert_eq!(
            produce.name, "orderstream.produce",
            "the header names the send's span"
        );
        assert_eq!(produce.span_context.trace_id(), trace);
        let root = span_by_id(&spans, produce.parent_span_id);
        assert_eq!(
            (
                root.name.as_ref(),
                attr(root, "key").map(Value::as_str).as_deref()
            ),
            ("checkout", Some(key)),
            "the send's span is a child of the caller's"
        );
        let consumed = record_span(&spans, &topics.source, offset as i64);
        assert_child(consumed, trace, sent_by, "consumer span");
        assert!(consumed.parent_span_is_remote);
    }
    assert_ne!(
        traceparent(&source[0]).0,
        traceparent(&source[1]).0,
        "two root spans, two traces"
    );

    // consumer → retry copy → consumer (retry topic) → dead letter → replay → source again.
    let (trace, _) = traceparent(&source[1]);
    let first = record_span(&spans, &topics.source, 1);
    let (t, parked_by) = traceparent(&retry[0]);
    assert_eq!(
        (t, parked_by),
        (trace, first.span_context.span_id()),
        "the retry copy carries the span that parked it"
    );
    let again = record_span(&spans, &topics.retry, 0);
    assert_child(again, trace, parked_by, "retry-topic consumer span");
    let (t, dead_lettered_by) = traceparent(&dead[0]);
    assert_eq!(
        (t, dead_lettered_by),
        (trace, again.span_context.span_id()),
        "the dead letter carries the span that gave up"
    );
    assert_eq!(source[2].key(), Some(&b"bad"[..]), "the replayed record");
    let (t, replayed_by) = traceparent(&source[2]);
    assert_eq!(t, trace, "the replayed record stays in the trace");
    let replay = span_by_id(&spans, replayed_by);
    assert_eq!(replay.name, "orderstream.replay");
    assert_child(replay, trace, dead_lettered_by, "replay span");
}
