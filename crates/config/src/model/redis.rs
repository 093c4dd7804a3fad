//! The `redis` section: the Redis Cluster holding dedupe claims (and rate and block counts).

use std::time::Duration;

use serde::Deserialize;

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
