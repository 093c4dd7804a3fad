//! The worker bench's subscriber, in the generator's process: it answers 200 at once on
//! keep-alive connections (plain HTTP/1.1, or HTTPS offering h2 and http/1.1 by ALPN), notes
//! when each event (`webhook-id`) first arrived, and counts the requests of each HTTP version,
//! so that a figure labelled HTTP/2 cannot come from a worker that fell back to HTTP/1.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Requests received over HTTP/2, and over any earlier version.
#[derive(Debug, Default)]
struct Versions {
    h2: AtomicU64,
    older: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    tls: bool,
    received: Arrivals,
    versions: Arc<Versions>,
}

// === impl Sink ===

impl Sink {
    /// Plain HTTP/1.1 without `tls`; HTTPS with it (the worker then negotiates h2).
    pub(crate) async fn start(tls: Option<TlsAcceptor>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received: Arrivals = Arc::default();
        let versions: Arc<Versions> = Arc::default();
        let shared = (Arc::clone(&received), Arc::clone(&versions));
        let secure = tls.is_some();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // A fast subscriber: its answers are not held back by Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let (received, versions, tls) =
                    (Arc::clone(&shared.0), Arc::clone(&shared.1), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        note(Arc::clone(&received), Arc::clone(&versions), request)
                    });
                    let server = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ =
                                    server.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = server
                                .http1_only()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            tls: secure,
            received,
            versions,
        })
    }

    /// Requests received so far over HTTP/2, and over HTTP/1.x.
    pub(crate) fn versions(&self) -> (u64, u64) {
        (
            self.versions.h2.load(Ordering::Relaxed),
            self.versions.older.load(Ordering::Relaxed),
        )
    }

    /// Its URL: `https://localhost:<port>/sink` (the name its certificate holds) with TLS.
    pub(crate) fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/sink", self.addr.port())
        } else {
            format!("http://{}/sink", self.addr)
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.received.lock().map_or(0, |m| m.len())
    }

    /// Waits until every event of `ids` arrived, or `patience` passed without a new one of
    /// them; `tick` runs at each look. How many arrived.
    pub(crate) async fn wait_for(
        &self,
        ids: &[&str],
        patience: Duration,
        mut tick: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let arrived = || {
            self.received
                .lock()
                .map_or(0, |m| ids.iter().filter(|id| m.contains_key(**id)).count())
        };
        let mut last = (arrived(), Instant::now());
        loop {
            tick()?;
            let count = arrived();
            if count >= ids.len() {
                return Ok(count);
            }
            if count > last.0 {
                last = (count, Instant::now());
            } else if last.1.elapsed() > patience {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What arrived so far, emptied.
    pub(crate) fn take(&self) -> HashMap<String, Instant> {
        self.received
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// Notes the request's event and answers 200 once its body is read.
async fn note(
    received: Arrivals,
    versions: Arc<Versions>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let at = Instant::now();
    let counter = if request.version() == http::Version::HTTP_2 {
        &versions.h2
    } else {
        &versions.older
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = request.into_body().collect().await;
    if let (Some(id), Ok(mut map)) = (id, received.lock()) {
        map.entry(id).or_insert(at);
    }
    Ok(http::Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sink_answers_200_and_keeps_each_event_s_first_arrival() {
        let sink = Sink::start(None).await.expect("sink");
        let client = spillway_testkit::Client::http1();
        let url = sink.url();
        let mut firsts = Vec::new();
        for id in ["evt_1", "evt_2", "evt_1"] {
            let reply = client
                .post(
                    &url,
                    &[("webhook-id".into(), id.into())],
                    Bytes::from_static(b"{}"),
                )
                .await
                .expect("post");
            assert_eq!(reply.status, 200);
            firsts.push(sink.received.lock().expect("lock").get("evt_1").copied());
        }
        let arrived = sink
            .wait_for(&["evt_1", "evt_2"], Duration::ZERO, || Ok(()))
            .await
            .expect("wait");
        assert_eq!(arrived, 2);
        let none = sink
            .wait_for(&["evt_3"], Duration::ZERO, || Ok(()))
            .await
            .expect("wait");
        assert_eq!(none, 0, "only the named events count");
        assert_eq!(firsts[0], firsts[2], "a redelivery keeps the first arrival");
        assert_eq!(
            sink.versions(),
            (0, 3),
            "HTTP/1.1 requests are counted as such"
        );
        let taken = sink.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(sink.count(), 0, "taken away");
    }
}
