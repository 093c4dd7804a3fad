//! Kafka for Spillway, through rdkafka (librdkafka built by the `rdkafka` crate).
//!
//! - [`EventProducer`]: one per process, idempotent with `acks=all`; `send` resolves only when
//!   the delivery report is in, which is what allows the ingress to answer 202. Its in-memory
//!   variant ([`MemoryProducer`]) records what was produced and can be told to fail, time out
//!   or delay, so the request path and the worker are unit-tested without a broker.
//!   While librdkafka reports every broker down it fails sends at once
//!   ([`ProduceError::Unreachable`]) instead of letting them wait out the delivery timeout.
//! - [`admin`]: topic creation for the sources' topics, and the topics' size limit.
//! - [`reader`]: reads topics back from the beginning to their end, for reconciliation in
//!   tests, the demo and the load generator.
//! - [`fetch`]: reads single records back by partition and offset, for the console.

pub mod admin;
pub mod durability;
pub mod fetch;
mod memory;
mod producer;
mod reachability;
pub mod reader;

pub use memory::{MemoryBehaviour, MemoryFault, MemoryProducer, ProducedRecord};
pub use producer::KafkaProducer;
pub use reachability::STATISTICS_INTERVAL;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use spillway_core::Envelope;

/// Where the cluster is and how to reach it (security settings included): what every Kafka
/// client of Spillway (producer, consumers, admin, readers) starts from. Its Debug output
/// names the properties but never their values (`sasl.password` is one).
#[derive(Clone, Default)]
pub struct Connection {
    pub brokers: String,
    /// librdkafka properties: `security.protocol`, `sasl.*`, `ssl.*`, ...
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for ProducerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            brokers,
            delivery_timeout,
            linger,
            max_queued_messages,
            properties,
            recreate_on_timeout,
        } = self;
        f.debug_struct("ProducerSettings")
            .field("brokers", brokers)
            .field("delivery_timeout", delivery_timeout)
            .field("linger", linger)
            .field("max_queued_messages", max_queued_messages)
            .field("properties", &properties.keys().collect::<Vec<_>>())
            .field("recreate_on_timeout", recreate_on_timeout)
            .finish()
    }
}

impl Connection {
    /// A plaintext connection without further properties (the local stack).
    pub fn plain(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            properties: BTreeMap::new(),
        }
    }

    /// A client config with the properties and the brokers set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config.set("bootstrap.servers", &self.brokers);
        config
    }
}

impl From<&spillway_config::KafkaConfig> for Connection {
    fn from(c: &spillway_config::KafkaConfig) -> Self {
        Self {
            brokers: c.brokers.clone(),
            properties: c.properties.clone(),
        }
    }
}

/// librdkafka's default `message.max.bytes` (the largest produce request it builds), which a
/// producer applies unless `kafka.properties` sets it: a record's key, value and serialized
/// headers plus up to 36 bytes of record framing must fit in it, or librdkafka refuses the
/// record locally. Apache Kafka's default topic `max.message.bytes` (1,048,588) is above it,
/// so on an untuned cluster the producer refuses first.
pub const LIBRDKAFKA_MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// Producer settings, from the `kafka` section of the config. Debug output names the
/// properties but never their values.
#[derive(Clone)]
pub struct ProducerSettings {
    pub brokers: String,
    pub delivery_timeout: Duration,
    pub linger: Duration,
    pub max_queued_messages: u32,
    /// Extra librdkafka properties; `acks` and `enable.idempotence` are always set by us.
    pub properties: BTreeMap<String, String>,
    /// Replace the producer after a delivery timeout rather than let librdkafka bump its
    /// epoch (see [`EventProducer`]).
    pub recreate_on_timeout: bool,
}

impl From<&spillway_config::KafkaConfig> for ProducerSettings {
    fn from(c: &spillway_config::KafkaConfig) -> Self {
        Self {
            brokers: c.brokers.clone(),
            delivery_timeout: c.delivery_timeout,
            linger: c.linger,
            max_queued_messages: c.max_queued_messages,
            properties: c.properties.clone(),
            recreate_on_timeout: c.recreate_producer_on_timeout,
        }
    }
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
    /// The record is larger than Kafka takes: librdkafka's own check against the producer's
    /// `message.max.bytes` ([`EventProducer::message_max_bytes`]) when it is handed over, or
    /// the broker's against the topic's `max.message.bytes` in the delivery report. Sending
    /// it again cannot succeed. The broker checks whole batches, so small records can get
    /// this too when the topic's limit is below the producer's: compare them at startup
    /// ([`admin::topics_max_message_bytes`]).
    #[error("kafka refused the record as too large")]
    TooLarge(#[source] KafkaError),
    /// librdkafka reports every broker down: the record was not handed over at all, rather
    /// than wait out the delivery timeout.
    #[error("no kafka broker is reachable")]
    Unreachable,
}

impl ProduceError {
    /// Every value [`ProduceError::code`] can return.
    pub const CODES: &'static [&'static str] = &[
        "queue_full",
        "not_acknowledged",
        "canceled",
        "too_large",
        "unreachable",
    ];

    /// Whether the record may be in Kafka all the same: no acknowledgement came, but the
    /// broker may have written it (what refers to it must stay).
    pub fn may_be_written(&self) -> bool {
        matches!(self, Self::NotAcknowledged(_) | Self::Canceled)
    }

    /// A stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::NotAcknowledged(_) => "not_acknowledged",
            Self::Canceled => "canceled",
            Self::TooLarge(_) => "too_large",
            Self::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("kafka {context}: {source}")]
pub struct ClientError {
    context: String,
    #[source]
    source: KafkaError,
}

// === impl ClientError ===

impl ClientError {
    /// The topic asked for does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        matches!(
            self.source,
            KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
        )
    }
}

pub(crate) fn client_error(context: impl Into<String>) -> impl FnOnce(KafkaError) -> ClientError {
    let context = context.into();
    move |source| ClientError { context, source }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// The first header named `name` among a record's `headers`, as text: how records read back
/// ([`reader::ReadRecord`]) and records produced to memory ([`ProducedRecord`]) are inspected.
pub(crate) fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Where events are written: Kafka, or memory for tests. Cloning shares it.
///
/// An enum rather than a trait object, as the dedupe store (`spillway_store::SharedStore`) is: the callers
/// stay concrete, and the memory variant cannot drift from the calls the Kafka one offers.
#[derive(Debug, Clone)]
pub enum EventProducer {
    Kafka(KafkaProducer),
    Memory(MemoryProducer),
}

// === impl EventProducer ===

impl EventProducer {
    /// The process's Kafka producer.
    pub fn new(settings: &ProducerSettings) -> Result<Self, ClientError> {
        KafkaProducer::new(settings).map(Self::Kafka)
    }

    /// A producer that keeps its records in memory (see [`MemoryProducer`]).
    pub fn memory(memory: MemoryProducer) -> Self {
        Self::Memory(memory)
    }

    /// Writes the envelope to `topic` and waits for the delivery report.
    pub async fn send(&self, topic: &str, envelope: &Envelope) -> Result<Delivered, ProduceError> {
        let headers = envelope.record_headers();
        self.send_record(
            topic,
            envelope.record_key.as_deref().map(str::as_bytes),
            &envelope.body,
            &headers,
        )
        .await
    }

    /// Writes one record and waits for the delivery report. Used directly by the workers for
    /// retry and dead-letter records, which carry the original record's headers plus their own.
    pub async fn send_record<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(K, V)],
    ) -> Result<Delivered, ProduceError> {
        match self {
            Self::Kafka(p) => p.send_record(topic, key, value, headers).await,
            Self::Memory(p) => p.produce(topic, key, Some(value), headers).await,
        }
    }

    /// Writes a tombstone (a record without a value) for `key`: in a compacted topic it deletes
    /// the key.
    pub async fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<Delivered, ProduceError> {
        match self {
            Self::Kafka(p) => p.send_tombstone(topic, key).await,
            Self::Memory(p) => p.produce::<&str, &[u8]>(topic, Some(key), None, &[]).await,
        }
    }

    /// Records handed to the producer whose delivery report has not arrived yet.
    pub fn queued(&self) -> i32 {
        match self {
            Self::Kafka(p) => p.queued(),
            Self::Memory(p) => p.queued(),
        }
    }

    /// Waits until every queued record is acknowledged or failed. Blocks the thread: call it
    /// from `spawn_blocking` in async code.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        match self {
            Self::Kafka(p) => p.flush(timeout),
            Self::Memory(_) => Ok(()),
        }
    }

    /// Whether the cluster answers a metadata request for `topic` (one the process writes to)
    /// within `timeout`. Blocks the thread.
    pub fn metadata_ok(&self, topic: &str, timeout: Duration) -> Result<(), ClientError> {
        match self {
            Self::Kafka(p) => p.metadata_ok(topic, timeout),
            Self::Memory(p) => p.metadata_ok(),
        }
    }

    /// The producer's `message.max.bytes`: `kafka.properties`' value, else librdkafka's
    /// default ([`LIBRDKAFKA_MESSAGE_MAX_BYTES`]). A record larger than this, framing
    /// included, fails with [`ProduceError::TooLarge`].
    pub fn message_max_bytes(&self) -> u64 {
        match self {
            Self::Kafka(p) => p.message_max_bytes(),
            Self::Memory(p) => p.message_max_bytes(),
        }
    }

    /// The Kafka cluster's id, to tell clusters apart (dedupe keys are namespaced by it);
    /// `None` when the cluster does not answer within `timeout` or has no id. The memory
    /// producer's is `"memory"`. Blocks the thread: call it from `spawn_blocking` in async
    /// code.
    pub fn cluster_id(&self, timeout: Duration) -> Option<String> {
        match self {
            Self::Kafka(p) => p.cluster_id(timeout),
            Self::Memory(_) => Some(memory::MEMORY_CLUSTER_ID.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode;

    #[test]
    fn debug_output_names_properties_but_not_their_values() {
        let mut connection = Connection::plain("k:9092");
        connection
            .properties
            .insert("sasl.password".into(), "hunter2-secret".into());
        let settings = ProducerSettings {
            brokers: "k:9092".into(),
            delivery_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(2),
            max_queued_messages: 10,
            properties: connection.properties.clone(),
            recreate_on_timeout: true,
        };
        for text in [format!("{connection:?}"), format!("{settings:?}")] {
            assert!(text.contains("sasl.password"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn every_produce_error_code_is_listed() {
        for e in [
            ProduceError::QueueFull,
            ProduceError::NotAcknowledged(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
            ProduceError::Canceled,
            ProduceError::TooLarge(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
            ProduceError::Unreachable,
        ] {
            assert!(ProduceError::CODES.contains(&e.code()), "{}", e.code());
        }
        assert_eq!(ProduceError::CODES.len(), 5);
    }

    /// Managed Kafka (MSK, Confluent Cloud, Strimzi with TLS) needs TLS and SASL; librdkafka
    /// refuses to even create a client with these settings when built without them.
    #[test]
    fn the_clients_support_tls_and_sasl_scram() {
        let mut properties = BTreeMap::new();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "spillway"),
            ("sasl.password", "secret"),
        ] {
            properties.insert(k.to_owned(), v.to_owned());
        }
        let settings = ProducerSettings {
            brokers: "127.0.0.1:1".into(),
            delivery_timeout: Duration::from_secs(1),
            linger: Duration::from_millis(1),
            max_queued_messages: 10,
            properties: properties.clone(),
            recreate_on_timeout: true,
        };
        if let Err(e) = KafkaProducer::new(&settings) {
            panic!("producer with SASL_SSL: {e}");
        }
        let connection = Connection {
            brokers: "127.0.0.1:1".into(),
            properties,
        };
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> = connection
            .client_config()
            .set("group.id", "tls-check")
            .create();
        assert!(
            consumer.is_ok(),
            "consumer with SASL_SSL: {:?}",
            consumer.err()
        );
    }
}
