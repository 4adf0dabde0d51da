//! [`OrderCodec`]: Confluent wire-format Avro serde for [`OrderEvent`] with a schema registry.
//!
//! Hot paths:
//! * encode: cached `topic -> schema id` (read lock), then the specialised writer of
//!   [`crate::fast`] straight into the output buffer (apache-avro's schema-aware serde path
//!   `write_ser` if the types' schema ever outruns `fast.rs`).
//! * decode: cached `schema id -> writer schema` (read lock). When the writer schema has the
//!   same Parsing Canonical Form as the types' schema (the common case), the body is read by
//!   [`crate::fast`] (or apache-avro's `read_deser`) straight into [`OrderEvent`]. Other writer
//!   versions take apache-avro's resolving path (`Value` + schema resolution + `from_value`),
//!   about 10x slower.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::access::RegistryAccess;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, perform_sr_call, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SrCall, SuppliedSchema,
};

use crate::versions::{types_canonical_form, types_schema, types_version};
use crate::{CodecError, ORDER_EVENT_FULL_NAME, OrderEvent, SchemaError, wire};

/// How the registry subject is derived from the topic (Confluent's `value.subject.name.strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectStrategy {
    /// `<topic>-value` (Confluent's default): one schema lineage per topic.
    #[default]
    TopicName,
    /// `<record full name>`, e.g. `io.orderstream.orders.OrderEvent`: one lineage per record type
    /// across topics.
    RecordName,
    /// `<topic>-<record full name>`: per topic and record type.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject for the order-event value schema on `topic`.
    pub fn subject(self, topic: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => ORDER_EVENT_FULL_NAME.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{ORDER_EVENT_FULL_NAME}"),
        }
    }
}

impl std::str::FromStr for SubjectStrategy {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "topicname" | "topic" => Ok(SubjectStrategy::TopicName),
            "recordname" | "record" => Ok(SubjectStrategy::RecordName),
            "topicrecordname" | "topicrecord" => Ok(SubjectStrategy::TopicRecordName),
            _ => Err(SchemaError::InvalidConfig {
                field: "subject_strategy",
                message: format!(
                    "unknown strategy {s:?} (topic-name, record-name, topic-record-name)"
                ),
            }),
        }
    }
}

/// Schema registry settings of an [`OrderCodec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, without a trailing slash, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7` for Apicurio (paths are appended to it).
    pub url: String,
    /// How subjects are named from topics. Default [`SubjectStrategy::TopicName`].
    pub subject_strategy: SubjectStrategy,
    /// Timeout of each HTTP request to the registry (connect + response). Default 5 s.
    pub request_timeout: Duration,
    /// How long a "schema id not found" answer is remembered before the registry is asked
    /// again about that id (protects the registry from poison-pill storms). Default 10 s.
    pub negative_cache_ttl: Duration,
    /// `true` (default): the first encode per subject registers the types' schema (a no-op
    /// returning the existing id if already registered; the registry enforces the subject's
    /// compatibility level). `false`: only look the schema up under the subject and fail if it
    /// is not registered (production setting when schemas are registered by CI with
    /// `orderstream schemas register`).
    pub auto_register: bool,
    /// Credentials and extra CA certificates for the registry. Default: anonymous.
    pub access: RegistryAccess,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: "http://127.0.0.1:8081/apis/ccompat/v7".to_owned(),
            subject_strategy: SubjectStrategy::TopicName,
            request_timeout: Duration::from_secs(5),
            negative_cache_ttl: Duration::from_secs(10),
            auto_register: true,
            access: RegistryAccess::default(),
        }
    }
}

impl RegistryConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`SchemaError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let bad = |field, message: &str| {
            Err(SchemaError::InvalidConfig {
                field,
                message: message.to_owned(),
            })
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad("url", "must start with http:// or https://");
        }
        if self.url.ends_with('/') {
            return bad("url", "must not end with '/' (paths are appended to it)");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be > 0");
        }
        if self.negative_cache_ttl > Duration::from_secs(3600) {
            return bad("negative_cache_ttl", "must be at most one hour");
        }
        Ok(())
    }
}

/// An encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Confluent-framed bytes: `0x00`, schema id (big-endian), Avro body.
    pub bytes: Vec<u8>,
    /// The schema id in the header.
    pub schema_id: u32,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The event, resolved to the types' schema.
    pub event: OrderEvent,
    /// The writer schema id from the header.
    pub schema_id: u32,
}

/// After a retriable registry failure, cold look-ups fail fast for this long (protects a
/// struggling registry from every waiting task retrying at once).
const OUTAGE_BACKOFF: Duration = Duration::from_secs(1);

/// Bound of the negative cache (unknown schema ids).
const MAX_NEGATIVE_ENTRIES: usize = 10_000;

/// A writer schema fetched from the registry (or known to be ours).
#[derive(Debug)]
struct WriterSchema {
    /// `None` when identical (by Parsing Canonical Form) to the types' schema: fast path.
    schema: Option<Schema>,
}

#[derive(Debug)]
struct Inner {
    cfg: RegistryConfig,
    sr: SrSettings,
    /// topic -> schema id of the types' schema under the topic's subject.
    ids_by_topic: RwLock<HashMap<String, u32>>,
    /// schema id -> writer schema.
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// The most recent schema id known to be the types' schema (`u64::MAX`: none): decodes of
    /// it take no lock at all (the codec benchmark's "two threads share the cache" case stays
    /// contention-free).
    hot_fast_id: AtomicU64,
    /// schema id -> when the registry said "not found".
    unknown: Mutex<HashMap<u32, Instant>>,
    /// Serialises cold registry lookups so a burst of misses makes one request, not N.
    fetch_lock: tokio::sync::Mutex<()>,
    /// After a retriable registry failure, callers queued behind `fetch_lock` fail fast until
    /// this instant instead of each waiting out its own timeout.
    outage_until: Mutex<Option<Instant>>,
}

/// Confluent wire-format Avro codec for [`OrderEvent`]. Cheap to clone (one `Arc`); create one
/// per process and share it: it owns the registry client and the caches.
#[derive(Debug, Clone)]
pub struct OrderCodec {
    inner: Arc<Inner>,
}

fn types_writer() -> &'static GenericDatumWriter<'static> {
    static W: OnceLock<GenericDatumWriter<'static>> = OnceLock::new();
    W.get_or_init(|| {
        GenericDatumWriter::builder(types_schema())
            .human_readable(false)
            .build()
            .unwrap_or_else(|e| panic!("the types' schema does not resolve: {e}"))
    })
}

fn types_reader() -> &'static GenericDatumReader<'static> {
    static R: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    R.get_or_init(|| {
        GenericDatumReader::builder(types_schema())
            .human_readable(false)
            .build()
            .unwrap_or_else(|e| panic!("the types' schema does not resolve: {e}"))
    })
}

/// `event_id` carries the `uuid` logical type: require canonical lower-case hyphenated text so
/// every reader (fast or resolving path, any language) sees the same string.
#[inline]
fn check_event_id(id: &str) -> Result<(), CodecError> {
    let parsed = uuid::Uuid::try_parse(id).map_err(|e| CodecError::Encode {
        message: format!("event_id {id:?} is not a UUID: {e}"),
    })?;
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    if parsed.hyphenated().encode_lower(&mut buf) != id {
        return Err(CodecError::Encode {
            message: format!("event_id {id:?} is not in canonical lower-case hyphenated form"),
        });
    }
    Ok(())
}

/// Encodes `event` with the types' schema: header for `schema_id` + Avro body, appended to `out`.
/// On error `out` is left as it was.
fn encode_into(schema_id: u32, event: &OrderEvent, out: &mut Vec<u8>) -> Result<(), CodecError> {
    check_event_id(&event.event_id)?;
    let start = out.len();
    wire::write_header(schema_id, out);
    if crate::fast::enabled() {
        crate::fast::encode(event, out);
        return Ok(());
    }
    if let Err(e) = types_writer().write_ser(out, event) {
        out.truncate(start);
        return Err(CodecError::Encode {
            message: e.to_string(),
        });
    }
    Ok(())
}

/// Decodes an Avro body written with `writer` (None = the types' schema) into the types.
pub(crate) fn decode_body(
    schema_id: u32,
    writer: Option<&Schema>,
    mut body: &[u8],
) -> Result<OrderEvent, CodecError> {
    let undecodable = |message: String| CodecError::Undecodable { schema_id, message };
    let event = match writer {
        None if crate::fast::enabled() => {
            let (event, read) = crate::fast::decode(body).map_err(undecodable)?;
            body = &body[read..];
            event
        }
        None => types_reader()
            .read_deser::<OrderEvent>(&mut body)
            .map_err(|e| undecodable(e.to_string()))?,
        Some(writer) => {
            let value = crate::resolve::read_resolved(writer, types_schema(), body).map_err(
                |e| match e {
                    crate::resolve::ResolveError::Incompatible(message) => {
                        CodecError::IncompatibleSchema { schema_id, message }
                    }
                    other => undecodable(other.to_string()),
                },
            )?;
            body = &[];
            apache_avro::from_value::<OrderEvent>(&value).map_err(|e| undecodable(e.to_string()))?
        }
    };
    if !body.is_empty() {
        return Err(undecodable(format!(
            "{} trailing bytes after the record",
            body.len()
        )));
    }
    Ok(event)
}

/// Like [`decode_body`], into `out`, reusing its allocations on the fast path.
fn decode_body_into(
    schema_id: u32,
    writer: Option<&Schema>,
    body: &[u8],
    out: &mut OrderEvent,
) -> Result<(), CodecError> {
    if writer.is_none() && crate::fast::enabled() {
        let read = crate::fast::decode_into(body, out)
            .map_err(|message| CodecError::Undecodable { schema_id, message })?;
        if read != body.len() {
            return Err(CodecError::Undecodable {
                schema_id,
                message: format!("{} trailing bytes after the record", body.len() - read),
            });
        }
        return Ok(());
    }
    *out = decode_body(schema_id, writer, body)?;
    Ok(())
}

/// Parses a writer schema and decides between the fast path and the resolving path.
fn prepare_writer(schema_id: u32, text: &str) -> Result<WriterSchema, CodecError> {
    let schema = Schema::parse_str(text).map_err(|e| CodecError::IncompatibleSchema {
        schema_id,
        message: format!("not a valid Avro schema: {e}"),
    })?;
    if schema.canonical_form() == types_canonical_form() {
        return Ok(WriterSchema { schema: None });
    }
    // `Partial` (a writer enum symbol or union branch the reader lacks) still decodes every
    // value that avoids it; only a value that hits it fails, as `Undecodable`.
    if let Err(e) = SchemaCompatibility::can_read(&schema, types_schema()) {
        let findings = crate::explain::explain(&schema, types_schema());
        let why = if findings.is_empty() {
            e.to_string()
        } else {
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(CodecError::IncompatibleSchema {
            schema_id,
            message: format!(
                "cannot be resolved to the order-event schema this build reads: {why}"
            ),
        });
    }
    Ok(WriterSchema {
        schema: Some(schema),
    })
}

/// Status code of a failed registry call, as far as SRCError lets us know it.
fn status_of(e: &SRCError) -> Option<u16> {
    // SRCError keeps no status field: it is in the message ("... failed with status 404 Not
    // Found") and, for Confluent-style answers, in RawError::error_code (40403 -> 404).
    if let Some(code) = e
        .error
        .split("with status ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
    {
        return Some(code);
    }
    let raw = std::error::Error::source(e)?.downcast_ref::<RawError>()?;
    match raw.error_code {
        c @ 100..=599 => u16::try_from(c).ok(),
        c @ 10_000..=59_999 => u16::try_from(c / 100).ok(),
        _ => None,
    }
}

impl OrderCodec {
    /// Builds the codec (no network I/O; the registry is first contacted on first use).
    ///
    /// # Errors
    /// [`SchemaError::InvalidConfig`] or [`SchemaError::Client`].
    pub fn new(cfg: RegistryConfig) -> Result<Self, SchemaError> {
        cfg.validate()?;
        let mut sr = SrSettings::new_builder(cfg.url.clone());
        sr.set_timeout(cfg.request_timeout);
        if let Some(auth) = &cfg.access.basic_auth {
            sr.set_basic_authorization(&auth.username, Some(auth.password()));
        }
        let sr = sr
            .build_with(cfg.access.client_builder(cfg.request_timeout)?)
            .map_err(|e| SchemaError::Client {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        // Parse and resolve the embedded schemas now, not on the first message.
        let _ = (types_writer(), types_reader(), types_canonical_form());
        Ok(OrderCodec {
            inner: Arc::new(Inner {
                cfg,
                sr,
                ids_by_topic: RwLock::new(HashMap::new()),
                writers: RwLock::new(HashMap::new()),
                hot_fast_id: AtomicU64::new(u64::MAX),
                unknown: Mutex::new(HashMap::new()),
                fetch_lock: tokio::sync::Mutex::new(()),
                outage_until: Mutex::new(None),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.cfg
    }

    /// The subject for `topic` under the configured strategy.
    pub fn subject(&self, topic: &str) -> String {
        self.inner.cfg.subject_strategy.subject(topic)
    }

    /// Encodes `event` with the types' schema for `topic`. The first call per topic registers
    /// (or, with `auto_register = false`, looks up) the schema under the topic's subject and
    /// caches the id; later calls do no I/O.
    ///
    /// # Errors
    /// [`CodecError::Registry`] (check `is_retriable()`; nothing is cached on failure) or
    /// [`CodecError::Encode`].
    pub async fn encode(&self, topic: &str, event: &OrderEvent) -> Result<Encoded, CodecError> {
        let schema_id = self.schema_id_for(topic).await?;
        let mut bytes = Vec::with_capacity(128);
        encode_into(schema_id, event, &mut bytes)?;
        Ok(Encoded { bytes, schema_id })
    }

    /// Sync hot path: encodes with an id obtained earlier from [`OrderCodec::encode`] or
    /// [`OrderCodec::schema_id_for`]; appends to `out` (left untouched on error). No registry.
    ///
    /// # Errors
    /// [`CodecError::Encode`].
    #[inline]
    pub fn encode_with_cached_id(
        &self,
        schema_id: u32,
        event: &OrderEvent,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        encode_into(schema_id, event, out)
    }

    /// The id of the types' schema under `topic`'s subject, registering or looking it up on the
    /// first call (then cached).
    ///
    /// # Errors
    /// [`CodecError::Registry`].
    pub async fn schema_id_for(&self, topic: &str) -> Result<u32, CodecError> {
        if let Some(id) = self.cached_topic_id(topic) {
            return Ok(id);
        }
        let _guard = self.inner.fetch_lock.lock().await;
        if let Some(id) = self.cached_topic_id(topic) {
            return Ok(id);
        }
        let subject = self.subject(topic);
        if let Some(e) = self.recent_outage(Some(&subject), None) {
            return Err(e);
        }
        let id = self
            .register_or_lookup(&subject)
            .await
            .inspect_err(|e| self.note_failure(e))?;
        tracing::info!(
            topic,
            subject,
            schema_id = id,
            "order-event schema id resolved"
        );
        self.inner
            .ids_by_topic
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), id);
        // We know what this id decodes as: spare the decode path a registry round trip.
        self.insert_writer(id, Arc::new(WriterSchema { schema: None }));
        Ok(id)
    }

    fn insert_writer(&self, schema_id: u32, writer: Arc<WriterSchema>) {
        let fast = writer.schema.is_none();
        self.inner
            .writers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(schema_id, writer);
        let hot = &self.inner.hot_fast_id;
        if fast {
            hot.store(u64::from(schema_id), Ordering::Release);
        } else {
            // An id re-bound to a schema other than the types' must leave the lock-free slot.
            let _ = hot.compare_exchange(
                u64::from(schema_id),
                u64::MAX,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn cached_topic_id(&self, topic: &str) -> Option<u32> {
        self.inner
            .ids_by_topic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .copied()
    }

    async fn register_or_lookup(&self, subject: &str) -> Result<u32, CodecError> {
        let text = types_version().text;
        if self.inner.cfg.auto_register {
            let supplied = SuppliedSchema::new(
                Some(ORDER_EVENT_FULL_NAME.to_owned()),
                SchemaType::Avro,
                text.to_owned(),
            );
            post_schema(&self.inner.sr, subject.to_owned(), supplied)
                .await
                .map(|r| r.id)
                .map_err(|e| self.registry_error(&e, Some(subject), None))
        } else {
            let body = serde_json::json!({ "schema": text, "schemaType": "AVRO" }).to_string();
            let raw = perform_sr_call(&self.inner.sr, SrCall::PostForVersion(subject, &body))
                .await
                .map_err(|e| self.registry_error(&e, Some(subject), None))?;
            raw.id.ok_or_else(|| CodecError::Registry {
                url: self.inner.cfg.url.clone(),
                subject: Some(subject.to_owned()),
                schema_id: None,
                status: None,
                retriable: false,
                message: "lookup answer carries no id".to_owned(),
            })
        }
    }

    fn registry_error(
        &self,
        e: &SRCError,
        subject: Option<&str>,
        schema_id: Option<u32>,
    ) -> CodecError {
        let status = status_of(e);
        // Refused credentials: say whose. Retriable, because credentials get rotated: a consumer
        // then parks the record for a later retry instead of dead-lettering a good one (start-up
        // checks catch wrong credentials before anything runs).
        let refused = matches!(status, Some(401 | 403));
        let retriable = refused || e.retriable || matches!(status, Some(408 | 429 | 500..=599));
        let detail = match &e.cause {
            Some(c) => format!("{}: {c}", e.error),
            None => e.error.clone(),
        };
        let message = if refused {
            let who = self.inner.cfg.access.basic_auth.as_ref().map_or_else(
                || "anonymous access".to_owned(),
                |a| format!("user \"{}\"", a.username),
            );
            format!("the registry refused {who}: {detail}")
        } else {
            detail
        };
        CodecError::Registry {
            url: self.inner.cfg.url.clone(),
            subject: subject.map(str::to_owned),
            schema_id,
            status,
            retriable,
            message,
        }
    }

    /// Decodes a Confluent-framed message, resolving its writer schema (fetched by id once, then
    /// cached) to the types' schema.
    ///
    /// # Errors
    /// Framing errors ([`CodecError::Empty`], [`CodecError::BadMagicByte`],
    /// [`CodecError::Truncated`]), [`CodecError::UnknownSchemaId`] (negatively cached for
    /// `negative_cache_ttl`), [`CodecError::Registry`], [`CodecError::IncompatibleSchema`],
    /// [`CodecError::Undecodable`].
    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded, CodecError> {
        let (schema_id, body) = wire::split(bytes)?;
        if self.is_hot(schema_id) {
            let event = decode_body(schema_id, None, body)?;
            return Ok(Decoded { event, schema_id });
        }
        let writer = match self.cached_writer(schema_id) {
            Some(w) => w,
            None => self.fetch_writer(schema_id).await?,
        };
        let event = decode_body(schema_id, writer.schema.as_ref(), body)?;
        Ok(Decoded { event, schema_id })
    }

    /// Like [`OrderCodec::decode`], into `out`, reusing its `String`/`Vec` allocations: in a
    /// consumer loop that keeps one `OrderEvent` buffer this decodes the types' schema without
    /// allocating. Returns the writer schema id. On error `out` is unspecified (partly
    /// overwritten).
    ///
    /// # Errors
    /// As [`OrderCodec::decode`].
    pub async fn decode_into(&self, bytes: &[u8], out: &mut OrderEvent) -> Result<u32, CodecError> {
        let (schema_id, body) = wire::split(bytes)?;
        if self.is_hot(schema_id) {
            decode_body_into(schema_id, None, body, out)?;
            return Ok(schema_id);
        }
        let writer = match self.cached_writer(schema_id) {
            Some(w) => w,
            None => self.fetch_writer(schema_id).await?,
        };
        decode_body_into(schema_id, writer.schema.as_ref(), body, out)?;
        Ok(schema_id)
    }

    /// Sync [`OrderCodec::decode_into`] for ids already in the cache; `None` when the writer
    /// schema is not cached yet.
    ///
    /// # Errors
    /// As [`OrderCodec::decode`], minus the registry errors.
    pub fn try_decode_cached_into(
        &self,
        bytes: &[u8],
        out: &mut OrderEvent,
    ) -> Option<Result<u32, CodecError>> {
        let (schema_id, body) = match wire::split(bytes) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        if self.is_hot(schema_id) {
            return Some(decode_body_into(schema_id, None, body, out).map(|()| schema_id));
        }
        let writer = self.cached_writer(schema_id)?;
        Some(decode_body_into(schema_id, writer.schema.as_ref(), body, out).map(|()| schema_id))
    }

    /// Sync decode for ids already in the cache (e.g. after one async [`OrderCodec::decode`]).
    /// Returns `None` when the writer schema is not cached yet.
    ///
    /// # Errors
    /// As [`OrderCodec::decode`], minus the registry errors.
    pub fn try_decode_cached(&self, bytes: &[u8]) -> Option<Result<Decoded, CodecError>> {
        let (schema_id, body) = match wire::split(bytes) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        if self.is_hot(schema_id) {
            return Some(
                decode_body(schema_id, None, body).map(|event| Decoded { event, schema_id }),
            );
        }
        let writer = self.cached_writer(schema_id)?;
        Some(
            decode_body(schema_id, writer.schema.as_ref(), body)
                .map(|event| Decoded { event, schema_id }),
        )
    }

    #[inline]
    fn is_hot(&self, schema_id: u32) -> bool {
        self.inner.hot_fast_id.load(Ordering::Acquire) == u64::from(schema_id)
    }

    #[inline]
    fn cached_writer(&self, schema_id: u32) -> Option<Arc<WriterSchema>> {
        self.inner
            .writers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&schema_id)
            .cloned()
    }

    /// Remembers a retriable registry failure for [`OUTAGE_BACKOFF`].
    fn note_failure(&self, e: &CodecError) {
        if e.is_retriable() {
            *self
                .inner
                .outage_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + OUTAGE_BACKOFF);
        }
    }

    /// A retriable error if the registry failed within the last [`OUTAGE_BACKOFF`].
    fn recent_outage(&self, subject: Option<&str>, schema_id: Option<u32>) -> Option<CodecError> {
        let until = (*self
            .inner
            .outage_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        (Instant::now() < until).then(|| CodecError::Registry {
            url: self.inner.cfg.url.clone(),
            subject: subject.map(str::to_owned),
            schema_id,
            status: None,
            retriable: true,
            message: format!(
                "the registry failed less than {OUTAGE_BACKOFF:?} ago; not asked again yet"
            ),
        })
    }

    fn negatively_cached(&self, schema_id: u32) -> bool {
        let mut unknown = self
            .inner
            .unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match unknown.get(&schema_id) {
            Some(at) if at.elapsed() < self.inner.cfg.negative_cache_ttl => true,
            Some(_) => {
                unknown.remove(&schema_id);
                false
            }
            None => false,
        }
    }

    async fn fetch_writer(&self, schema_id: u32) -> Result<Arc<WriterSchema>, CodecError> {
        if self.negatively_cached(schema_id) {
            return Err(CodecError::UnknownSchemaId {
                schema_id,
                cached: true,
            });
        }
        let _guard = self.inner.fetch_lock.lock().await;
        if let Some(w) = self.cached_writer(schema_id) {
            return Ok(w);
        }
        if self.negatively_cached(schema_id) {
            return Err(CodecError::UnknownSchemaId {
                schema_id,
                cached: true,
            });
        }
        if let Some(e) = self.recent_outage(None, Some(schema_id)) {
            return Err(e);
        }
        let registered = match get_schema_by_id(schema_id, &self.inner.sr).await {
            Ok(r) => r,
            Err(e) => {
                let err = self.registry_error(&e, None, Some(schema_id));
                if let CodecError::Registry {
                    status: Some(404), ..
                } = err
                {
                    tracing::warn!(
                        schema_id,
                        "schema id unknown to the registry; negatively cached"
                    );
                    let mut unknown = self
                        .inner
                        .unknown
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if unknown.len() >= MAX_NEGATIVE_ENTRIES {
                        // A storm of random ids: keep the map bounded.
                        let ttl = self.inner.cfg.negative_cache_ttl;
                        unknown.retain(|_, at| at.elapsed() < ttl);
                        if unknown.len() >= MAX_NEGATIVE_ENTRIES {
                            unknown.clear();
                        }
                    }
                    unknown.insert(schema_id, Instant::now());
                    return Err(CodecError::UnknownSchemaId {
                        schema_id,
                        cached: false,
                    });
                }
                tracing::warn!(schema_id, error = %err, "schema registry lookup failed");
                self.note_failure(&err);
                return Err(err);
            }
        };
        if registered.schema_type != SchemaType::Avro {
            return Err(CodecError::IncompatibleSchema {
                schema_id,
                message: format!("schema type is {:?}, not Avro", registered.schema_type),
            });
        }
        if !registered.references.is_empty() {
            return Err(CodecError::IncompatibleSchema {
                schema_id,
                message: "schema references are not supported".to_owned(),
            });
        }
        let writer = Arc::new(prepare_writer(schema_id, &registered.schema)?);
        tracing::info!(
            schema_id,
            fast_path = writer.schema.is_none(),
            "writer schema fetched from the registry"
        );
        self.insert_writer(schema_id, Arc::clone(&writer));
        Ok(writer)
    }

    /// Seeds the writer-schema cache (e.g. from `schemas/` in tests or offline tools), so `decode`
    /// needs no registry for `schema_id`.
    ///
    /// # Errors
    /// [`CodecError::IncompatibleSchema`] if `schema_text` is not usable.
    pub fn insert_writer_schema(
        &self,
        schema_id: u32,
        schema_text: &str,
    ) -> Result<(), CodecError> {
        let writer = Arc::new(prepare_writer(schema_id, schema_text)?);
        self.insert_writer(schema_id, writer);
        Ok(())
    }
}

/// Registry-free encode/decode against the embedded schemas (used by tests, golden fixtures and
/// benchmarks): the Avro body of `event` under the types' schema, without the header.
///
/// # Errors
/// [`CodecError::Encode`].
pub fn encode_body(event: &OrderEvent) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    encode_into(0, event, &mut out)?;
    out.drain(..wire::HEADER_LEN);
    Ok(out)
}
