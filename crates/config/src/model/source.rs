//! One entry of `sources`: how a webhook sender is verified, deduplicated, limited and
//! routed, and where its signing secrets are read from.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use spillway_core::key::KeySource;

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
/// 960 KiB: with 16 KiB for the record's headers and key, a body of this size fits
/// librdkafka's default `message.max.bytes` of 1,000,000.
fn default_max_body() -> u64 {
    960 * 1024
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
