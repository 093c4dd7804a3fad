//! The configuration's shape. Every field is documented for its role; defaults are chosen for a
//! single ingress pod in front of a real Kafka and Redis Cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spillway_core::key::KeySource;

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
}

/// Access log and trace export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// One log line per webhook request (target `spillway::access`).
    pub access_log: bool,
    /// Base URL of an OTLP/HTTP collector (`http://otel-collector:4318`); spans are POSTed to
    /// `{otlp_endpoint}/v1/traces` as protobuf. No endpoint: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, 0 to 1. Traces the ingress starts are sampled here;
    /// the worker follows the ingress's decision carried in the record's traceparent.
    pub trace_sample_ratio: f64,
    /// How often finished spans are sent to the collector.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Spans waiting for export at most; more are dropped (and never block a request).
    pub export_queue: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            access_log: true,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            export_interval: Duration::from_secs(5),
            export_queue: 8192,
        }
    }
}

/// The public HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Address the webhook listener binds (HTTP/1.1 and HTTP/2 on the same port).
    pub listen: SocketAddr,
    /// Requests handled at once by this process; beyond it new requests get 503 at once
    /// instead of queueing unboundedly.
    pub max_in_flight: usize,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A client that has not sent its whole header block within this is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A client that has not sent its whole body within this gets 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Largest header block accepted, in bytes (HTTP/1.1 read buffer and HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1.1 request; more: 431.
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may open and reset before the server has accepted them; past
    /// it the connection is closed (the "rapid reset" flood, CVE-2023-44487).
    pub http2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the server may reset for a client's protocol errors before it closes the
    /// connection (CVE-2024-2653-style floods of bad frames).
    pub http2_max_local_error_reset_streams: usize,
    /// Peers whose `X-Forwarded-For` is believed: the load balancers and proxies in front of
    /// the ingress. The client address is the right-most `X-Forwarded-For` entry not in this
    /// list; from any other peer the header is ignored and the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Clients (by address) whose requests fail signature verification more than
    /// `failures` times per `window`, summed over every ingress pod in the Redis Cluster, are
    /// refused with 403 for `duration`. `null` turns it off. Needs `redis.nodes`.
    pub block_failing_clients: Option<BlockConfig>,
    /// How long a pod trusts what it learnt of a client's block state before asking Redis
    /// again (one GET per client address per this period at most).
    #[serde(with = "humantime_serde")]
    pub block_check_interval: Duration,
    /// An event that has already been delivered this many times by Spillway workers (the
    /// `spillway-hop` header) is refused with 508: a subscription loops back into the ingress.
    pub max_hops: u32,
    /// The Retry-After sent with 409 (same key in flight) and 503 (Kafka or a fail-closed
    /// Redis unavailable, or too many requests in flight).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Serve HTTPS (TLS 1.2 and 1.3) with these PEM files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_in_flight: 4096,
            drain_timeout: Duration::from_secs(20),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 256,
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 256,
            trusted_proxies: Vec::new(),
            block_failing_clients: Some(BlockConfig::default()),
            block_check_interval: Duration::from_secs(5),
            max_hops: 3,
            retry_after: Duration::from_secs(2),
            tls: None,
        }
    }
}

/// PEM certificate chain and private key for the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// PEM certificates of the CAs that issue client certificates (a device fleet's). With it
    /// the listener asks every client for a certificate and checks it against these; a client
    /// without one may still connect, and only sources with `require_client_cert` refuse it.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The admin listener: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// The Kafka cluster events are written to.
#[derive(Debug, Clone, Deserialize)]
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
    /// librdkafka bump its epoch client-side. Needed for brokers without KIP-360 support for
    /// idempotent producers (tansu 0.6); harmless on Apache Kafka. Fatal producer errors always
    /// replace the producer.
    #[serde(default = "default_true")]
    pub recreate_producer_on_timeout: bool,
    /// Partitions given to topics that `spillway topics create` makes.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics that `spillway topics create` makes.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Any further librdkafka producer properties (security.protocol, sasl.*, ...). The
    /// durability settings `acks` and `enable.idempotence` cannot be overridden here.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A librdkafka properties file (`key=value` lines, `#` comments), read at startup and
    /// merged over `properties`: the place for credentials (`sasl.password`, ...) mounted
    /// from a Kubernetes Secret instead of written into the config.
    #[serde(default)]
    pub properties_file: Option<PathBuf>,
}

fn default_topic_prefix() -> String {
    "spillway.".into()
}
/// The same 5 s as the chart's `kafka.deliveryTimeoutSeconds`: a 503 must reach the sender
/// before its own timeout (GitHub gives up after 10 s), with room for the rest of the request.
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_linger() -> Duration {
    Duration::from_millis(2)
}
fn default_max_queued() -> u32 {
    100_000
}
fn default_true() -> bool {
    true
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}

/// The Redis Cluster holding dedupe claims.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Seed nodes, `redis://host:port`; the rest of the cluster is discovered.
    pub nodes: Vec<String>,
    /// Prefix of every dedupe key: `<prefix><source>:<key>`.
    pub key_prefix: String,
    /// Upper bound on one Redis round trip, reconnection included; past it Redis counts as
    /// unavailable and the source's `on_redis_unavailable` applies.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long an in-flight claim lives if its pod dies between claim and commit; a retry
    /// within it gets 409, after it the event is processed again.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// How long an accepted key is remembered: duplicates within it are answered 200.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            key_prefix: "spillway:dedupe:".into(),
            command_timeout: Duration::from_millis(500),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// One webhook source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// How requests are authenticated. `scheme: none` must be written out to accept
    /// unauthenticated requests.
    pub verify: VerifyConfig,
    /// The secrets accepted at once (several during a rotation).
    #[serde(default)]
    pub secrets: Vec<SecretConfig>,
    /// Replay window for schemes with a timestamp, both into the past and the future.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub tolerance: Duration,
    /// Kafka topic; `<kafka.topic_prefix><source>` by default.
    #[serde(default)]
    pub topic: Option<String>,
    /// Where the dedupe key comes from; the scheme's natural event id by default
    /// (webhook-id, X-GitHub-Delivery, the Stripe event's `/id`, X-Shopify-Webhook-Id),
    /// else a hash of the body.
    #[serde(default)]
    pub dedupe: Option<KeySource>,
    /// Kafka record key, so that one device's events stay in one partition, in order; the
    /// dedupe key by default.
    #[serde(default)]
    pub partition_key: Option<KeySource>,
    /// What to do when Redis cannot be reached.
    #[serde(default)]
    pub on_redis_unavailable: FailMode,
    /// Largest body accepted, in bytes; checked against Content-Length before reading and
    /// again while reading, and for a compressed body (`Content-Encoding: gzip` or `zstd`)
    /// also against its decompressed size.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Requests accepted per window for this source across all ingress pods (counted in the
    /// Redis Cluster); past it 429 with Retry-After. None: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Requests must come over TLS with a client certificate from `ingress.tls.client_ca_file`
    /// (mutual TLS, for device fleets); others get 401. The certificate's subject is the
    /// device id: the record's `spillway-device-id` header, and a key source
    /// (`from: client_certificate`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Client addresses allowed to send to this source; empty: any. Behind a proxy the client
    /// address comes from `X-Forwarded-For` (see `ingress.trusted_proxies`).
    #[serde(default)]
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Where the event type comes from, for subscriptions that filter on it; by default the
    /// scheme's own (X-GitHub-Event, Stripe's `/type`, X-Shopify-Topic, `/type` for Standard
    /// Webhooks and Slack), none for generic HMAC and `none` sources.
    #[serde(default)]
    pub event_type: Option<KeySource>,
    /// Provider headers copied into the Kafka record (case-insensitive names). By default the
    /// scheme's event-type and id headers.
    #[serde(default)]
    pub forward_headers: Option<Vec<String>>,
}

/// When a client that keeps failing verification is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// Failed verifications per window that a client may have; one more blocks it.
    pub failures: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the block lasts.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            failures: 100,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(600),
        }
    }
}

/// A fixed-window rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per window.
    pub requests: u64,
    /// The window, e.g. `1s` or `1m`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

fn default_tolerance() -> Duration {
    spillway_signature::DEFAULT_TOLERANCE
}
fn default_max_body() -> u64 {
    1024 * 1024
}

/// Behaviour of a source while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Accept without dedupe and count the bypass: availability over exactly-once.
    FailOpen,
    /// Answer 503 so the sender retries later: no duplicate can slip through.
    #[default]
    FailClosed,
}

/// The verification scheme of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifyConfig {
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    Slack,
    /// Any HMAC-SHA256 sender.
    Hmac {
        /// Header carrying the signature.
        header: String,
        /// Text before the encoded MAC, e.g. `sha256=`.
        #[serde(default)]
        prefix: String,
        /// `hex` or `base64`.
        encoding: EncodingConfig,
        /// String to sign with `{id}`, `{timestamp}` and `{body}` placeholders.
        #[serde(default = "default_template")]
        template: String,
        id_header: Option<String>,
        timestamp_header: Option<String>,
    },
    /// No verification at all.
    None,
}

fn default_template() -> String {
    "{body}".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingConfig {
    Hex,
    Base64,
}

/// One secret: where to read it and when it stops being accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// Recorded in the Kafka record when this secret matched.
    pub id: String,
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// File holding the secret (a mounted Kubernetes Secret); a trailing newline is ignored.
    pub file: Option<PathBuf>,
    /// Refused with a clear error: secrets do not belong in config files.
    pub value: Option<String>,
    /// RFC 3339 time after which this secret is no longer accepted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after: Option<time::OffsetDateTime>,
}

/// Outbound delivery: how the workers call subscribers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The worker's admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
    /// Kafka consumer group of the workers: replicas in one group share the partitions.
    pub group_id: String,
    /// Records queued for one partition before it is paused (backpressure instead of
    /// unbounded buffering); it resumes below half of this.
    pub partition_backlog: usize,
    /// Deliveries queued for one subscription within one partition. When a slow subscriber's
    /// queue is full, its further deliveries wait in the first retry tier instead, so the
    /// partition keeps moving for every other subscription.
    pub subscription_queue: usize,
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
    /// Bearer token of the subscription API on the admin listener (`/v1/subscriptions`); the
    /// API is off without one.
    pub api_token: Option<CredentialConfig>,
    /// Further librdkafka consumer properties.
    pub consumer_properties: BTreeMap<String, String>,
    /// The public base URLs of this cluster's ingress (e.g. `https://hooks.example.com`). A
    /// subscription pointing at one of them is refused: it would feed events back into the
    /// ingress in a loop. (The ingress also refuses events past `ingress.max_hops`.)
    pub ingress_urls: Vec<String>,
    /// Addresses subscribers may resolve to although they are loopback, private, link-local
    /// and so on (trusted internal targets, tests). Everything else in those ranges is refused.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Delay before the first retry; doubled for each further attempt.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Attempts in all (the first one included) before an event is dead-lettered.
    pub max_attempts: u32,
    /// Random spread of each delay, as a fraction (0.2 = +/-20%), so that retries of many
    /// events do not arrive at a recovering subscriber all at once.
    pub retry_jitter: f64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9095)),
            group_id: "spillway-workers".into(),
            ingress_urls: Vec::new(),
            partition_backlog: 256,
            subscription_queue: 64,
            slow_after: Duration::from_secs(1),
            retry_concurrency: 64,
            drain_timeout: Duration::from_secs(10),
            api_token: None,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            consumer_properties: BTreeMap::new(),
            allow_cidrs: Vec::new(),
            retry_initial: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(600),
            max_attempts: 12,
            retry_jitter: 0.2,
        }
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
