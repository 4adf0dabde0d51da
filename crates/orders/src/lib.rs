//! The order domain of orderstream, built on the generic Kafka crates: what a service that
//! produces and consumes order events uses, and the example processors.
//!
//! * [`OrderProducer`]: Avro order events (Confluent wire format) keyed by order id, on the
//!   generic [`orderstream_producer::RawProducer`].
//! * [`OrderProcessor`]: the sample consumer-side processor (order state machine, per-customer
//!   totals, dedup by event id and sequence), a [`orderstream_consumer::Processor`];
//!   [`status::StatusTransform`] the transactional stage's order-status transform.
//! * [`sim::OrderService`]: simulated order services for `produce` and `demo`.
//! * [`fixtures`]: order events for tests, benchmarks and examples.
//! * [`topics`]: the layout's topics (topology.toml) as the generic clients name them.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod fixtures;
mod processor;
mod producer;
pub mod sim;
pub mod status;
pub mod topics;

pub use processor::{
    CustomerTotals, OrderProcessor, OrderState, SampleConfig, SampleSnapshot,
    classify_decode_error, transition,
};
pub use producer::{CONTENT_TYPE, OrderProducer};
