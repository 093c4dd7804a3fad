//! The `kafka` section: the cluster events are written to, and the producer's bounds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The Kafka cluster events are written to. Its `Debug` hides the values of secret-looking
/// properties (`sasl.password`, `*secret*`, `*token*`, ...).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Prefix of the default per-source topic, `<prefix><source>`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// How long the producer may try to deliver one record (librdkafka `message.timeout.ms`);
    /// after it the request is answered 503 and its claim released.
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How long the producer waits to batch records (`linger.ms`).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Records the producer may hold before refusing more (`queue.buffering.max.messages`);
    /// a full queue answers 503 rather than buffering without bound.
    #[serde(default = "default_max_queued")]
    pub max_queued_messages: u32,
    /// After a delivery timeout, replace the producer (new producer id) instead of letting
    /// librdkafka bump its epoch client-side. Only for brokers without KIP-360 support for
    /// idempotent producers (tansu 0.6); off by default, since Apache Kafka, MSK and Redpanda
    /// need no such thing and each replacement costs a new producer id and fresh metadata. The
    /// replaced producer's queued and in-flight records are purged (their requests get 503),
    /// those of healthy partitions too. Fatal producer errors always replace
    /// the producer.
    #[serde(default)]
    pub recreate_producer_on_timeout: bool,
    /// Partitions given to topics that `spillway topics create` makes.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics Spillway creates (`spillway topics create`, and the
    /// registry a worker creates): 3 by default, -1 for the broker's
    /// `default.replication.factor`. Each also gets `min.insync.replicas` = min(2, factor), so
    /// a 202 (acks=all) rests on two brokers. 1 is refused unless `single_replica` is on.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Development only: allow a replication factor of 1, where a 202 rests on one broker's
    /// disk. Topics with one replica then also pass the start-up `topic_check`.
    #[serde(default)]
    pub single_replica: bool,
    /// What the ingress and the workers do at start when a topic they write cannot honour
    /// acks=all (one replica without `single_replica`, `min.insync.replicas` of 1 with
    /// several replicas, or more in-sync replicas required than exist): `warn` (log it, the
    /// default), `refuse` (exit) or `off`.
    #[serde(default)]
    pub topic_check: TopicCheck,
    /// Any further librdkafka properties (security.protocol, sasl.*, ...), for every Kafka
    /// client. What Spillway sets itself is refused here: `acks` and `enable.idempotence`, and
    /// the keys (and their aliases) of the fields above, such as `linger.ms`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A librdkafka properties file (`key=value` lines, `#` comments), read at startup and
    /// merged over `properties`: the place for credentials (`sasl.password`, ...) mounted
    /// from a Kubernetes Secret instead of written into the config.
    #[serde(default)]
    pub properties_file: Option<PathBuf>,
}

/// See [`KafkaConfig::topic_check`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicCheck {
    #[default]
    Warn,
    Refuse,
    Off,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be left out unnoticed.
        let Self {
            brokers,
            topic_prefix,
            delivery_timeout,
            linger,
            max_queued_messages,
            recreate_producer_on_timeout,
            partitions,
            replication_factor,
            single_replica,
            topic_check,
            properties,
            properties_file,
        } = self;
        f.debug_struct("KafkaConfig")
            .field("brokers", brokers)
            .field("topic_prefix", topic_prefix)
            .field("delivery_timeout", delivery_timeout)
            .field("linger", linger)
            .field("max_queued_messages", max_queued_messages)
            .field("recreate_producer_on_timeout", recreate_producer_on_timeout)
            .field("partitions", partitions)
            .field("replication_factor", replication_factor)
            .field("single_replica", single_replica)
            .field("topic_check", topic_check)
            .field("properties", &crate::redact::Properties(properties))
            .field("properties_file", properties_file)
            .finish()
    }
}

fn default_topic_prefix() -> String {
    "spillway.".into()
}
/// The same 5 s as the chart's `kafka.deliveryTimeoutSeconds`: a 503 must reach the sender
/// before its own timeout (GitHub gives up after 10 s), with room for the rest of the request.
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(5)
}
/// librdkafka's own default, and Apache Kafka's producer's since 4.0 (KIP-1030). Each batch
/// costs the producer's broker thread wake-ups whatever it holds: measured at 3,500/s, 2 ms
/// cost about 20 µs more CPU per request than 5 ms, for a p99 no better (docs/benchmarks.md,
/// "The producer's linger").
fn default_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_max_queued() -> u32 {
    100_000
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    3
}
