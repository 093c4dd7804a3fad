//! The admin listener. It is separate from the webhook port so that probes and scrapes are
//! never queued behind webhook traffic, and so a NetworkPolicy can expose it to monitoring only.
//! Its connections are bounded in number ([`ADMIN_MAX_CONNECTIONS`]) and in how long a request's
//! headers may take ([`ADMIN_HEADER_READ_TIMEOUT`]), so a stuck or hostile client cannot hold
//! it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers, counted from when it connected or
/// got its previous answer, before it is disconnected. Probes and scrapes send theirs at once,
/// so a client this slow is stuck or hostile, and it holds one of the
/// [`ADMIN_MAX_CONNECTIONS`]. This also ends idle kept-alive connections.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How many admin connections are served at once; more wait in the listen backlog until one
/// closes. Probes, scrapes and the subscription API need a handful: the cap keeps a flood of
/// connections from taking tasks and memory without bound.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The pause after a failed accept (out of file descriptors and the like), instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Renders a process's metrics in the Prometheus text format.
pub trait Encode: Send + Sync + 'static {
    fn encode(&self) -> Vec<u8>;
}

impl Encode for crate::IngressMetrics {
    fn encode(&self) -> Vec<u8> {
        crate::IngressMetrics::encode(self)
    }
}

impl Encode for crate::WorkerMetrics {
    fn encode(&self) -> Vec<u8> {
        crate::WorkerMetrics::encode(self)
    }
}

pub type ReadinessFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Answers whether the process should receive traffic, and if not, why.
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> ReadinessFuture<'_>;
}

pub type RouteFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Further endpoints a process serves on its admin listener (the workers' subscription API).
pub trait AdminRoutes: Send + Sync + 'static {
    /// Whether `path` is one of these routes.
    fn handles(&self, path: &str) -> bool;
    fn answer(&self, req: Request<Incoming>) -> RouteFuture;
}

/// Serves the admin endpoints, and `routes` when given, until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<dyn Encode>,
    readiness: Arc<dyn Readiness>,
    routes: Option<Arc<dyn AdminRoutes>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT);
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, connections wait in the backlog rather than be accepted.
        let slot = tokio::select! {
            () = &mut shutdown => return,
            slot = slots.clone().acquire_owned() => slot,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { return };
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        let routes = routes.clone();
        let http = http.clone();
        tokio::spawn(async move {
            // Held for as long as the connection is served.
            let _slot = slot;
            let service = service_fn(move |req: Request<Incoming>| {
                let (metrics, readiness) = (metrics.clone(), readiness.clone());
                let extra = routes
                    .as_ref()
                    .filter(|r| r.handles(req.uri().path()))
                    .cloned();
                async move {
                    match extra {
                        Some(routes) => Ok::<_, Infallible>(routes.answer(req).await),
                        None => answer(req, metrics, readiness).await,
                    }
                }
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<dyn Encode>,
    readiness: Arc<dyn Readiness>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" => match readiness.check().await {
            Ok(()) => (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from(format!("not ready: {why}\n")),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(metrics.encode()),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    struct NoMetrics;

    impl Encode for NoMetrics {
        fn encode(&self) -> Vec<u8> {
            Vec::new()
        }
    }

    struct Ready;

    impl Readiness for Ready {
        fn check(&self) -> ReadinessFuture<'_> {
            Box::pin(async { Ok(()) })
        }
    }

    async fn admin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_admin(
            listener,
            Arc::new(NoMetrics),
            Arc::new(Ready),
            None,
            std::future::pending(),
        ));
        addr
    }

    /// Everything the server sends until it closes the connection; the paused clock jumps to
    /// the next timer whenever nothing else is left to do, so this ends at once in real time,
    /// and the guard only turns a connection left open into a failure.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let read =
            tokio::time::timeout(ADMIN_HEADER_READ_TIMEOUT * 10, stream.read_to_end(&mut got))
                .await;
        assert!(matches!(read, Ok(Ok(_))), "not closed: {read:?}");
        got
    }

    async fn healthz(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        String::from_utf8_lossy(&until_closed(&mut stream).await).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_half_a_request_line_is_disconnected() {
        let addr = admin().await;
        assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));

        let started = Instant::now();
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /hea").await.expect("write");
        let got = until_closed(&mut slow).await;
        assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        assert!(started.elapsed() >= ADMIN_HEADER_READ_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_over_the_cap_wait_for_a_free_slot() {
        let addr = admin().await;
        let started = Instant::now();
        let mut idle = Vec::with_capacity(ADMIN_MAX_CONNECTIONS);
        for _ in 0..ADMIN_MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Connected (the backlog), but served only once the idle ones are timed out.
        assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
        assert!(started.elapsed() >= ADMIN_HEADER_READ_TIMEOUT);
        for stream in &mut idle {
            until_closed(stream).await;
        }
    }
}
