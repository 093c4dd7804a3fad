//! The shared store on a Redis Cluster, through redis-rs's cluster-async connection, with the
//! commands on one key sent straight to their primary while the routes to it are known.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Script, TlsCertificates,
    Value,
};
use tokio::time::Instant;

use crate::connection::{self, Lease, Shared};
use crate::direct::Direct;
use crate::routed::OnKey;
use crate::settings::RedisSettings;
use crate::{outcome_of, Claim, ClaimToken, StoreError, HEALTH_TTL, HEALTH_VALUE};

// Compare-and-set in one atomic step; single-key scripts route to the key's slot like any
// command, so they are cluster-safe.
// A key that already holds this event's own done value was committed by an earlier send of the
// same commit whose answer was lost: that is a success too.
const COMMIT_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
if v == ARGV[2] then
  return 1
end
return 0
";

const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

// A counter that lives `ttl` from its first hit: the fixed windows of the rate limits.
const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
";

/// Cloning shares the client, connection and scripts.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: ClusterClient,
    /// Created on first use, so a process can start while Redis is down (fail-open sources
    /// keep working), and again after an error that leaves it unusable.
    pub(crate) connection: Shared<ClusterConnection>,
    /// The first seed node's settings (credentials, database, protocol, TLS), which the
    /// direct connections to the primaries reuse with their own addresses; `None` when the
    /// seed is not TCP, and then every command goes through the cluster connection.
    pub(crate) seed: Option<ConnectionInfo>,
    /// The certificates the direct connections use too, when the cluster's are given.
    pub(crate) certificates: Option<TlsCertificates>,
    pub(crate) direct: Arc<Direct<MultiplexedConnection>>,
    pub(crate) settings: RedisSettings,
    pub(crate) commit_script: Script,
    pub(crate) release_script: Script,
    pub(crate) count_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// Builds the store; connects lazily.
    pub fn new(settings: RedisSettings) -> Result<Self, StoreError> {
        let seed = settings
            .nodes
            .first()
            .and_then(|node| node.as_str().into_connection_info().ok())
            .filter(|info| {
                matches!(
                    info.addr(),
                    ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. }
                )
            });
        let tls_seed = matches!(
            seed.as_ref().map(ConnectionInfo::addr),
            Some(ConnectionAddr::TcpTls { .. })
        );
        if tls_seed {
            // redis-rs builds its TLS settings with the process's default provider; the
            // ingress's own TLS uses ring, so it is ring here too. Already installed is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let certificates = settings.tls.certificates();
        if certificates.is_some() && !tls_seed {
            // redis-rs would take the cluster connection to TLS but not a direct connection
            // to a redis:// primary; the config refuses this too.
            return Err(unavailable(
                "connect",
                RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "TLS certificates need rediss:// seed nodes",
                )),
            ));
        }
        let mut builder = ClusterClientBuilder::new(settings.nodes.clone())
            .connection_timeout(settings.command_timeout)
            .response_timeout(settings.command_timeout)
            // Our own timeout bounds the whole call; redis-rs's retries (MOVED, ASK, a failover
            // in progress) happen inside it.
            .retries(2);
        if let Some(certificates) = certificates.clone() {
            builder = builder.certs(certificates);
        }
        let client = builder.build().map_err(|e| unavailable("connect", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection: Shared::new(),
                seed,
                certificates,
                direct: Arc::new(Direct::new()),
                settings,
                commit_script: Script::new(COMMIT_LUA),
                release_script: Script::new(RELEASE_LUA),
                count_script: Script::new(COUNT_LUA),
            }),
        })
    }

    /// How many cluster connections this store has started to make: one while the cluster is
    /// healthy, as every caller shares it. For tests and diagnostics.
    pub fn connects(&self) -> u64 {
        self.inner.connection.connects()
    }

    /// The shared connection (a cheap handle onto redis-rs's multiplexed connections), made by
    /// one caller at a time when there is none (see [`crate::connection`]).
    pub(crate) async fn connection(&self) -> Result<Lease<ClusterConnection>, RedisError> {
        self.inner
            .connection
            .get(|| {
                // Cloned only when connecting: the task that connects outlives this call.
                let client = self.inner.client.clone();
                async move { client.get_async_connection().await }
            })
            .await
    }

    /// Runs one operation under the command timeout. The connection is kept after a timeout
    /// or a command error, and replaced only after an error that leaves it unusable: redis-rs
    /// repairs a slow or lost node by itself, and a reconnect for every slow command would
    /// flood a recovering cluster with connects.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        self.run_until(op, deadline, f).await
    }

    pub(crate) fn timed_out(&self, op: &'static str) -> StoreError {
        let timeout = self.inner.settings.command_timeout;
        unavailable(
            op,
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )),
        )
    }

    /// [`RedisStore::run`] with the deadline given.
    pub(crate) async fn run_until<T, F, Fut>(
        &self,
        op: &'static str,
        deadline: Instant,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let timed_out = || self.timed_out(op);
        // Errors of the connect itself name no connection to discard.
        let lease = match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => return Err(unavailable(op, e)),
            Err(_) => return Err(timed_out()),
        };
        let generation = lease.generation;
        match tokio::time::timeout_at(deadline, f(lease.conn)).await {
            Ok(Ok(v)) => {
                self.inner.connection.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                if connection::unusable(&e) {
                    tracing::warn!(op, error = %e, "replacing the Redis Cluster connection");
                    self.inner.connection.discard(generation);
                } else if e.is_timeout() || e.is_io_error() {
                    // redis-rs's own timeout (its response timeout is ours): no answer either.
                    if self.inner.connection.timed_out(generation) {
                        tracing::warn!(op, error = %e, "replacing the Redis Cluster connection: no command answered in a row of {}", connection::WEDGED_AFTER);
                    }
                } else {
                    // An error reply is an answer: the connection is alive.
                    self.inner.connection.answered();
                }
                Err(unavailable(op, e))
            }
            // One variant for every way the cluster fails to answer, as callers treat them alike.
            Err(_) => {
                if self.inner.connection.timed_out(generation) {
                    tracing::warn!(op, "replacing the Redis Cluster connection: no command answered in a row of {}", connection::WEDGED_AFTER);
                }
                Err(timed_out())
            }
        }
    }

    pub(crate) async fn claim(&self, token: ClaimToken) -> Result<Claim, StoreError> {
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        self.claim_until(token, deadline).await
    }

    /// [`RedisStore::claim`] by `deadline`: also what a pipeline of claims did not settle.
    pub(crate) async fn claim_until(
        &self,
        token: ClaimToken,
        deadline: Instant,
    ) -> Result<Claim, StoreError> {
        let claim = set_nx_get(&token.key, &token.pending_value(), self.claim_ttl_ms());
        let previous: Option<String> = self
            .run_on_key_until("claim", &token.key, OnKey::Command(claim), deadline)
            .await?;
        outcome_of_claim(previous, token)
    }

    /// How long a claim holds its key, in milliseconds.
    pub(crate) fn claim_ttl_ms(&self) -> u64 {
        millis(self.inner.settings.claim_ttl)
    }

    pub(crate) async fn commit(&self, token: &ClaimToken) -> Result<bool, StoreError> {
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        self.commit_until(token, deadline).await
    }

    /// [`RedisStore::commit`] by `deadline`: also what a pipeline of commits did not settle.
    pub(crate) async fn commit_until(
        &self,
        token: &ClaimToken,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let mut commit = self.inner.commit_script.prepare_invoke();
        let (pending, done, window) = self.commit_args(token);
        commit.key(&token.key).arg(pending).arg(done).arg(window);
        let written: i64 = self
            .run_on_key_until("commit", &token.key, OnKey::Script(commit), deadline)
            .await?;
        Ok(written == 1)
    }

    /// The commit script's arguments after its key: the claim's value, the value written, and
    /// how long that stays (the dedupe window, in seconds).
    pub(crate) fn commit_args(&self, token: &ClaimToken) -> (String, String, u64) {
        let window = self.inner.settings.window.as_secs().max(1);
        (token.pending_value(), token.done_value(), window)
    }

    pub(crate) async fn release(&self, token: &ClaimToken) -> Result<(), StoreError> {
        let mut release = self.inner.release_script.prepare_invoke();
        release.key(&token.key).arg(token.pending_value());
        let _: i64 = self
            .run_on_key("release", &token.key, OnKey::Script(release))
            .await?;
        Ok(())
    }

    pub(crate) async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let ttl_ms = millis(ttl);
        self.run("count", |mut conn| async move {
            self.inner
                .count_script
                .key(key)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await
        })
        .await
    }

    pub(crate) async fn read(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.run("read", |mut conn| async move {
            redis::cmd("GET").arg(key).query_async(&mut conn).await
        })
        .await
    }

    pub(crate) async fn write(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let ttl_ms = millis(ttl);
        let _: Value = self
            .run("write", |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    /// The claim's own command on `key`, so it fails wherever claims fail (Redis < 7 refuses
    /// `NX` with `GET`).
    pub(crate) async fn health(&self, key: &str) -> Result<(), StoreError> {
        let ttl_ms = millis(HEALTH_TTL);
        let _: Value = self
            .run("health", |mut conn| async move {
                set_nx_get(key, HEALTH_VALUE, ttl_ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let _: Value = self
            .run("ping", |mut conn| async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        Ok(())
    }
}

/// What a claim's `SET ... NX ... GET` found: nothing (the key is now this claim's) or the
/// value it left alone.
pub(crate) fn outcome_of_claim(
    previous: Option<String>,
    token: ClaimToken,
) -> Result<Claim, StoreError> {
    match previous {
        None => Ok(Claim::Claimed(token)),
        Some(stored) => outcome_of(&stored, token),
    }
}

/// `SET key value NX PX ttl GET`: the claim, and the health check that must fail exactly
/// where a claim would (Redis < 7 refuses NX with GET).
pub(crate) fn set_nx_get(key: &str, value: &str, ttl_ms: u64) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .arg("GET");
    cmd
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn unavailable(op: &'static str, source: RedisError) -> StoreError {
    StoreError::Unavailable { op, source }
}
