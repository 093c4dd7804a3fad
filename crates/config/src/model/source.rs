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
    /// Replay window for schemes with a timestamp, both into the past and the future; the
    /// preset's (Twitch and Box: 10 minutes), else 5 minutes, by default.
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
    /// Kafka topic; `<kafka.topic_prefix><source>` by default.
    #[serde(default)]
    pub topic: Option<String>,
    /// Where the dedupe key comes from; the preset's own delivery or event id by default
    /// (webhook-id, X-GitHub-Delivery, the Stripe event's `/id`...), else a hash of the body.
    /// A request without the preset's id is keyed by the hash of its body and counted; one
    /// without a key configured here is refused (400).
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
    /// also against its decompressed size. By default 960 KiB (what fits Kafka's default
    /// record limit), or 10 MiB for a source whose large bodies go to object storage
    /// ([`SourceConfig::offloads`]). See [`SourceConfig::max_body`].
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// With `objects:` configured, a body larger than this is written to object storage as
    /// it arrives and the Kafka record carries a reference to it; 512 KiB by default. Not for
    /// batch sources, whose records are written one by one, nor sources with a schema.
    #[serde(default)]
    pub inline_max_bytes: Option<u64>,
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
    /// preset's own (X-GitHub-Event, Stripe's `/type`...), none for `hmac` and `none` sources.
    #[serde(default)]
    pub event_type: Option<KeySource>,
    /// Provider headers copied into the Kafka record (case-insensitive names). By default the
    /// preset's signature, id, timestamp and event-type headers.
    #[serde(default)]
    pub forward_headers: Option<Vec<String>>,
    /// The URL the provider was given, for schemes that sign it (Twilio, Square, HubSpot,
    /// Trello, Mandrill): its scheme, host and port replace what the request says, and the
    /// request's path and query are appended. By default `https://` and the Host header.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The token Meta's subscription handshake (`GET ?hub.verify_token=`) must carry: the
    /// value typed into the app dashboard beside the callback URL. Without it that handshake
    /// is refused.
    #[serde(default)]
    pub verify_token: Option<super::CredentialConfig>,
    /// `scheme: aws-sns` only, and required there: the topics (full ARNs,
    /// `arn:aws:sns:<region>:<account>:<name>`) whose messages are accepted. AWS signs every
    /// topic's messages with the same certificate, so the signature alone would admit any AWS
    /// account's topic; a message or a subscription from another topic gets 403
    /// `topic_not_allowed`.
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// Also write the authenticated handshakes this source answers (Slack's url_verification,
    /// Twitch's, Zoom's, Discord's PING, Xero's intent to receive, SNS's subscription and
    /// unsubscribe confirmations) to Kafka as events, deduplicated like any other; the
    /// provider still gets the handshake's own answer, once the event is durable. Unsigned
    /// handshakes (GET challenges, HEAD probes, Graph's and Asana's) are never stored: anyone
    /// can send one.
    #[serde(default)]
    pub store_handshakes: bool,
    /// Each request is a batch of records (`format: ndjson | json_array |
    /// protobuf_delimited`): verified once over the whole body, then split, and each record
    /// written as its own event with its own id, dedupe key and partition key. `dedupe` and
    /// `partition_key` are then read from each record (a JSON pointer into it, or its hash;
    /// a header applies to every record of the request). None: one request, one event.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// The shape of the source's records (each record of a batch, else each request's body):
    /// a JSON Schema or a Protobuf message type. A record that does not match goes to the
    /// source's quarantine topic, never to subscribers. None: bodies are not checked.
    #[serde(default)]
    pub schema: Option<SchemaConfig>,
}

/// What a source's records must look like, and what becomes of those that do not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// A JSON Schema file (draft 2020-12; `format` is checked). It must be self-contained:
    /// `$ref`s point inside it (`#/$defs/...`).
    #[serde(default)]
    pub json_schema: Option<PathBuf>,
    /// A Protobuf message type from a descriptor set.
    #[serde(default)]
    pub protobuf: Option<ProtobufSchemaConfig>,
    /// What the sender is told of a record that does not match; it is quarantined either way.
    #[serde(default)]
    pub on_invalid: OnInvalid,
    /// Where records that do not match are written; `<topic>.quarantine` by default.
    #[serde(default)]
    pub quarantine_topic: Option<String>,
}

/// A Protobuf message type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtobufSchemaConfig {
    /// Written by `protoc --descriptor_set_out=FILE --include_imports`.
    pub descriptor_set: PathBuf,
    /// The message type's full name, package included (`fleet.v1.Reading`).
    pub message: String,
}

/// What the sender is told of a record that does not match the source's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Nothing: the record is quarantined and answered as accepted (deduplicated like any
    /// other), so that a provider neither retries it nor disables the endpoint.
    #[default]
    Quarantine,
    /// 422 `record_invalid` with the errors (in a batch, the record is listed as rejected);
    /// a copy still goes to the quarantine, for the operators.
    Reject,
}

/// How a batch source's requests are split into records, and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub format: spillway_batch::BatchFormat,
    /// More records in one request refuses it whole (413 `batch_too_many_records`).
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// A larger record is refused alone (`record_too_large` in the answer), the others are
    /// written.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_max_records() -> usize {
    1000
}

/// 256 KiB: a reading is a few hundred bytes; a larger record is most likely a framing error.
fn default_max_record_bytes() -> usize {
    256 * 1024
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

/// 960 KiB: with 16 KiB for the record's headers and key, a body of this size fits
/// librdkafka's default `message.max.bytes` of 1,000,000.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 960 * 1024;

/// The largest body of a source whose large bodies go to object storage, by default.
pub const DEFAULT_OFFLOADED_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Bodies up to this size travel in the Kafka record, by default; larger ones go to object
/// storage when it is configured.
pub const DEFAULT_INLINE_MAX_BYTES: u64 = 512 * 1024;

// === impl SourceConfig ===

impl SourceConfig {
    /// Whether this source's bodies over `inline_max_bytes` go to object storage: object
    /// storage is configured (`objects`), the source does not split batches (each of a
    /// batch's records is written on its own, bounded by `batch.max_record_bytes`) and has no
    /// schema (its records are checked, quarantined and redriven by their bytes).
    pub fn offloads(&self, objects: bool) -> bool {
        objects && self.batch.is_none() && self.schema.is_none()
    }

    /// The largest body accepted, its default applied.
    pub fn max_body(&self, objects: bool) -> u64 {
        self.max_body_bytes.unwrap_or(if self.offloads(objects) {
            DEFAULT_OFFLOADED_MAX_BODY_BYTES
        } else {
            DEFAULT_MAX_BODY_BYTES
        })
    }

    /// The largest body that travels in the record, when larger ones go to object storage.
    pub fn inline_max(&self, objects: bool) -> Option<u64> {
        self.offloads(objects)
            .then(|| self.inline_max_bytes.unwrap_or(DEFAULT_INLINE_MAX_BYTES))
    }

    /// The largest body a record of this source carries: the inline limit when larger ones
    /// go to object storage, else the largest body.
    pub fn largest_inline(&self, objects: bool) -> u64 {
        let max = self.max_body(objects);
        self.inline_max(objects)
            .map_or(max, |inline| inline.min(max))
    }
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

/// The verification scheme of a source: a provider preset by name (`spillway providers` lists
/// them), `hmac` for any other HMAC sender, or `none`. The other fields describe an `hmac`
/// scheme and are refused with any other.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    pub scheme: String,
    /// Header carrying the signature.
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the encoded MAC, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `hex`, `base64` or `base64url`.
    #[serde(default)]
    pub encoding: Option<EncodingConfig>,
    /// `sha256` (default), `sha1` or `sha512`.
    #[serde(default)]
    pub algorithm: Option<HmacAlgorithmConfig>,
    /// String to sign with `{id}`, `{timestamp}`, `{body}`, `{url}`, `{method}` and `{form}`
    /// placeholders; `{body}` by default.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub id_header: Option<String>,
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// `seconds` (default), `milliseconds` or `rfc3339`.
    #[serde(default)]
    pub timestamp_format: Option<TimestampFormatConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingConfig {
    Hex,
    Base64,
    Base64url,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithmConfig {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormatConfig {
    Seconds,
    Milliseconds,
    Rfc3339,
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
