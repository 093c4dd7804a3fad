//! The `redis` section: the Redis Cluster holding dedupe claims (and rate and block counts).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The Redis Cluster holding dedupe claims. Its `Debug` hides the credentials in node URLs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Seed nodes, `redis://host:port`, or `rediss://host:port` for a cluster that takes
    /// TLS (then every connection, to the nodes discovered too, is over TLS); the rest of the
    /// cluster is discovered.
    pub nodes: Vec<String>,
    /// The certificates of a `rediss://` cluster: whom to trust, and who the client is.
    pub tls: RedisTlsConfig,
    /// Prefix of every key Spillway writes: `<prefix>dedupe:<kafka cluster id>:<topic>:<key>`,
    /// `<prefix>rate:<source>:<window>`, `<prefix>block:<addr>` and
    /// `<prefix>failures:<addr>:<window>`. Deployments sharing a Redis Cluster need not differ
    /// in it (dedupe keys name their Kafka cluster and topic), but may.
    pub key_prefix: String,
    /// Upper bound on one Redis round trip, reconnection included; past it Redis counts as
    /// unavailable and the source's `on_redis_unavailable` applies.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long an in-flight claim lives if its pod dies between claim and commit; a retry
    /// within it gets 503 `in_flight`, after it the event is processed again. Must be longer than
    /// `kafka.delivery_timeout`, or a retry could claim an event whose record is still being
    /// produced.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// How long an accepted key is remembered: duplicates within it are answered 200.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the commits of accepted events wait to be sent together. The 202 never waits
    /// for its commit; meanwhile a retry reaching the same pod is answered as a duplicate, and
    /// one reaching another pod gets 503 `in_flight`. 0 sends each commit at once.
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            nodes,
            tls,
            key_prefix,
            command_timeout,
            claim_ttl,
            window,
            commit_delay,
        } = self;
        f.debug_struct("RedisConfig")
            .field("nodes", &crate::redact::Urls(nodes))
            .field("tls", tls)
            .field("key_prefix", key_prefix)
            .field("command_timeout", command_timeout)
            .field("claim_ttl", claim_ttl)
            .field("window", window)
            .field("commit_delay", commit_delay)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            tls: RedisTlsConfig::default(),
            key_prefix: "spillway:".into(),
            command_timeout: Duration::from_millis(500),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(24 * 3600),
            commit_delay: Duration::from_millis(5),
        }
    }
}

/// TLS to a `rediss://` cluster. With nothing set, the nodes' certificates are checked against
/// the system's roots and the client shows no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// PEM certificates of the CAs that sign the nodes' certificates (a private CA, as managed
    /// services and self-run clusters use), trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain the client shows, for nodes that ask for one (Redis's
    /// `tls-auth-clients yes`); with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl RedisTlsConfig {
    /// Whether anything is set.
    pub fn is_set(&self) -> bool {
        self != &Self::default()
    }
}
