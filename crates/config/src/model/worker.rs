//! The `worker` section and `subscriptions`: how the workers deliver, and to whom, with the
//! signing secrets of the config file or of the subscription registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SecretConfig;

/// Outbound delivery: how the workers call subscribers. Its `Debug` hides the values of
/// secret-looking `consumer_properties`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The worker's admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
    /// Kafka consumer group of the workers: replicas in one group share the partitions.
    pub group_id: String,
    /// Records queued for one partition before it is paused (backpressure instead of
    /// unbounded buffering); it resumes below half of this. Keep it, and a lane's share of
    /// `max_record_memory` (an eighth), above one fetch (librdkafka's
    /// `max.partition.fetch.bytes`, 1 MiB): pausing drops what librdkafka has read ahead for
    /// the partition, so a bound below one fetch makes the worker fetch the same records again
    /// and again.
    pub partition_backlog: usize,
    /// Deliveries queued for one subscription within one partition, besides those in hand
    /// (`delivery_concurrency`). When a slow subscriber's
    /// queue is full, its further deliveries wait in the first retry tier instead, so the
    /// partition keeps moving for every other subscription.
    pub subscription_queue: usize,
    /// Deliveries one subscription has in hand at once within one source partition, those
    /// waiting behind an earlier record of their key included: records of one key are
    /// delivered one at a time, in order; records of different keys (or without a key) may
    /// overtake each other. 1 delivers a partition strictly in order, one round trip at a
    /// time.
    pub delivery_concurrency: usize,
    /// A subscription whose queue stays full this long counts as slow: until its queue has
    /// drained to half, its further deliveries go straight to the first retry tier.
    #[serde(with = "humantime_serde")]
    pub slow_after: Duration,
    /// Consecutive failed deliveries after which a subscription's circuit opens: its
    /// deliveries pause (without spending attempts) and one probe is sent per cooldown.
    /// 0 turns the breaker off.
    pub breaker_failures: u32,
    /// How long an open circuit waits before its next probe.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Deliveries one retry-tier partition makes at once, so that one hanging subscriber does
    /// not hold up the retries of the others.
    pub retry_concurrency: usize,
    /// How long a worker finishes the deliveries in hand when it loses partitions (a
    /// rebalance) or stops (SIGTERM) before it abandons them to the next owner. Records not
    /// started yet are handed back at once. Must be shorter than the consumer's
    /// `session.timeout.ms` (45 s unless set in `consumer_properties`).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often the config file is checked for changes to `sources`: a new source's topic
    /// is consumed, and changed routes (event types, forwarded headers) used, without a
    /// restart, as SIGHUP does at once. `0s`: only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Bearer token of the subscription API on the admin listener (`/v1/subscriptions`); the
    /// API is off without one.
    pub api_token: Option<CredentialConfig>,
    /// Write one record per delivery attempt to `<topic_prefix>worker.attempts` (event id,
    /// subscription, time, status, latency, error, the first KiB of the answer), which the
    /// console's index reads. Off, the console shows events but no attempts.
    pub record_attempts: bool,
    /// Further librdkafka consumer properties.
    pub consumer_properties: BTreeMap<String, String>,
    /// The public base URLs of this cluster's ingress (e.g. `https://hooks.example.com`). A
    /// subscription pointing at one of them is refused: it would feed events back into the
    /// ingress in a loop. (The ingress also refuses events past `ingress.max_hops`.)
    pub ingress_urls: Vec<String>,
    /// Addresses subscribers may resolve to although they are loopback, private, link-local
    /// and so on (trusted internal targets, tests). Everything else in those ranges is refused.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// PEM certificates trusted besides the built-in bundle (Mozilla's) when delivering:
    /// subscribers whose certificates a private CA signed. Read when the worker starts.
    pub extra_roots: Option<PathBuf>,
    /// Delay before the first retry; doubled for each further attempt.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Attempts in all (the first one included) before an event is dead-lettered.
    pub max_attempts: u32,
    /// No longer used, accepted so older configs still load: every retry now waits exactly
    /// its tier's delay, so that due times rise with offsets within a tier (one subscriber's
    /// long wait cannot hold up another's retries). The spread of the failures themselves
    /// spreads the retries.
    pub retry_jitter: f64,
    /// The longest `timeout` a subscription may have (the config file's and the API's alike).
    #[serde(with = "humantime_serde")]
    pub max_subscription_timeout: Duration,
    /// How long a first attempt may hold its source partition: past it the request is given
    /// up and the delivery is parked in the first retry tier (without spending an attempt),
    /// where it gets the subscription's whole timeout, so the partition's offsets keep moving.
    #[serde(with = "humantime_serde")]
    pub first_attempt_budget: Duration,
    /// How long a delivery may be postponed without an attempt (its circuit open, its
    /// subscription slow) before it is dead-lettered with reason `postponed_too_long`.
    #[serde(with = "humantime_serde")]
    pub max_postponement: Duration,
    /// Bytes of records a worker holds at once in its lanes, queued or in hand (payloads,
    /// each counted twice: the record and the event built from it). A partition whose lane
    /// holds more than its share is paused until it has worked its share down to half.
    pub max_record_memory: u64,
    /// Bytes librdkafka may prefetch per consumer (the worker has two): its
    /// `queued.max.messages.kbytes`, and `fetch.max.bytes` unless that is set in
    /// `consumer_properties`. Unset, it is sized from `memory_limit`
    /// ([`WorkerConfig::prefetch_bytes`]).
    pub consumer_prefetch_bytes: Option<u64>,
    /// The memory limit of the worker's container (the chart sets it from
    /// `worker.resources.limits.memory`). When set, `check-config` refuses record memory and
    /// prefetch that do not fit: 2 x `max_record_memory` + 2 x the prefetch + 64 MiB must not
    /// pass it.
    pub memory_limit: Option<u64>,
}

/// What a worker needs beside its records and librdkafka's prefetch: the runtime, the HTTP
/// client's connections, the registry and the metrics.
pub const WORKER_BASE_BYTES: u64 = 64 << 20;

impl WorkerConfig {
    /// What librdkafka may read ahead per consumer: `consumer_prefetch_bytes` when set;
    /// otherwise a quarter of what `memory_limit` leaves beside 2 x `max_record_memory` and
    /// [`WORKER_BASE_BYTES`], within 1..=64 MiB (16 MiB in the chart's default 256 MiB
    /// container); 16 MiB without a limit. A quarter, not the half the limit would allow for
    /// two consumers, keeps room for what the rule does not count.
    pub fn prefetch_bytes(&self) -> u64 {
        const MIB: u64 = 1 << 20;
        if let Some(bytes) = self.consumer_prefetch_bytes {
            return bytes;
        }
        let Some(limit) = self.memory_limit else {
            return 16 * MIB;
        };
        let left = limit
            .saturating_sub(WORKER_BASE_BYTES)
            .saturating_sub(self.max_record_memory.saturating_mul(2));
        (left / 4).clamp(MIB, 64 * MIB)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9095)),
            group_id: "spillway-workers".into(),
            ingress_urls: Vec::new(),
            partition_backlog: 4096,
            subscription_queue: 64,
            delivery_concurrency: 16,
            slow_after: Duration::from_secs(1),
            retry_concurrency: 64,
            drain_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(10),
            api_token: None,
            record_attempts: true,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            consumer_properties: BTreeMap::new(),
            allow_cidrs: Vec::new(),
            extra_roots: None,
            retry_initial: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(600),
            max_attempts: 12,
            retry_jitter: 0.2,
            max_subscription_timeout: Duration::from_secs(60),
            first_attempt_budget: Duration::from_secs(15),
            max_postponement: Duration::from_secs(24 * 3600),
            max_record_memory: 64 << 20,
            consumer_prefetch_bytes: None,
            memory_limit: None,
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field cannot be left out unnoticed.
        let Self {
            admin_listen,
            group_id,
            partition_backlog,
            subscription_queue,
            delivery_concurrency,
            slow_after,
            breaker_failures,
            breaker_cooldown,
            retry_concurrency,
            drain_timeout,
            reload_interval,
            api_token,
            record_attempts,
            consumer_properties,
            ingress_urls,
            allow_cidrs,
            extra_roots,
            retry_initial,
            retry_max_delay,
            max_attempts,
            retry_jitter,
            max_subscription_timeout,
            first_attempt_budget,
            max_postponement,
            max_record_memory,
            consumer_prefetch_bytes,
            memory_limit,
        } = self;
        f.debug_struct("WorkerConfig")
            .field("admin_listen", admin_listen)
            .field("group_id", group_id)
            .field("partition_backlog", partition_backlog)
            .field("subscription_queue", subscription_queue)
            .field("delivery_concurrency", delivery_concurrency)
            .field("slow_after", slow_after)
            .field("breaker_failures", breaker_failures)
            .field("breaker_cooldown", breaker_cooldown)
            .field("retry_concurrency", retry_concurrency)
            .field("drain_timeout", drain_timeout)
            .field("reload_interval", reload_interval)
            .field("api_token", api_token)
            .field("record_attempts", record_attempts)
            .field(
                "consumer_properties",
                &crate::redact::Properties(consumer_properties),
            )
            .field("ingress_urls", &crate::redact::Urls(ingress_urls))
            .field("allow_cidrs", allow_cidrs)
            .field("extra_roots", extra_roots)
            .field("retry_initial", retry_initial)
            .field("retry_max_delay", retry_max_delay)
            .field("max_attempts", max_attempts)
            .field("retry_jitter", retry_jitter)
            .field("max_subscription_timeout", max_subscription_timeout)
            .field("first_attempt_budget", first_attempt_budget)
            .field("max_postponement", max_postponement)
            .field("max_record_memory", max_record_memory)
            .field("consumer_prefetch_bytes", consumer_prefetch_bytes)
            .field("memory_limit", memory_limit)
            .finish()
    }
}

/// One subscriber. `S` is where its signing secrets come from: the config file names
/// environment variables or files ([`SecretConfig`]); the subscription registry in Kafka holds
/// the secrets themselves ([`StoredSecret`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig<S = SecretConfig> {
    /// Unique, stable id: it names the subscription in headers, metrics and the dead-letter topic.
    pub id: String,
    /// Where events are POSTed (http or https).
    pub url: String,
    /// Sources whose events it receives; all sources when empty.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Event types it receives; all types when empty.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Standard Webhooks secrets (`whsec_<base64>`) the deliveries are signed with; several
    /// during a rotation give several signatures.
    pub secrets: Vec<S>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A delivery not answered within this has failed.
    #[serde(default = "default_delivery_timeout_sub", with = "humantime_serde")]
    pub timeout: Duration,
    /// Deliveries per second each worker process makes to this subscriber at most (first
    /// attempts and retries alike); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// How records of a source with a Protobuf schema are delivered: `bytes`, the record as
    /// the device sent it (by default), or `json`, the proto3 JSON mapping of it
    /// (`Content-Type: application/json`; signed as sent). Other sources' events are always
    /// delivered as received.
    #[serde(default, skip_serializing_if = "ProtobufBody::is_bytes")]
    pub protobuf_body: ProtobufBody,
    /// How an event whose body is in object storage (over its source's `inline_max_bytes`)
    /// is delivered: `body`, the body itself, streamed from the store and checked against its
    /// SHA-256 (by default), or `reference`, a JSON document with a pre-signed URL the
    /// subscriber fetches the body from (`Content-Type:
    /// application/vnd.spillway.object-reference+json`).
    #[serde(default, skip_serializing_if = "LargeBody::is_body")]
    pub large_body: LargeBody,
    /// With `large_body: reference`: how long the pre-signed URL works, from the delivery
    /// attempt; 1 hour by default, at most 7 days (S3's limit).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_expiry: Option<Duration>,
}

/// How a subscription takes events whose body is in object storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LargeBody {
    #[default]
    Body,
    Reference,
}

impl LargeBody {
    fn is_body(&self) -> bool {
        *self == Self::Body
    }
}

/// A pre-signed URL's life, by default.
pub const DEFAULT_REFERENCE_EXPIRY: Duration = Duration::from_secs(3600);

/// How a subscription takes Protobuf records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtobufBody {
    #[default]
    Bytes,
    Json,
}

impl ProtobufBody {
    fn is_bytes(&self) -> bool {
        *self == Self::Bytes
    }
}

/// A subscription as the registry topic holds it.
pub type StoredSubscription = SubscriptionConfig<StoredSecret>;

/// A signing secret held in the subscription registry itself. The registry topic therefore
/// needs the access control of a secret store (see docs/operations.md).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSecret {
    /// Names the secret in listings.
    pub id: String,
    /// `whsec_<base64>`.
    pub secret: String,
    /// RFC 3339 time after which deliveries are no longer signed with it.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<time::OffsetDateTime>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A credential read from an environment variable or a file, never from the config text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Environment variable holding it.
    pub env: Option<String>,
    /// File holding it (a mounted Kubernetes Secret); a trailing newline is ignored.
    pub file: Option<PathBuf>,
}

fn default_delivery_timeout_sub() -> Duration {
    Duration::from_secs(10)
}
