//! Kafka for Spillway, through rdkafka (librdkafka built by the `rdkafka` crate).
//!
//! - [`EventProducer`]: one per process, idempotent with `acks=all`; `send` resolves only when
//!   the delivery report is in, which is what allows the ingress to answer 202.
//! - [`admin`]: topic creation for the sources' topics.
//! - [`reader`]: reads topics back from the beginning to their end, for reconciliation in
//!   tests, the demo and the load generator.

pub mod admin;
pub mod reader;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use spillway_core::Envelope;

/// Producer settings, from the `kafka` section of the config.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub brokers: String,
    pub delivery_timeout: Duration,
    pub linger: Duration,
    pub max_queued_messages: u32,
    /// Extra librdkafka properties; `acks` and `enable.idempotence` are always set by us.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The local queue is full: the broker is slower than the intake. Shed load now rather
    /// than buffer without bound.
    #[error("producer queue is full")]
    QueueFull,
    #[error("kafka did not acknowledge the record: {0}")]
    NotAcknowledged(KafkaError),
    #[error("producer was shut down before the delivery report arrived")]
    Canceled,
}

#[derive(Debug, thiserror::Error)]
#[error("kafka {context}: {source}")]
pub struct ClientError {
    context: String,
    #[source]
    source: KafkaError,
}

fn client_error(context: impl Into<String>) -> impl FnOnce(KafkaError) -> ClientError {
    let context = context.into();
    move |source| ClientError { context, source }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The process's one producer. Cloning shares it.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer").finish_non_exhaustive()
    }
}

// === impl EventProducer ===

impl EventProducer {
    pub fn new(settings: &ProducerSettings) -> Result<Self, ClientError> {
        let mut config = ClientConfig::new();
        for (k, v) in &settings.properties {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &settings.brokers)
            // The durability contract: a record is acknowledged only once every in-sync
            // replica has it, and retries never duplicate or reorder it.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", millis(settings.delivery_timeout))
            .set("linger.ms", millis(settings.linger))
            .set("queue.buffering.max.messages", settings.max_queued_messages.to_string());
        let inner: FutureProducer = config.create().map_err(client_error("create producer"))?;
        Ok(Self { inner })
    }

    /// Writes the envelope to `topic` and waits for the delivery report.
    pub async fn send(&self, topic: &str, envelope: &Envelope) -> Result<Delivered, ProduceError> {
        let header_list = envelope.record_headers();
        let mut headers = OwnedHeaders::new_with_capacity(header_list.len());
        for (key, value) in &header_list {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let mut record = FutureRecord::to(topic)
            .payload(envelope.body.as_ref())
            .headers(headers);
        if let Some(key) = &envelope.record_key {
            record = record.key(key.as_str());
        }
        let delivery = self.inner.send_result(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
            other => ProduceError::NotAcknowledged(other),
        })?;
        match delivery.await {
            Ok(Ok(d)) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => Err(ProduceError::NotAcknowledged(e)),
            Err(_) => Err(ProduceError::Canceled),
        }
    }

    /// Records handed to the producer whose delivery report has not arrived yet.
    pub fn queued(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Waits until every queued record is acknowledged or failed. Blocks the thread: call it
    /// from `spawn_blocking` in async code.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        self.inner.flush(timeout).map_err(client_error("flush"))
    }

    /// Whether the cluster answers a metadata request within `timeout`. Blocks the thread.
    pub fn metadata_ok(&self, timeout: Duration) -> Result<(), ClientError> {
        self.inner
            .client()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(client_error("metadata"))
    }
}

pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}
