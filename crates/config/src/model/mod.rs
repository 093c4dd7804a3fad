//! The configuration's shape. Every field is documented for its role; defaults are chosen for a
//! single ingress pod in front of a real Kafka and Redis Cluster.
//!
//! One module per section; [`Config`] is the whole file.

mod console;
mod ingress;
mod kafka;
mod redis;
mod sns;
mod source;
mod telemetry;
mod worker;

pub use console::*;
pub use ingress::*;
pub use kafka::*;
pub use redis::*;
pub use sns::*;
pub use source::*;
pub use telemetry::*;
pub use worker::*;

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole configuration file. A new top-level section also goes into `ENV_SECTIONS`
/// (lib.rs), or environment overrides cannot reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    /// The webhook sources, by name: `POST /v1/hooks/{name}`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Outbound delivery settings of the workers.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// The subscribers events are delivered to.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Access log and OpenTelemetry traces of the ingress and the workers.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The operator console and its index.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Where bodies over a source's `inline_max_bytes` go (S3 and compatibles, GCS, Azure
    /// Blob Storage, a directory); without it every body travels in its Kafka record.
    #[serde(default)]
    pub objects: Option<spillway_objects::ObjectsConfig>,
}
