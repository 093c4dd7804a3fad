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
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use spillway_core::Envelope;

/// Where the cluster is and how to reach it (security settings included): what every Kafka
/// client of Spillway (producer, consumers, admin, readers) starts from.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub brokers: String,
    /// librdkafka properties: `security.protocol`, `sasl.*`, `ssl.*`, ...
    pub properties: BTreeMap<String, String>,
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

/// Producer settings, from the `kafka` section of the config.
#[derive(Debug, Clone)]
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
}

impl ProduceError {
    /// Every value [`ProduceError::code`] can return.
    pub const CODES: &'static [&'static str] = &["queue_full", "not_acknowledged", "canceled"];

    /// A stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::NotAcknowledged(_) => "not_acknowledged",
            Self::Canceled => "canceled",
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
///
/// After a delivery timeout (when `recreate_on_timeout`) or a fatal error, the librdkafka
/// producer is replaced by a fresh one with a new producer id:
/// - a fatal error (e.g. a broken idempotence sequence) leaves a producer unusable for good;
/// - after a timeout, librdkafka bumps the idempotent producer's epoch on the client side
///   (KIP-360). Apache Kafka accepts that, but not every Kafka-protocol broker does (tansu 0.6's
///   sqlite storage panics on it), and a fresh producer id sidesteps the question entirely.
///
/// The replaced producer's queued and in-flight records are purged at once: their requests
/// get 503 (the sender retries) instead of the old producer sending them, under its old
/// producer id or a bumped epoch, once the broker is back.
#[derive(Clone)]
pub struct EventProducer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    recreate_on_timeout: bool,
    current: RwLock<Current>,
}

struct Current {
    generation: u64,
    producer: Arc<FutureProducer>,
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
        // Reconnect attempts are also when librdkafka notices timed-out records of a partition
        // whose broker is down; its 10 s default would delay the 503 well past the delivery
        // timeout. Overridable through `kafka.properties`.
        config.set("reconnect.backoff.max.ms", "1000");
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
            .set(
                "queue.buffering.max.messages",
                settings.max_queued_messages.to_string(),
            );
        let producer: FutureProducer = config.create().map_err(client_error("create producer"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                recreate_on_timeout: settings.recreate_on_timeout,
                current: RwLock::new(Current {
                    generation: 0,
                    producer: Arc::new(producer),
                }),
            }),
        })
    }

    fn current(&self) -> (u64, Arc<FutureProducer>) {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (current.generation, current.producer.clone())
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
        self.produce(topic, key, Some(value), headers).await
    }

    /// Writes a tombstone (a record without a value) for `key`: in a compacted topic it deletes
    /// the key.
    pub async fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<Delivered, ProduceError> {
        self.produce::<&str, &[u8]>(topic, Some(key), None, &[])
            .await
    }

    async fn produce<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, V)],
    ) -> Result<Delivered, ProduceError> {
        let (generation, producer) = self.current();
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (key, value) in headers {
            owned = owned.insert(Header {
                key: key.as_ref(),
                value: Some(value.as_ref()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(owned);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = producer.send_result(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
            other => ProduceError::NotAcknowledged(other),
        });
        let result = match delivery {
            Err(e) => Err(e),
            Ok(delivery) => match delivery.await {
                Ok(Ok(d)) => Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => Err(ProduceError::NotAcknowledged(e)),
                Err(_) => Err(ProduceError::Canceled),
            },
        };
        if let Err(ProduceError::NotAcknowledged(e)) = &result {
            let timed_out = matches!(
                e,
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
            );
            let fatal = producer.client().fatal_error().is_some();
            if fatal || (timed_out && self.shared.recreate_on_timeout) {
                self.replace(generation, producer);
            }
        }
        result
    }

    /// Swaps in a fresh producer, unless another failed send of the same generation did already.
    fn replace(&self, generation: u64, failed: Arc<FutureProducer>) {
        let fresh: FutureProducer = match self.shared.config.create() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a replacement kafka producer");
                return;
            }
        };
        {
            let mut current = self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if current.generation != generation {
                return;
            }
            current.generation += 1;
            current.producer = Arc::new(fresh);
            tracing::warn!(
                generation = current.generation,
                "kafka producer replaced after a failed delivery"
            );
        }
        // librdkafka's destroy blocks while its threads stop: do it off the async workers, once
        // the sends still holding the old producer have their delivery reports.
        retire(failed);
    }

    /// Records handed to the producer whose delivery report has not arrived yet.
    pub fn queued(&self) -> i32 {
        self.current().1.in_flight_count()
    }

    /// Waits until every queued record is acknowledged or failed. Blocks the thread: call it
    /// from `spawn_blocking` in async code.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        self.current()
            .1
            .flush(timeout)
            .map_err(client_error("flush"))
    }

    /// Whether the cluster answers a metadata request within `timeout`. Blocks the thread.
    pub fn metadata_ok(&self, timeout: Duration) -> Result<(), ClientError> {
        self.current()
            .1
            .client()
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(client_error("metadata"))
    }
}

/// Drops a replaced producer on a plain thread once nobody else holds it.
fn retire(producer: Arc<FutureProducer>) {
    let spawned = std::thread::Builder::new()
        .name("spillway-retire-producer".into())
        .spawn(move || {
            // The sends still waiting on it get their (failed) reports now, so it can go.
            producer.purge(PurgeConfig::default().queue().inflight());
            let mut producer = producer;
            loop {
                match Arc::try_unwrap(producer) {
                    Ok(last) => {
                        drop(last);
                        return;
                    }
                    Err(shared) => {
                        producer = shared;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the thread retiring a kafka producer");
    }
}

pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_produce_error_code_is_listed() {
        for e in [
            ProduceError::QueueFull,
            ProduceError::NotAcknowledged(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
            ProduceError::Canceled,
        ] {
            assert!(ProduceError::CODES.contains(&e.code()), "{}", e.code());
        }
        assert_eq!(ProduceError::CODES.len(), 3);
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
        if let Err(e) = EventProducer::new(&settings) {
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
