//! [`OrderProducer`]: Avro order events (Confluent wire format), keyed by order id.

use std::time::Duration;

use orderstream_schema::{CodecError, OrderCodec, OrderEvent};
use tokio_util::sync::CancellationToken;

use orderstream_producer::{
    DeliveryOutcome, FlushReport, PendingDelivery, ProducerConfig, ProducerError, ProducerTopic,
    RDKafkaErrorCode, RawProducer,
};

/// `content-type` header value of every order event: Avro binary in the Confluent frame
/// (`0x00`, big-endian schema id, body).
pub const CONTENT_TYPE: &str = "application/vnd.confluent.avro";

/// The order-event producer. Build it once per process and clone it freely: every clone shares
/// one librdkafka producer (rebuilt only after a fatal error) and one codec.
#[derive(Debug, Clone)]
pub struct OrderProducer {
    raw: RawProducer,
    codec: OrderCodec,
}

impl OrderProducer {
    /// Validates `config`, connects and checks `topic` (must exist with exactly
    /// `expected_partitions` partitions). Fails within `config.startup_timeout` when the
    /// bootstrap servers are unreachable.
    pub async fn new(
        config: ProducerConfig,
        codec: OrderCodec,
        topic: impl Into<ProducerTopic>,
    ) -> Result<Self, ProducerError> {
        let raw = RawProducer::new(config, topic.into()).await?;
        Ok(Self { raw, codec })
    }

    /// The raw-bytes producer underneath (shares the same librdkafka handle).
    pub fn raw(&self) -> &RawProducer {
        &self.raw
    }

    /// The codec.
    pub fn codec(&self) -> &OrderCodec {
        &self.codec
    }

    fn encode_error(&self, event: &OrderEvent, e: CodecError) -> ProducerError {
        ProducerError::Encode {
            topic: self.raw.topic().name.clone(),
            key: Some(event.order_id.clone()),
            retriable: e.is_retriable(),
            source: Box::new(e),
        }
    }

    /// Schema id for the topic (registry lookup once, then cached by the codec).
    async fn schema_id(&self) -> Result<u32, CodecError> {
        self.codec.schema_id_for(&self.raw.topic().name).await
    }

    /// Encodes `event` into `buf` and hands it to librdkafka.
    async fn enqueue_encoded(
        &self,
        event: &OrderEvent,
        schema_id: u32,
        buf: &mut Vec<u8>,
    ) -> PendingDelivery {
        buf.clear();
        if let Err(e) = self.codec.encode_with_cached_id(schema_id, event, buf) {
            return PendingDelivery::done(self.raw.not_sent(self.encode_error(event, e)));
        }
        self.raw
            .enqueue(
                Some(event.order_id.as_bytes()),
                buf,
                &headers(event),
                Some(schema_id),
            )
            .await
    }

    /// Encodes one event and hands it to librdkafka, returning once it is *queued* (waiting only
    /// for queue space); the returned [`PendingDelivery`] resolves to its outcome. Calls awaited
    /// one after another keep their order per key, while acks are awaited concurrently — the
    /// pipelined way to send a stream of events without reordering one order's events.
    pub async fn enqueue(&self, event: &OrderEvent) -> PendingDelivery {
        let schema_id = match self.schema_id().await {
            Ok(id) => id,
            Err(e) => return PendingDelivery::done(self.raw.not_sent(self.encode_error(event, e))),
        };
        let mut buf = Vec::with_capacity(256);
        self.enqueue_encoded(event, schema_id, &mut buf).await
    }

    /// Encodes and sends one event keyed by its `order_id`; resolves when it is acknowledged
    /// or definitely failed. A full local queue makes this wait (backpressure), never fail.
    /// Registry down → [`DeliveryOutcome::NotSent`] with a retriable error, nothing sent.
    pub async fn send(&self, event: &OrderEvent) -> DeliveryOutcome {
        self.enqueue(event).await.outcome().await
    }

    /// Encodes and enqueues every event (librdkafka batches them), then awaits every delivery
    /// report. One outcome per event, in input order. When the registry cannot be reached no
    /// event is sent and every outcome is `NotSent`.
    pub async fn send_batch(&self, events: &[OrderEvent]) -> Vec<DeliveryOutcome> {
        let schema_id = match self.schema_id().await {
            Ok(id) => id,
            Err(e) => {
                let retriable = e.is_retriable();
                let shared = e.to_string();
                return events
                    .iter()
                    .map(|ev| {
                        self.raw.not_sent(ProducerError::Encode {
                            topic: self.raw.topic().name.clone(),
                            key: Some(ev.order_id.clone()),
                            retriable,
                            source: shared.clone().into(),
                        })
                    })
                    .collect();
            }
        };
        let mut batch = self.raw.batch(events.len());
        let mut buf = Vec::with_capacity(256);
        for event in events {
            buf.clear();
            if let Err(e) = self.codec.encode_with_cached_id(schema_id, event, &mut buf) {
                batch.not_handed_over(self.raw.not_sent(self.encode_error(event, e)));
                continue;
            }
            batch
                .send(
                    Some(event.order_id.as_bytes()),
                    &buf,
                    &headers(event),
                    Some(schema_id),
                )
                .await;
        }
        batch
            .outcomes(|i| events.get(i).map(|e| e.order_id.as_bytes()))
            .await
    }

    /// Sends pre-encoded bytes as they are (benchmark baseline, poison-record injection).
    pub async fn send_raw(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> DeliveryOutcome {
        self.raw.send_raw(key, payload, headers).await
    }

    /// See [`RawProducer::flush`].
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        self.raw.flush(deadline).await
    }

    /// See [`RawProducer::shutdown`].
    pub async fn shutdown(&self, deadline: Duration) -> FlushReport {
        self.raw.shutdown(deadline).await
    }

    /// See [`RawProducer::shutdown_on`].
    pub async fn shutdown_on(&self, cancel: CancellationToken, deadline: Duration) -> FlushReport {
        self.raw.shutdown_on(cancel, deadline).await
    }

    /// Sends awaiting their delivery report.
    pub fn in_flight(&self) -> usize {
        self.raw.in_flight()
    }

    /// Fatal-error rebuilds of the librdkafka handle so far.
    pub fn rebuilds(&self) -> u64 {
        self.raw.rebuilds()
    }

    /// Java-compatible partition of an order id (murmur2 over the layout's partition count).
    pub fn partition_for_order(&self, order_id: &str) -> i32 {
        self.raw.partition_for_key(order_id.as_bytes())
    }

    /// The current fatal error of the live handle, if any.
    pub fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.raw.fatal_error()
    }
}

/// The headers every order event carries.
fn headers(event: &OrderEvent) -> [(&'static str, &[u8]); 2] {
    [
        ("event_id", event.event_id.as_bytes()),
        ("content-type", CONTENT_TYPE.as_bytes()),
    ]
}
