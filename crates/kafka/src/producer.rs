//! The rdkafka producer behind [`crate::EventProducer::Kafka`]: idempotent, `acks=all`, replaced
//! by a fresh one after a fatal error or (when configured) a delivery timeout.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use spillway_core::time::millis;

use crate::{client_error, ClientError, Delivered, ProduceError, ProducerSettings};

/// The process's one rdkafka producer. Cloning shares it.
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
pub struct KafkaProducer {
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

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer").finish_non_exhaustive()
    }
}

// === impl KafkaProducer ===

impl KafkaProducer {
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
            .set(
                "message.timeout.ms",
                millis(settings.delivery_timeout).to_string(),
            )
            .set("linger.ms", millis(settings.linger).to_string())
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
