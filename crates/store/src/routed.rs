//! Claims, commits and releases sent on the direct route to their key's primary
//! ([`crate::direct`]) when it is known, and through the cluster connection otherwise or after
//! the node refused it as misrouted or the connection broke, within one command timeout.

use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, RedisError, RedisFuture,
    ScriptInvocation, Value,
};
use tokio::time::Instant;

use crate::direct::{self, Lease, Route, Routes};
use crate::redis_store::{unavailable, RedisStore};
use crate::StoreError;

// === impl RedisStore ===

impl RedisStore {
    /// Commands answered on a direct connection to their primary, and the refusals or failures
    /// on one that sent commands through the cluster connection instead (a pipeline's count
    /// once, however many of its commands were refused). Exported as metrics by the ingress.
    pub fn direct_counts(&self) -> (u64, u64) {
        self.inner.direct.counts()
    }

    /// Pipelines of claims or commits answered on direct connections (the commands they served
    /// are counted in [`RedisStore::direct_counts`] too). For tests and diagnostics.
    pub fn pipelines_answered(&self) -> u64 {
        self.inner.direct.pipelines()
    }

    /// Replaces the routes with a table that sends every slot to one primary, as a stale
    /// table would after slots moved: for tests of what a wrong route costs. Returns once
    /// the table is in place; false when the seed node is not TCP (with TLS or without).
    #[doc(hidden)]
    pub async fn misroute_every_slot_for_tests(&self) -> Result<bool, StoreError> {
        let seed_primary = match self.inner.seed.as_ref().map(|seed| seed.addr().clone()) {
            Some(ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }) => {
                direct::Primary { host, port }
            }
            _ => return Ok(false),
        };
        let connection = self
            .connect_node(&seed_primary)
            .await
            .map_err(|e| unavailable("connect", e))?;
        self.inner.direct.replace(Routes::new(
            vec![0; usize::from(direct::SLOTS)],
            vec![seed_primary],
            vec![Some(direct::Node::new(connection))],
        ));
        Ok(true)
    }

    /// Runs one command on `key`: on the direct connection to the key's primary when the
    /// routes are known, else through [`RedisStore::run_until`] within what is left of the
    /// command timeout, as after the node refused it as misrouted or unavailable or the
    /// connection broke. Only for idempotent commands: a command that failed on the direct
    /// connection may have run there. A timeout there is not sent again (see
    /// [`crate::direct`]).
    pub(crate) async fn run_on_key<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: OnKey<'_>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.inner.settings.command_timeout;
        self.run_on_key_until(op, key, command, deadline).await
    }

    /// [`RedisStore::run_on_key`] with the deadline given. A deadline already past sends
    /// nothing and counts no timeout against a connection: the time went elsewhere (a
    /// pipeline answered late), and a command sent anyway would only be given up on.
    pub(crate) async fn run_on_key_until<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: OnKey<'_>,
        deadline: Instant,
    ) -> Result<T, StoreError> {
        if Instant::now() >= deadline {
            return Err(self.timed_out(op));
        }
        if let Some(lease) = self.direct_lease(key) {
            let mut routed = Routed::Node(lease.connection().clone());
            match tokio::time::timeout_at(deadline, command.send(&mut routed)).await {
                Ok(Ok(v)) => {
                    self.inner.direct.answered(&lease);
                    return Ok(v);
                }
                Ok(Err(e)) if e.is_timeout() => {
                    self.inner.direct.timed_out(&lease);
                    return Err(unavailable(op, e));
                }
                Ok(Err(e)) if send_elsewhere(&e) => {
                    tracing::debug!(op, error = %e, "a command failed on the direct connection to its primary; sent through the cluster connection");
                    self.inner.direct.failed(&lease);
                }
                Ok(Err(e)) => {
                    // An answer (out of memory, a script error): the node and route are fine.
                    self.inner.direct.answered(&lease);
                    return Err(unavailable(op, e));
                }
                Err(_) => {
                    self.inner.direct.timed_out(&lease);
                    return Err(self.timed_out(op));
                }
            }
        }
        let command = &command;
        self.run_until(op, deadline, move |conn| async move {
            command.send(&mut Routed::Cluster(conn)).await
        })
        .await
    }

    /// The direct connection for `key`, if the routes are known; starts building them (in a
    /// task of its own, outliving this call) when it is this caller's turn.
    pub(crate) fn direct_lease(&self, key: &str) -> Option<Lease<MultiplexedConnection>> {
        match self.inner.direct.route(key) {
            Route::Direct(lease) => Some(lease),
            Route::Cluster => None,
            Route::Build(ticket) => {
                let store = self.clone();
                // If this task fails or is cancelled, the dropped ticket lets the next
                // build start.
                tokio::spawn(async move {
                    let routes = match store.build_routes().await {
                        Ok(routes) => Some(routes),
                        Err(e) => {
                            tracing::info!(error = %e, "no direct routes to the Redis primaries; claims go through the cluster connection");
                            None
                        }
                    };
                    ticket.finish(routes);
                });
                None
            }
        }
    }

    /// Reads `CLUSTER SLOTS` through the cluster connection and connects to every primary; a
    /// primary that cannot be reached is left out (its slots go through the cluster
    /// connection until the next build).
    async fn build_routes(&self) -> Result<Routes<MultiplexedConnection>, StoreError> {
        if self.inner.seed.is_none() {
            return Err(unavailable("route", no_tcp_seed()));
        }
        let answer: Value = self
            .run("route", |mut conn| async move {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let (owner, primaries) =
            direct::parse_slots(&answer).map_err(|e| unavailable("route", e))?;
        let reusable = self.inner.direct.reusable();
        let connects = primaries.iter().cloned().map(|primary| {
            let kept = reusable
                .iter()
                .find(|(known, _)| *known == primary)
                .map(|(_, node)| Arc::clone(node));
            async move {
                if kept.is_some() {
                    return kept;
                }
                self.connect_node(&primary)
                    .await
                    .map(direct::Node::new)
                    .inspect_err(|e| {
                        tracing::info!(host = %primary.host, port = primary.port, error = %e, "no direct connection to a Redis primary; its claims go through the cluster connection");
                    })
                    .ok()
            }
        });
        // Each connect is bounded by the connection timeout.
        let connections = futures::future::join_all(connects).await;
        if connections.iter().all(Option::is_none) {
            return Err(self.timed_out("route"));
        }
        Ok(Routes::new(owner, primaries, connections))
    }

    /// A direct connection to `primary`, with the seed node's settings (credentials, database,
    /// protocol, TLS and its certificates) and the command timeout for connecting (the
    /// handshake included). Its answers have no timeout of redis-rs's own: every command on it
    /// goes through [`RedisStore::run_on_key`], whose deadline bounds it, and a second timer
    /// per command (measured: 2.6 of the 6.7 timers a request registered) costs a lock of
    /// tokio's timer wheel each and, when it is the earliest, a wake-up of the runtime's
    /// driver.
    async fn connect_node(
        &self,
        primary: &direct::Primary,
    ) -> Result<MultiplexedConnection, RedisError> {
        let Some(seed) = self.inner.seed.clone() else {
            return Err(no_tcp_seed());
        };
        let (host, port) = (primary.host.clone(), primary.port);
        let addr = match seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = seed.set_addr(addr);
        let timeout = self.inner.settings.command_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let client = match &self.inner.certificates {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone())?,
            None => redis::Client::open(info)?,
        };
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

fn no_tcp_seed() -> RedisError {
    RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "direct routes need a TCP seed node (redis:// or rediss://)",
    ))
}

/// Whether a command that failed on a direct connection goes through the cluster connection:
/// the node says the key is not its own or it cannot serve it now (still loading its data
/// after a restart too), or the connection broke. Checked after timeouts, which are I/O
/// errors as well but must not be sent again.
pub(crate) fn send_elsewhere(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
            )
        )
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
}

/// An idempotent command on one key: a plain command or a script's invocation.
pub(crate) enum OnKey<'a> {
    Command(Cmd),
    Script(ScriptInvocation<'a>),
}

impl OnKey<'_> {
    async fn send<T: FromRedisValue>(&self, conn: &mut Routed) -> Result<T, RedisError> {
        match self {
            Self::Command(cmd) => cmd.query_async(conn).await,
            Self::Script(invocation) => invocation.invoke_async(conn).await,
        }
    }
}

/// A direct connection to one primary, or the cluster connection: what a command on one key
/// is sent on.
enum Routed {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
