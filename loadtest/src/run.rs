//! The open-model driver: requests leave at a constant arrival rate whatever the server does,
//! and each one's latency is measured from the moment it was due, not from when a connection
//! became free. A server that falls behind therefore shows its queueing in the latencies
//! instead of hiding it by slowing the generator down (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spillway_signature::unix_seconds;
use tokio::sync::{mpsc, Semaphore};

use crate::plan::{Kind, Planner};
use crate::report::{Answer, Report};

/// How a run sends.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the ingress (or the bare server), e.g. `http://127.0.0.1:8080`.
    pub target: String,
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
    /// Requests in flight at most: the HTTP/1.1 connections, or the HTTP/2 streams on one
    /// connection. A request due while all are busy waits, and its latency shows it.
    pub connections: usize,
    pub http2: bool,
    /// A request not answered within this counts as timed out.
    pub timeout: Duration,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// Sends the planned requests at `settings.rate` for `settings.duration`, then waits for the
/// answers still due (each at most `timeout`).
pub async fn run(
    settings: &Settings,
    mut planner: Planner,
) -> Result<Report, hdrhistogram::CreationError> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(settings.connections);
    if settings.http2 {
        builder.http2_only(true);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = builder.build(connector);
    let urls: Vec<String> = planner
        .sources()
        .iter()
        .map(|s| {
            format!(
                "{}/v1/hooks/{}",
                settings.target.trim_end_matches('/'),
                s.name
            )
        })
        .collect();
    let permits = Arc::new(Semaphore::new(settings.connections.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    let total = (settings.rate * settings.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / settings.rate.max(0.001));
    let mut report = Report::new(settings.rate, settings.duration)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_progress = started;
    while sent < total {
        // Everything due by now leaves now; each request keeps its own due time.
        let now = Instant::now();
        let due = ((now - started).as_secs_f64() / interval.as_secs_f64()).floor() as u64 + 1;
        let signed_at = unix_seconds(SystemTime::now());
        while sent < due.min(total) {
            let intended = started + interval.mul_f64(sent as f64);
            let planned = planner.next(signed_at);
            let url = urls[planned.source].clone();
            let (client, permits, tx) = (client.clone(), permits.clone(), tx.clone());
            let timeout = settings.timeout;
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let outcome = tokio::time::timeout(
                    timeout,
                    send(&client, &url, &planned.headers, planned.body.clone()),
                )
                .await;
                let answer = Answer {
                    seq: planned.seq,
                    kind: planned.kind,
                    source: planned.source,
                    latency: intended.elapsed(),
                    at: Instant::now(),
                    result: match outcome {
                        Ok(Ok((status, id))) => Ok((status, id)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err("timeout".into()),
                    },
                };
                let _ = tx.send(answer);
            });
            sent += 1;
        }
        while let Ok(answer) = rx.try_recv() {
            report.record(answer);
        }
        if settings.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!("{}", report.progress_line(sent, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    report.sending_took(started.elapsed());
    drop(tx);
    while let Some(answer) = rx.recv().await {
        report.record(answer);
    }
    report.finished(started.elapsed());
    Ok(report)
}

/// One POST: the status and the answer's event id (2xx) or error code (anything else).
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<(u16, Option<String>), String> {
    let mut request = http::Request::post(url);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            "connect".to_owned()
        } else {
            "http".to_owned()
        }
    })?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|_| "body".to_owned())?
        .to_bytes();
    let field = if (200..300).contains(&status) {
        "id"
    } else {
        "error"
    };
    let value = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get(field).and_then(|i| i.as_str()).map(str::to_owned));
    Ok((status, value))
}

/// Whether a summary outcome is a right answer to a request of `kind`:
/// [`Kind::is_expected_outcome`], kept here for callers of its former path.
pub fn is_expected(kind: Kind, outcome: &str) -> Option<bool> {
    kind.is_expected_outcome(outcome)
}
