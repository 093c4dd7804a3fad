//! A local HTTP subscriber for delivery tests: it records every request and answers as the
//! test scripts it to (a status, a Retry-After, a hang, a dropped connection).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the subscriber answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Status(u16),
    /// A status with a `Retry-After` header (seconds or an HTTP date, verbatim).
    StatusRetryAfter(u16, String),
    /// Answers the status after a pause (a slow but healthy subscriber).
    Slow(std::time::Duration, u16),
    /// Never answers; the client must time out.
    Hang,
    /// Drops the connection without an answer.
    Close,
}

impl Behaviour {
    /// The status it answers with, if any.
    fn status(&self) -> Option<u16> {
        match self {
            Self::Status(code) | Self::StatusRetryAfter(code, _) | Self::Slow(_, code) => {
                Some(*code)
            }
            Self::Hang | Self::Close => None,
        }
    }
}

/// One request as the subscriber received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the subscriber answered; `None` when it hung or dropped the connection.
    pub answered: Option<u16>,
}

impl Received {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Its `webhook-id`: the event it delivers.
    pub fn webhook_id(&self) -> Option<&str> {
        self.header("webhook-id")
    }
}

type Script = Arc<dyn Fn(usize, &Bytes) -> Behaviour + Send + Sync>;

/// A running subscriber; it stops when dropped.
pub struct TestSubscriber {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSubscriber")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestSubscriber {
    /// Starts on 127.0.0.1; `script(n)` decides the answer to the n-th request (0-based).
    pub async fn start(script: impl Fn(usize) -> Behaviour + Send + Sync + 'static) -> Self {
        Self::start_judging(move |n, _| script(n)).await
    }

    /// Like [`TestSubscriber::start`], with the request's body to judge by as well.
    pub async fn start_judging(
        script: impl Fn(usize, &Bytes) -> Behaviour + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Script = Arc::new(script);
        let task = {
            let received = received.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (received, script) = (received.clone(), script.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |req: http::Request<hyper::body::Incoming>| {
                                let (received, script) = (received.clone(), script.clone());
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body
                                        .collect()
                                        .await
                                        .map(|c| c.to_bytes())
                                        .unwrap_or_default();
                                    let behaviour = {
                                        let mut all =
                                            received.lock().unwrap_or_else(PoisonError::into_inner);
                                        let behaviour = script(all.len(), &body);
                                        all.push(Received {
                                            headers: parts.headers,
                                            body,
                                            at: Instant::now(),
                                            answered: behaviour.status(),
                                        });
                                        behaviour
                                    };
                                    match behaviour {
                                        Behaviour::Status(code) => Ok(reply(code, None)),
                                        Behaviour::StatusRetryAfter(code, after) => {
                                            Ok(reply(code, Some(after)))
                                        }
                                        Behaviour::Slow(pause, code) => {
                                            tokio::time::sleep(pause).await;
                                            Ok(reply(code, None))
                                        }
                                        Behaviour::Hang => {
                                            std::future::pending::<()>().await;
                                            Ok(reply(500, None))
                                        }
                                        Behaviour::Close => {
                                            Err(std::io::Error::other("closing the connection"))
                                        }
                                    }
                                }
                            });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            addr,
            received,
            task,
        }
    }

    /// A subscriber that answers 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_| Behaviour::Status(200)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `webhook-id`s of the requests so far: which events arrived, duplicates folded.
    pub fn webhook_ids(&self) -> std::collections::HashSet<String> {
        self.received()
            .iter()
            .filter_map(|r| r.webhook_id().map(str::to_owned))
            .collect()
    }

    /// The bodies of the requests answered 2xx so far: what was delivered.
    pub fn delivered_bodies(&self) -> Vec<Bytes> {
        self.received()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .map(|r| r.body)
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TestSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(code: u16, retry_after: Option<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(after) = retry_after.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, after);
    }
    response
}
