//! Accepting connections: HTTP/1.1 and HTTP/2 on one port, TLS when configured (see
//! [`crate::tls`]), and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pipeline::Pipeline;
use crate::tls::{certificate_subject, ClientSubject};

/// Connection-level settings of the webhook listener.
#[derive(Clone)]
pub struct ServerSettings {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_pending_accept_reset_streams: usize,
    pub http2_max_local_error_reset_streams: usize,
    pub header_read_timeout: Duration,
    pub drain_timeout: Duration,
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
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Serves webhooks until `shutdown` resolves, then stops accepting and lets open connections
/// finish their requests for up to `drain_timeout`.
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
        .max_pending_accept_reset_streams(settings.http2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(settings.http2_max_local_error_reset_streams);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let pipeline = pipeline.clone();
        let service = move |subject: Option<ClientSubject>| {
            service_fn(move |mut req: Request<Incoming>| {
                if let Some(subject) = &subject {
                    req.extensions_mut().insert(subject.clone());
                }
                let pipeline = pipeline.clone();
                async move { Ok::<_, Infallible>(pipeline.handle(req, peer).await) }
            })
        };
        match &settings.tls {
            None => {
                let service = service(None);
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, bounded like a header read, so
                // a slow client cannot hold up the accept loop.
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let handshake_timeout = settings.header_read_timeout;
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
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
                    let service = service(subject);
                    let conn = builder
                        .serve_connection(TokioIo::new(tls), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?settings.drain_timeout, "connections still open after the drain timeout; abandoning them");
    }
}
