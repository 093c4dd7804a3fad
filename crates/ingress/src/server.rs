//! Accepting connections: HTTP/1.1 and HTTP/2 on one port, TLS when configured (see
//! [`crate::tls`]), caps on open connections, deadlines on connections that carry no request
//! or live too long, and a drain on shutdown that ends by closing what is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{ClientPlace, ClientPlaces};
use crate::pipeline::Pipeline;
use crate::tls::{certificate_subject, ClientSubject};

/// Connection-level settings of the webhook listener.
#[derive(Clone)]
pub struct ServerSettings {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_window_bytes: u32,
    pub http2_max_pending_accept_reset_streams: usize,
    pub http2_max_local_error_reset_streams: usize,
    pub header_read_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_connection_age: Duration,
    pub http2_keep_alive: Duration,
    /// Exempt from `max_connections_per_peer`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field(
                "http2_max_concurrent_streams",
                &self.http2_max_concurrent_streams,
            )
            .field("header_read_timeout", &self.header_read_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_connection_age", &self.max_connection_age)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Serves webhooks until `shutdown` resolves, then stops accepting and lets open connections
/// finish their requests for up to `drain_timeout`; connections still open after it are
/// closed.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes)
        .max_headers(settings.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        // What a peer sends ahead of the reads sits in the connection's buffers, outside the
        // body budget: the windows stay small (`ingress.http2_window_bytes`, HTTP/2's own
        // 65,535 by default) rather than hyper's 1 MiB.
        .initial_stream_window_size(settings.http2_window_bytes)
        .initial_connection_window_size(settings.http2_window_bytes)
        .max_pending_accept_reset_streams(settings.http2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(settings.http2_max_local_error_reset_streams)
        // A peer that has gone silent is found by a PING it does not answer.
        .keep_alive_interval(Some(settings.http2_keep_alive))
        .keep_alive_timeout(settings.http2_keep_alive);
    let limits = ConnectionLimits::new(&settings);
    let closing = CancellationToken::new();
    let abandon = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over a cap the connection is closed at once: cheaper for everyone than queueing it.
        let Some(slot) = limits.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let seen = Arc::new(AtomicBool::new(false));
        let pipeline = pipeline.clone();
        let saw_request = seen.clone();
        let service = move |subject: Option<ClientSubject>| {
            let saw_request = saw_request.clone();
            let pipeline = pipeline.clone();
            service_fn(move |mut req: Request<Incoming>| {
                saw_request.store(true, Ordering::Relaxed);
                if let Some(subject) = &subject {
                    req.extensions_mut().insert(subject.clone());
                }
                let pipeline = pipeline.clone();
                async move { Ok::<_, Infallible>(pipeline.handle(req, peer).await) }
            })
        };
        let watch = Watch {
            seen,
            started: Instant::now(),
            first_request_timeout: settings.header_read_timeout,
            max_age: settings.max_connection_age,
            closing: closing.clone(),
            abandon: abandon.clone(),
        };
        let builder = builder.clone();
        let tls = settings.tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service(None));
                    watch.drive(conn, |c| c.graceful_shutdown()).await;
                }
                Some(acceptor) => {
                    // The handshake runs in the connection's task, bounded like a header
                    // read, so a slow client cannot hold up the accept loop.
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(watch.first_request_timeout, acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    // rustls has verified the chain; only the subject is read here.
                    let subject = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| certificate_subject(leaf))
                        .map(|s| ClientSubject(Arc::from(s)));
                    let conn = builder.serve_connection(TokioIo::new(tls), service(subject));
                    watch.drive(conn, |c| c.graceful_shutdown()).await;
                }
            }
        });
    }
    drop(listener);
    connections.close();
    closing.cancel();
    if tokio::time::timeout(settings.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?settings.drain_timeout, open = connections.len(), "connections still open after the drain timeout; closing them");
        abandon.cancel();
        connections.wait().await;
    }
}

/// What a connection's task watches besides the connection itself.
struct Watch {
    /// Set when the connection has carried a request.
    seen: Arc<AtomicBool>,
    started: Instant,
    /// A connection without a request by then is closed: the header-read timeout of HTTP/1
    /// starts only once hyper knows the protocol, and HTTP/2 has none, so without this a
    /// client that connects and sends nothing (or only a preface) is kept for ever.
    first_request_timeout: Duration,
    /// After it the connection is shut down gracefully: idle HTTP/2 connections cannot pile up.
    max_age: Duration,
    /// Shutdown: finish the requests in progress, take no more.
    closing: CancellationToken,
    /// The drain timeout passed: close now.
    abandon: CancellationToken,
}

// === impl Watch ===

impl Watch {
    /// Polls `conn` to its end, calling `shut` (its graceful shutdown) when it is too old or
    /// the server drains, and dropping it when it carries no request in time or the drain
    /// timeout passed.
    async fn drive<F: Future>(self, conn: F, shut: impl Fn(Pin<&mut F>)) {
        tokio::pin!(conn);
        let first_request = tokio::time::sleep_until(self.started + self.first_request_timeout);
        let aged = tokio::time::sleep_until(self.started + self.max_age);
        tokio::pin!(first_request, aged);
        let (mut checked, mut shutting) = (false, false);
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                () = &mut first_request, if !checked => {
                    checked = true;
                    if !self.seen.load(Ordering::Relaxed) {
                        return;
                    }
                }
                () = &mut aged, if !shutting => {
                    shutting = true;
                    shut(conn.as_mut());
                }
                () = self.closing.cancelled(), if !shutting => {
                    shutting = true;
                    shut(conn.as_mut());
                }
                () = self.abandon.cancelled() => return,
            }
        }
    }
}

/// The caps on open connections: in all, and per peer address (trusted proxies and shared
/// addresses exempt, see [`ClientPlaces`]).
struct ConnectionLimits {
    all: Arc<Semaphore>,
    per_peer: ClientPlaces,
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    _all: OwnedSemaphorePermit,
    _peer: ClientPlace,
}

// === impl ConnectionLimits ===

impl ConnectionLimits {
    fn new(settings: &ServerSettings) -> Self {
        Self {
            all: Arc::new(Semaphore::new(settings.max_connections)),
            per_peer: ClientPlaces::new(
                settings.max_connections_per_peer,
                usize::MAX,
                &settings.trusted_proxies,
            ),
        }
    }

    fn admit(&self, peer: IpAddr) -> Option<Slot> {
        let all = self.all.clone().try_acquire_owned().ok()?;
        let place = self.per_peer.take(peer)?;
        Some(Slot {
            _all: all,
            _peer: place,
        })
    }
}
