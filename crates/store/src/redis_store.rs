//! The shared store on a Redis Cluster, through redis-rs's cluster-async connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script, Value};
use std::sync::Mutex;

use crate::{outcome_of, Claim, ClaimToken, StoreError};

// Compare-and-set in one atomic step; single-key scripts route to the key's slot like any
// command, so they are cluster-safe.
const COMMIT_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
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

/// Connection settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Seed nodes, `redis://host:port`.
    pub nodes: Vec<String>,
    /// Bound on each operation, (re)connection included.
    pub command_timeout: Duration,
    pub claim_ttl: Duration,
    pub window: Duration,
}

/// Cloning shares the client, connection and scripts.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClusterClient,
    /// Created on first use and again after a failure, so a process can start while Redis is
    /// down (fail-open sources keep working) and recovers when it is back.
    connection: Mutex<Option<ClusterConnection>>,
    settings: RedisSettings,
    commit_script: Script,
    release_script: Script,
    count_script: Script,
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
        let client = ClusterClientBuilder::new(settings.nodes.clone())
            .connection_timeout(settings.command_timeout)
            .response_timeout(settings.command_timeout)
            // Our own timeout bounds the whole call; redis-rs's retries (MOVED, ASK, a failover
            // in progress) happen inside it.
            .retries(2)
            .build()
            .map_err(|e| unavailable("connect", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection: Mutex::new(None),
                settings,
                commit_script: Script::new(COMMIT_LUA),
                release_script: Script::new(RELEASE_LUA),
                count_script: Script::new(COUNT_LUA),
            }),
        })
    }

    /// The shared connection (a cheap handle onto redis-rs's multiplexed connections). The
    /// lock is held only to clone it, never across an await: every command takes it. Two
    /// callers racing to make the first connection both succeed; one of them is kept.
    async fn connection(&self) -> Result<ClusterConnection, RedisError> {
        if let Some(conn) = self.slot().as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.inner.client.get_async_connection().await?;
        *self.slot() = Some(conn.clone());
        Ok(conn)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ClusterConnection>> {
        self.inner
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one operation under the command timeout; on failure the connection is dropped so
    /// the next call starts from a fresh view of the cluster.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            f(conn).await
        };
        let result = match tokio::time::timeout(self.inner.settings.command_timeout, attempt).await
        {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => unavailable(op, e),
            // One variant for every way the cluster fails to answer, as callers treat them alike.
            Err(_) => unavailable(
                op,
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.inner.settings.command_timeout),
                )),
            ),
        };
        self.slot().take();
        Err(result)
    }

    pub(crate) async fn claim(&self, token: ClaimToken) -> Result<Claim, StoreError> {
        let ttl_ms = millis(self.inner.settings.claim_ttl);
        let pending = token.pending_value();
        let key = token.key.clone();
        let previous: Option<String> = self
            .run("claim", |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&pending)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("GET")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        match previous {
            None => Ok(Claim::Claimed(token)),
            Some(stored) => outcome_of(&stored),
        }
    }

    pub(crate) async fn commit(&self, token: &ClaimToken) -> Result<bool, StoreError> {
        let window = self.inner.settings.window.as_secs().max(1);
        let written: i64 = self
            .run("commit", |mut conn| async move {
                self.inner
                    .commit_script
                    .key(&token.key)
                    .arg(token.pending_value())
                    .arg(token.done_value())
                    .arg(window)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    pub(crate) async fn release(&self, token: &ClaimToken) -> Result<(), StoreError> {
        let _: i64 = self
            .run("release", |mut conn| async move {
                self.inner
                    .release_script
                    .key(&token.key)
                    .arg(token.pending_value())
                    .invoke_async(&mut conn)
                    .await
            })
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

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let _: Value = self
            .run("ping", |mut conn| async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn unavailable(op: &'static str, source: RedisError) -> StoreError {
    StoreError::Unavailable { op, source }
}
