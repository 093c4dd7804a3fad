//! The admin listener. It is separate from the webhook port so that probes and scrapes are
//! never queued behind webhook traffic, and so a NetworkPolicy can expose it to monitoring only.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        let routes = routes.clone();
        tokio::spawn(async move {
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
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
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
