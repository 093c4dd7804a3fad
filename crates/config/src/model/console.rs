//! The `console` section: the operator console's listener, who may use it (bearer tokens with
//! a role, or the identity an authenticating proxy vouches for), and its index in PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::CredentialConfig;

/// The operator console (`spillway console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The console's HTTP listener: the API under `/v1/`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
    /// The PostgreSQL database holding the index: `{ env: VAR }` or `{ file: PATH }` with a
    /// URL such as `postgres://spillway:PASSWORD@db:5432/spillway`.
    pub database_url: Option<CredentialConfig>,
    /// Connections to PostgreSQL the API uses per console process; the indexer opens one
    /// more of its own (held while it indexes or stands by).
    pub database_pool: usize,
    /// The bearer tokens that may use the API, each with a name (written to the audit log)
    /// and a role.
    pub tokens: Vec<ConsoleToken>,
    /// Trust the identity an authenticating proxy in front (oauth2-proxy and the like) puts
    /// in a header: single sign-on without tokens.
    pub trusted_proxy: Option<TrustedProxy>,
    /// The most deliveries one bulk retry makes: a filter finding more is refused (422
    /// `too_many_events`) until it is narrowed.
    pub bulk_retry_limit: usize,
    /// How long a replay, a dead-letter redrive or a quarantine redrive waits for Kafka while
    /// it reads its topic (for its preview and again for the action): each wait for the next
    /// records, not the whole read, which takes as long as the topic is large.
    #[serde(with = "humantime_serde")]
    pub scan_timeout: Duration,
    /// Prometheus's HTTP API (`http://prometheus:9090`), where the health pages read what
    /// only the ingress and workers count: requests accepted, duplicates, verification
    /// failures by reason, circuit states and consumer lag. Without it those figures are
    /// absent and the rest of the health pages, read from the index, remain.
    pub prometheus_url: Option<String>,
    /// The index: event metadata and delivery attempts, followed from Kafka.
    pub index: IndexConfig,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9096)),
            database_url: None,
            database_pool: 8,
            tokens: Vec::new(),
            trusted_proxy: None,
            bulk_retry_limit: 10_000,
            scan_timeout: Duration::from_secs(60),
            prometheus_url: None,
            index: IndexConfig::default(),
        }
    }
}

/// One bearer token of the console's API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleToken {
    /// Who holds it, as the audit log names them.
    pub name: String,
    pub role: ConsoleRole,
    /// `{ env: VAR }` or `{ file: PATH }`: the token itself, at least 16 characters.
    pub token: CredentialConfig,
}

/// What a caller of the console may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleRole {
    /// Search and read events, attempts, health and subscriptions.
    Viewer,
    /// Also retry, bulk retry, send test webhooks, change subscriptions and read the audit
    /// log.
    Operator,
}

/// The identity an authenticating proxy vouches for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxy {
    /// The header naming the signed-in user (oauth2-proxy: `X-Forwarded-Email` or
    /// `X-Forwarded-User`).
    pub user_header: String,
    /// The header listing the user's groups, comma-separated (oauth2-proxy:
    /// `X-Forwarded-Groups`); without it every proxied user is a viewer unless named in
    /// `operators`.
    #[serde(default)]
    pub groups_header: Option<String>,
    /// Users (the `user_header` value) who are operators.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Groups whose members are operators.
    #[serde(default)]
    pub operator_groups: Vec<String>,
    /// The proxy's addresses: the header is believed only on connections from these, so a
    /// client reaching the console directly cannot claim an identity. Required.
    pub from: Vec<ipnet::IpNet>,
}

/// The console's index in PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Whether this console process indexes. Several may: one at a time holds the index's
    /// lock and the others stand by.
    pub enabled: bool,
    /// Records written to PostgreSQL in one transaction at most.
    pub batch_records: usize,
    /// How long a batch waits to fill before it is written anyway.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// How long events and attempts stay in the index; older rows are deleted (their records
    /// stay in Kafka for the topics' own retention).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long the audit log keeps an entry.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// How often rows past `retention` are deleted.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// The librdkafka group id the indexer's consumer reports under. The indexer assigns
    /// partitions itself and keeps its offsets in PostgreSQL, in the transaction of the rows.
    pub group_id: String,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_records: 1000,
            batch_wait: Duration::from_millis(200),
            retention: Duration::from_secs(7 * 24 * 3600),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            retention_interval: Duration::from_secs(300),
            group_id: "spillway-console-index".into(),
        }
    }
}
