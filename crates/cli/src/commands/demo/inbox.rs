//! The demo's inbox: a subscriber that receives the worker's deliveries for one subscription
//! and checks each signature with the subscription's secrets, as a real subscriber would.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use spillway_config::ResolvedSubscription;
use spillway_signature::{Scheme, SecretRing, Verifier};
use tokio::net::TcpListener;

/// What the inbox has seen.
#[derive(Debug, Default)]
pub struct Received {
    /// `webhook-id`s whose signature verified.
    pub verified: HashSet<String>,
    /// Deliveries whose signature did not verify.
    pub bad_signatures: usize,
}

/// A running inbox; stops when dropped.
#[derive(Debug)]
pub struct Inbox {
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

// === impl Inbox ===

impl Inbox {
    /// Listens on the subscription URL's host and port.
    pub async fn start(subscription: &ResolvedSubscription) -> anyhow::Result<Self> {
        let host = subscription.url.host().unwrap_or("127.0.0.1");
        let port = subscription.url.port_u16().unwrap_or(80);
        let listener = TcpListener::bind((host, port)).await?;
        let verifier = Arc::new(Verifier::new(
            Scheme::standard_webhooks(),
            SecretRing::new(subscription.secrets.clone()),
            spillway_signature::DEFAULT_TOLERANCE,
        ));
        let received: Arc<Mutex<Received>> = Arc::default();
        let task = tokio::spawn(serve(listener, verifier, received.clone()));
        Ok(Self { received, task })
    }

    /// Waits until every id in `expected` has arrived, or `limit` passes; returns how many did.
    pub async fn wait_for(&self, expected: &HashSet<String>, limit: Duration) -> (usize, usize) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (arrived, bad) = {
                let r = self.received.lock().unwrap_or_else(PoisonError::into_inner);
                (expected.intersection(&r.verified).count(), r.bad_signatures)
            };
            if arrived == expected.len() || tokio::time::Instant::now() >= deadline {
                return (arrived, bad);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until the inbox is dropped, each delivery checked by [`receive`].
async fn serve(listener: TcpListener, verifier: Arc<Verifier>, received: Arc<Mutex<Received>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (received, verifier) = (received.clone(), verifier.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                receive(req, verifier.clone(), received.clone())
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Records one delivery: its `webhook-id` when the signature verifies (answered 204), a bad
/// signature otherwise (answered 401).
async fn receive(
    req: http::Request<hyper::body::Incoming>,
    verifier: Arc<Verifier>,
    received: Arc<Mutex<Received>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let ok = verifier
        .verify(&parts.headers, &body, SystemTime::now())
        .is_ok();
    let mut r = received.lock().unwrap_or_else(PoisonError::into_inner);
    match (
        ok,
        parts
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok()),
    ) {
        (true, Some(id)) => {
            r.verified.insert(id.to_owned());
        }
        _ => r.bad_signatures += 1,
    }
    let status = if ok { 204 } else { 401 };
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    Ok(response)
}
