//! The rdkafka producer behind [`crate::EventProducer::Kafka`]: idempotent, `acks=all`, replaced
//! by a fresh one after a fatal error or (when configured) a delivery timeout, and failing
//! sends at once while no broker is reachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use spillway_core::time::millis;

use crate::reachability::{self, Reachability, Signals, STATISTICS_INTERVAL};
use crate::{
    client_error, ClientError, Delivered, ProduceError, ProducerSettings,
    LIBRDKAFKA_MESSAGE_MAX_BYTES,
};

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
/// get 503 (the sender retries). After a fatal error that costs nothing, since the producer
/// can deliver none of them. Replacement after a timeout is off by default (M-4) because the
/// purge also fails records of healthy partitions the broker was about to acknowledge; it
/// exists for tansu 0.6, whose sqlite storage panics when the old producer sends them once
/// the broker is back (a fault-suite run with the old producer left to finish its records
/// lost the broker that way three times out of three).
///
/// Replacement is single-flight: the failed sends of one generation start at most one, and it
/// runs on a thread of its own, because creating a librdkafka client (threads, connections)
/// and destroying one (joining its threads) would stall an async runtime thread. The send
/// that failed does not wait for it.
///
/// While librdkafka reports every broker down, sends fail at once with
/// [`ProduceError::Unreachable`] (see the `reachability` module).
#[derive(Clone)]
pub struct KafkaProducer {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    recreate_on_timeout: bool,
    message_max_bytes: u64,
    /// How long an outage is believed without confirmation (`reachability::hold`).
    unreachable_hold: Duration,
    current: RwLock<Current>,
    /// librdkafka producers created so far, the first one included.
    created: AtomicU64,
}

struct Current {
    generation: u64,
    client: Arc<Client>,
    /// A replacement for this generation is being created.
    replacing: bool,
}

/// One librdkafka producer, with what its callbacks observed.
struct Client {
    producer: FutureProducer<Signals>,
    reachability: Arc<Reachability>,
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
        // The broker states that tell when an outage is over (see `reachability`).
        // Overridable too; 0 leaves only librdkafka's report of the outage's start.
        config.set(
            "statistics.interval.ms",
            millis(STATISTICS_INTERVAL).to_string(),
        );
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
        // A value that does not parse is refused by librdkafka when the client is created.
        let message_max_bytes = config
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        let statistics_interval = config
            .get("statistics.interval.ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let unreachable_hold = reachability::hold(statistics_interval);
        let first =
            create_client(&config, unreachable_hold).map_err(client_error("create producer"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                recreate_on_timeout: settings.recreate_on_timeout,
                message_max_bytes,
                unreachable_hold,
                current: RwLock::new(Current {
                    generation: 0,
                    client: Arc::new(first),
                    replacing: false,
                }),
                created: AtomicU64::new(1),
            }),
        })
    }

    fn current(&self) -> (u64, Arc<Client>) {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (current.generation, current.client.clone())
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
        let (generation, client) = self.current();
        // Refused before anything is queued: the record could only wait out its delivery
        // timeout, and nothing of it can reach Kafka later.
        if client.reachability.unreachable(Instant::now()) {
            return Err(ProduceError::Unreachable);
        }
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
        let delivery = client
            .producer
            .send_result(record)
            .map_err(|(e, _)| refused(e));
        let result = match delivery {
            Err(e) => Err(e),
            Ok(delivery) => match delivery.await {
                Ok(Ok(d)) => {
                    client.reachability.delivered();
                    Ok(Delivered {
                        partition: d.partition,
                        offset: d.offset,
                    })
                }
                Ok(Err((e, _))) => Err(refused(e)),
                Err(_) => Err(ProduceError::Canceled),
            },
        };
        if let Err(e) = &result {
            let fatal = || client.producer.client().fatal_error().is_some();
            if replaces(e, fatal, self.shared.recreate_on_timeout) {
                self.replace(generation);
            }
        }
        result
    }

    /// Starts swapping in a fresh producer, unless another failed send of `generation` did
    /// already or a later generation is current. Returns at once.
    fn replace(&self, generation: u64) {
        {
            let mut current = self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if current.generation != generation || current.replacing {
                return;
            }
            current.replacing = true;
        }
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("spillway-kafka-replace".into())
            .spawn(move || shared.swap_in_fresh());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the thread replacing the kafka producer");
            self.shared.replacing_done();
        }
    }

    /// Records handed to the producer whose delivery report has not arrived yet.
    pub fn queued(&self) -> i32 {
        self.current().1.producer.in_flight_count()
    }

    /// Waits until every queued record is acknowledged or failed. Blocks the thread: call it
    /// from `spawn_blocking` in async code.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        self.current()
            .1
            .producer
            .flush(timeout)
            .map_err(client_error("flush"))
    }

    /// Whether the cluster answers a metadata request for `topic` within `timeout`. Blocks
    /// the thread.
    ///
    /// One topic, not the whole cluster: readiness asks this every few seconds, and a request
    /// for every topic makes the broker describe all of them (tens of thousands of partitions
    /// on a shared cluster) and this process hold the answer; 3,000 topics added 3 MiB to the
    /// ingress's resident memory here.
    pub fn metadata_ok(&self, topic: &str, timeout: Duration) -> Result<(), ClientError> {
        let client = self.current().1;
        client
            .producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(client_error("metadata"))?;
        // A broker answered: sends need not wait for the next statistics report to stop
        // failing fast (readiness asks this, so a pod that turns ready again also sends).
        client.reachability.delivered();
        Ok(())
    }

    /// The producer's `message.max.bytes`: what librdkafka refuses locally as too large.
    pub fn message_max_bytes(&self) -> u64 {
        self.shared.message_max_bytes
    }

    /// The cluster's id, from a metadata request within `timeout`; `None` when the cluster did
    /// not answer or has none. Blocks the thread.
    pub fn cluster_id(&self, timeout: Duration) -> Option<String> {
        self.current().1.producer.client().fetch_cluster_id(timeout)
    }
}

// === impl Shared ===

impl Shared {
    /// Creates the replacement and retires the old producer. Runs on a thread of its own.
    fn swap_in_fresh(&self) {
        let fresh = match create_client(&self.config, self.unreachable_hold) {
            Ok(client) => client,
            Err(e) => {
                // The next failed send of this generation tries again.
                tracing::error!(error = %e, "cannot create a replacement kafka producer");
                self.replacing_done();
                return;
            }
        };
        self.created.fetch_add(1, Ordering::Relaxed);
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            // A replacement during an outage (records that were in flight timing out) starts
            // out in it, rather than take sends that wait until its own first connection fails,
            // which takes up to `socket.connection.setup.timeout.ms` for an unroutable broker.
            fresh.reachability.inherit(&current.client.reachability);
            current.generation += 1;
            current.replacing = false;
            tracing::warn!(
                generation = current.generation,
                "kafka producer replaced after a failed delivery"
            );
            std::mem::replace(&mut current.client, Arc::new(fresh))
        };
        retire(old);
    }

    fn replacing_done(&self) {
        self.current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replacing = false;
    }
}

fn create_client(config: &ClientConfig, unreachable_hold: Duration) -> Result<Client, KafkaError> {
    let reachability = Arc::new(Reachability::new(unreachable_hold));
    let producer = config.create_with_context(Signals::new(reachability.clone()))?;
    Ok(Client {
        producer,
        reachability,
    })
}

/// What a refused record is: too large (for librdkafka's own `message.max.bytes` check when
/// handed over, or for the broker in the delivery report), a full local queue, or not
/// acknowledged for another reason. A batch the broker refuses as too large
/// (`MessageBatchTooLarge`) is not the record's fault (small records share the batch): it is
/// not acknowledged, so the sender retries rather than giving up on a 413.
fn refused(e: KafkaError) -> ProduceError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => ProduceError::TooLarge(e),
        _ => ProduceError::NotAcknowledged(e),
    }
}

/// Whether a failed send calls for a fresh producer: one that was not acknowledged, when the
/// producer hit a fatal error or (if so configured) the record timed out. A refusal for size,
/// a full queue or an unreachable cluster says nothing about the producer itself.
fn replaces(error: &ProduceError, fatal: impl FnOnce() -> bool, recreate_on_timeout: bool) -> bool {
    let ProduceError::NotAcknowledged(e) = error else {
        return false;
    };
    let timed_out = e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
    (timed_out && recreate_on_timeout) || fatal()
}

/// Purges a replaced producer and drops it once nobody else holds it. Blocks: call it on a
/// thread of its own.
fn retire(client: Arc<Client>) {
    // The sends still waiting on it get their (failed) reports now, so it can go.
    client
        .producer
        .purge(PurgeConfig::default().queue().inflight());
    let mut client = client;
    loop {
        match Arc::try_unwrap(client) {
            Ok(last) => {
                drop(last);
                return;
            }
            Err(shared) => {
                client = shared;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[cfg(test)]
mod tests;
