//! The subscription registry: a compacted Kafka topic (`<prefix>worker.subscriptions`) keyed by
//! subscription id, whose values are subscriptions as JSON and where a tombstone removes one.
//! Every worker replica follows it from the beginning, so all of them see the same registry
//! without another database; `spillway subscriptions` and the admin API write to it.
//!
//! Subscriptions from the config file (GitOps) sit beside the registered ones. Their ids are
//! reserved: the registry refuses them, and the config file wins if one turns up anyway.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use spillway_config::{Config, FieldError, ResolvedSubscription, StoredSecret, StoredSubscription};
use spillway_kafka::{Connection, Delivered, EventProducer};

use crate::topics::registry_topic;

mod live;

use live::is_config_managed;
pub use live::{LiveSubscriptions, Origin, SecretView, SubscriptionView};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid subscription: {}", spillway_config::describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("subscription {0:?} is defined in the config file; change it there")]
    ConfigManaged(String),
    #[error("no subscription {0:?} in the registry")]
    NotFound(String),
    #[error("subscription registry {topic}: {source}")]
    Kafka {
        topic: String,
        /// Boxed: a Kafka error is large, and every result of the registry carries its room.
        #[source]
        source: Box<TopicError>,
    },
}

/// What went wrong with the registry topic.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Creating the topic or reading its metadata.
    #[error(transparent)]
    Client(#[from] spillway_kafka::ClientError),
    /// The consumer reading it.
    #[error(transparent)]
    Consumer(#[from] KafkaError),
    /// Kafka did not take a write.
    #[error(transparent)]
    Produce(#[from] spillway_kafka::ProduceError),
    /// A subscription that cannot be written as JSON.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The blocking task assigning its partitions did not finish.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("the topic has no partitions")]
    NoPartitions,
    #[error("not read to its end within {0:?}")]
    NotCaughtUp(Duration),
}

/// How long the registry topic may take to be read to its end.
const CATCH_UP: Duration = Duration::from_secs(30);

/// A change read from the registry topic.
#[derive(Debug)]
pub enum Change {
    /// A subscription was added or replaced.
    Put(Box<StoredSubscription>),
    /// A tombstone: the subscription was removed.
    Remove(String),
    /// A record that is not a subscription (logged and skipped).
    Unreadable { key: String, why: String },
}

/// Reads the registry topic from its beginning and then follows it.
pub struct Follower {
    consumer: StreamConsumer,
    topic: String,
    /// Partitions not yet read to the end they had when following began.
    behind: HashSet<i32>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

// === impl Follower ===

impl Follower {
    /// Creates the registry topic if it is missing and starts reading it from the beginning.
    pub async fn start(config: &Config) -> Result<Self, RegistryError> {
        let topic = registry_topic(config);
        let failed = |source: TopicError| RegistryError::Kafka {
            topic: topic.clone(),
            source: Box::new(source),
        };
        ensure_registry_topic(config).await?;
        let mut client = Connection::from(&config.kafka).client_config();
        for (k, v) in &config.worker.consumer_properties {
            client.set(k, v);
        }
        let consumer: StreamConsumer = client
            // Every reader sees the whole registry: partitions are assigned, not shared in a
            // group, and nothing is committed.
            .set("group.id", format!("spillway-registry-{}", uuid_like()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| failed(e.into()))?;
        let (brokers_consumer, wanted) = (consumer, topic.clone());
        let (consumer, partitions) = tokio::task::spawn_blocking(move || {
            let partitions =
                spillway_kafka::reader::partitions_of(&brokers_consumer, &wanted, CATCH_UP)?;
            let mut assignment = TopicPartitionList::new();
            for p in &partitions {
                assignment.add_partition_offset(&wanted, *p, Offset::Beginning)?;
            }
            brokers_consumer.assign(&assignment)?;
            Ok::<_, TopicError>((brokers_consumer, partitions))
        })
        .await
        .map_err(|e| failed(e.into()))?
        .map_err(failed)?;
        if partitions.is_empty() {
            return Err(failed(TopicError::NoPartitions));
        }
        Ok(Self {
            consumer,
            topic,
            behind: partitions.into_iter().collect(),
        })
    }

    /// Whether every partition has been read to the end it had when following began.
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// The next change with where it was read (partition, offset); `None` when a partition
    /// reached its end instead (check [`Follower::caught_up`]).
    pub async fn next(&mut self) -> Result<Option<(Delivered, Change)>, RegistryError> {
        let message = match self.consumer.recv().await {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                self.behind.remove(&p);
                return Ok(None);
            }
            Err(e) => {
                return Err(RegistryError::Kafka {
                    topic: self.topic.clone(),
                    source: Box::new(e.into()),
                })
            }
        };
        let at = Delivered {
            partition: message.partition(),
            offset: message.offset(),
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let change = match message.payload() {
            None => Change::Remove(key),
            Some(value) => match serde_json::from_slice::<StoredSubscription>(value) {
                Ok(sub) if sub.id == key => Change::Put(Box::new(sub)),
                Ok(sub) => Change::Unreadable {
                    why: format!("its id {:?} differs from its key", sub.id),
                    key,
                },
                Err(e) => Change::Unreadable {
                    key,
                    why: e.to_string(),
                },
            },
        };
        Ok(Some((at, change)))
    }
}

/// Creates the registry topic (compacted) unless it exists, so a first write or a first
/// worker needs no separate setup step.
async fn ensure_registry_topic(config: &Config) -> Result<(), RegistryError> {
    let topic = registry_topic(config);
    spillway_kafka::admin::ensure_compacted_topic(
        &Connection::from(&config.kafka),
        &topic,
        config.kafka.replication_factor,
    )
    .await
    .map_err(|e| RegistryError::Kafka {
        topic,
        source: Box::new(e.into()),
    })
}

/// A throwaway name part: follower groups are never joined, but librdkafka wants a group id.
fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Writes to the registry topic, validating first.
#[derive(Debug, Clone)]
pub struct Registry {
    config: ConfigOf,
    producer: EventProducer,
    topic: String,
    /// Set once the topic is known to exist: the first write makes sure, later ones do not
    /// start an admin client again (a failed attempt is tried again on the next write).
    topic_ready: Arc<tokio::sync::OnceCell<()>>,
}

/// The config a [`Registry`] checks subscriptions against.
#[derive(Debug, Clone)]
enum ConfigOf {
    /// The file a command was started with.
    Fixed(Arc<Config>),
    /// A worker's, as its reloads leave it (a subscription may name a source added since).
    Live(Arc<LiveSubscriptions>),
}

// === impl Registry ===

impl Registry {
    pub fn new(config: Arc<Config>, producer: EventProducer) -> Self {
        Self::with(ConfigOf::Fixed(config), producer)
    }

    /// A registry that checks subscriptions against `live`'s config, which a worker's reloads
    /// replace.
    pub fn following(live: Arc<LiveSubscriptions>, producer: EventProducer) -> Self {
        Self::with(ConfigOf::Live(live), producer)
    }

    fn with(config: ConfigOf, producer: EventProducer) -> Self {
        let mut registry = Self {
            config,
            producer,
            topic: String::new(),
            topic_ready: Arc::default(),
        };
        registry.topic = registry_topic(&registry.config());
        registry
    }

    fn config(&self) -> Arc<Config> {
        match &self.config {
            ConfigOf::Fixed(config) => config.clone(),
            ConfigOf::Live(live) => live.config(),
        }
    }

    async fn ensure_topic(&self) -> Result<(), RegistryError> {
        let config = self.config();
        self.topic_ready
            .get_or_try_init(|| ensure_registry_topic(&config))
            .await
            .map(|_| ())
    }

    /// Checks `sub` as a worker would resolve it and that its id is not the config file's.
    pub fn check(&self, sub: &StoredSubscription) -> Result<ResolvedSubscription, RegistryError> {
        let config = self.config();
        if is_config_managed(&config, &sub.id) {
            return Err(RegistryError::ConfigManaged(sub.id.clone()));
        }
        config
            .resolve_subscription("", sub)
            .map_err(RegistryError::Invalid)
    }

    /// Adds or replaces a subscription.
    pub async fn put(&self, sub: &StoredSubscription) -> Result<Delivered, RegistryError> {
        self.check(sub)?;
        self.ensure_topic().await?;
        let value = serde_json::to_vec(sub).map_err(|e| self.failed(e.into()))?;
        self.producer
            .send_record::<&str, &[u8]>(&self.topic, Some(sub.id.as_bytes()), &value, &[])
            .await
            .map_err(|e| self.failed(e.into()))
    }

    /// Removes a registered subscription (a tombstone for its key). Deliveries of it already
    /// parked in retry tiers are dropped when they come due.
    pub async fn remove(&self, id: &str) -> Result<Delivered, RegistryError> {
        if is_config_managed(&self.config(), id) {
            return Err(RegistryError::ConfigManaged(id.to_owned()));
        }
        self.ensure_topic().await?;
        self.producer
            .send_tombstone(&self.topic, id.as_bytes())
            .await
            .map_err(|e| self.failed(e.into()))
    }

    /// The registered subscriptions as they stand now, read from the topic (the ones this
    /// config cannot resolve are left out, as the workers leave them out).
    pub async fn read_all(&self) -> Result<Vec<StoredSubscription>, RegistryError> {
        let config = self.config();
        let live = LiveSubscriptions::new(config.clone(), Vec::new());
        let mut follower = Follower::start(&config).await?;
        live.catch_up(&mut follower).await?;
        Ok(live.registered())
    }

    /// Whether `id` belongs to a subscription of the config file.
    pub fn is_config_managed(&self, id: &str) -> bool {
        is_config_managed(&self.config(), id)
    }

    /// How the config file's subscriptions and the `registered` ones are shown, in that order.
    pub fn views(&self, registered: &[StoredSubscription]) -> Vec<SubscriptionView> {
        self.config()
            .subscriptions
            .iter()
            .map(|s| {
                let secrets = s.secrets.iter().map(|k| (k.id.clone(), k.not_after));
                SubscriptionView::new(s, secrets, Origin::Config)
            })
            .chain(registered.iter().map(|s| self.view_of(s)))
            .collect()
    }

    /// How a registered subscription is shown.
    pub fn view_of(&self, sub: &StoredSubscription) -> SubscriptionView {
        let secrets = sub.secrets.iter().map(|k| (k.id.clone(), k.not_after));
        SubscriptionView::new(sub, secrets, Origin::Registry)
    }

    fn failed(&self, source: TopicError) -> RegistryError {
        RegistryError::Kafka {
            topic: self.topic.clone(),
            source: Box::new(source),
        }
    }
}

/// A new random signing secret, `whsec_` + base64 of 24 bytes, for a subscription registered
/// without one.
pub fn generate_secret(id: &str) -> StoredSecret {
    let bytes: [u8; 24] = rand::random();
    StoredSecret {
        id: id.to_owned(),
        secret: format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        not_after: None,
    }
}
