//! The `ingress` and `admin` sections: the webhook listener (limits, timeouts, TLS, proxies,
//! the blocking of failing clients) and the admin listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The public HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Address the webhook listener binds (HTTP/1.1 and HTTP/2 on the same port).
    pub listen: SocketAddr,
    /// Requests past their body read (verifying, claiming, producing) at once in this process;
    /// beyond it new requests get 503 at once instead of queueing. A request holds its place
    /// until its event's fate in Kafka is settled, even when its client has gone.
    pub max_in_flight: usize,
    /// How long the durable section of a request (claim and produce; the commit comes after the answer) may take before
    /// the ingress admits fewer requests at once: the in-flight limit shrinks while sections
    /// are slower than this and grows back to `max_in_flight` while they are faster, so what is
    /// admitted is answered in about this time and the rest is refused at once (503
    /// `overloaded`) instead of waiting up to `kafka.delivery_timeout`. 200 ms by default: a
    /// sender's connections carry only as many requests per second as answers are fast, so
    /// admitted requests that take half a second tie them up (`make bench`'s overload step at
    /// twice the rate held: p99 of the 202s 953 ms with 500 ms, 342 ms with 200 ms).
    #[serde(with = "humantime_serde")]
    pub latency_target: Duration,
    /// Bytes of request bodies this process holds at once (as read, and decoded), charged as
    /// the bytes arrive and held until the event's fate is settled; a request that would pass
    /// it gets 503 `overloaded`. Must hold at least one body of every source's
    /// `max_body_bytes`, and with `memory_limit` set it must fit in it.
    pub max_body_memory: u64,
    /// The process's memory limit in bytes, if it has one (the chart sets it from the
    /// container's `resources.limits.memory`, as `SPILLWAY_INGRESS__MEMORY_LIMIT`). With it,
    /// `max_body_memory` and `max_connections` are checked to fit: 2 x `max_body_memory`
    /// (bodies, plus librdkafka's copy of each record) + `max_connections` x 64 KiB
    /// (`CONNECTION_BYTES`) + 96 MiB (`MEMORY_HEADROOM_BYTES`) must not exceed it.
    pub memory_limit: Option<u64>,
    /// Requests one client address may have open at once, from its headers until its answer;
    /// more get 503 `client_overloaded`. Keeps one client from holding the capacity every
    /// sender shares. Behind a proxy the client comes from `X-Forwarded-For` (see
    /// `trusted_proxies`); without it every request counts against the proxy.
    pub max_requests_per_client: usize,
    /// After `body_rate_grace`, a body must keep arriving at this many bytes per second on
    /// average, or the request gets 408 `body_too_slow` (a slow upload cannot hold memory and
    /// a place for the whole `body_read_timeout`). 0 turns it off.
    pub min_body_rate: u64,
    /// A body refused for its size (413) is read and thrown away up to this many bytes in all,
    /// within `body_rate_grace`, before the refusal is sent: a connection closed while the
    /// client is still writing gives it a broken pipe or a reset instead of the 413 that says
    /// why, and a sender that sees no answer retries. A body declared larger than this is
    /// refused at once and its connection closed. 0: never read.
    pub refused_body_drain_bytes: u64,
    /// How long a body may take before `min_body_rate` applies. While the rate is on, more
    /// than zero and shorter than `body_read_timeout` (or the rate would never apply).
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Connections this process keeps open at once; past it new connections are closed at
    /// once (the kernel's backlog holds the rest briefly). Each may cost up to 64 KiB outside
    /// the body budget, which `memory_limit` must hold.
    pub max_connections: usize,
    /// Connections one peer address may have open at once; peers in `trusted_proxies` are
    /// exempt (a proxy carries every client).
    pub max_connections_per_peer: usize,
    /// A connection is closed gracefully after this long (finishing its requests), so that
    /// idle or long-lived HTTP/2 connections cannot pile up; clients reconnect. At least 1 s.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// An HTTP/2 connection is pinged after this long without a frame, and closed when the
    /// ping is not answered within the same time. At least 1 s.
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive: Duration,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often the config file and the source secret files it names are checked for
    /// changes; a change reloads the sources (new, removed, rotated secrets) without a
    /// restart, as SIGHUP does at once. `0s`: only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
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
    /// HTTP/2 flow-control window of a stream and of a connection, in bytes: what a peer may
    /// send ahead of the ingress's reads, which waits in the connection's buffers outside the
    /// body budget. HTTP/2's own 65,535 by default (hyper would grant 1 MiB); a connection then
    /// carries about that much per round trip, shared by its streams.
    pub http2_window_bytes: u32,
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
    /// Clients (by address; IPv6 by its /64) whose requests fail signature verification more
    /// than `failures` times per `window`, summed over every ingress pod in the Redis Cluster,
    /// are refused with 403 for `duration`. Off (`null`) by default: turn it on only where the
    /// client address is the sender's (see `trusted_proxies`). Addresses in `trusted_proxies`
    /// and private, loopback and link-local addresses are never blocked. Needs `redis.nodes`.
    /// On while `trusted_proxies` is empty is legal, but `check-config` warns about it.
    pub block_failing_clients: Option<BlockConfig>,
    /// How long a pod trusts what it learnt of a client's block state before asking Redis
    /// again (one GET per client address per this period at most).
    #[serde(with = "humantime_serde")]
    pub block_check_interval: Duration,
    /// An event that has already been delivered this many times by Spillway workers (the
    /// `spillway-hop` header) is refused with 508: a subscription loops back into the ingress.
    pub max_hops: u32,
    /// The Retry-After sent with 503 (the same key in flight, Kafka or a fail-closed
    /// Redis unavailable, or too many requests in flight).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Serve HTTPS (TLS 1.2 and 1.3) with these PEM files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// How AWS SNS signing certificates are fetched and SNS subscriptions confirmed.
    pub sns: super::SnsConfig,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_in_flight: 4096,
            latency_target: Duration::from_millis(200),
            max_body_memory: 64 * 1024 * 1024,
            memory_limit: None,
            max_requests_per_client: 64,
            min_body_rate: 8 * 1024,
            body_rate_grace: Duration::from_secs(2),
            refused_body_drain_bytes: 4 * 1024 * 1024,
            max_connections: 4096,
            max_connections_per_peer: 512,
            max_connection_age: Duration::from_secs(600),
            http2_keep_alive: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(20),
            reload_interval: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 32,
            http2_window_bytes: 65_535,
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 256,
            trusted_proxies: Vec::new(),
            block_failing_clients: None,
            block_check_interval: Duration::from_secs(5),
            max_hops: 3,
            retry_after: Duration::from_secs(2),
            tls: None,
            sns: super::SnsConfig::default(),
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
