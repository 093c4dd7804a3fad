//! `make bench`'s fleet figures, each through a release `spillway ingress` of its own on the
//! local stack: NDJSON batches of small readings split into records ([`batches`]), and large
//! bodies streamed to the local object store ([`uploads`]). Both are closed loops (each sender
//! waits for its answer before it sends again) that measure capacity, and both check what
//! landed: every acknowledged record in Kafka, every acknowledged body in the store.

pub mod batches;
pub mod uploads;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use spillway_kafka::Connection;
use spillway_testkit::free_port;

pub use batches::BatchStep;
pub use uploads::UploadStep;

use crate::server::{start_ingress, Server};
use crate::signing::SignedSource;

/// What the fleet benchmarks run with.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub spillway_bin: PathBuf,
    pub brokers: String,
    pub redis_nodes: Vec<String>,
    /// Records per batch, one step each.
    pub batch_sizes: Vec<usize>,
    /// Bytes of each record (a JSON reading padded to this size).
    pub record_bytes: usize,
    /// How long each batch size is sent.
    pub batch_step: Duration,
    /// Records in flight at once: each batch size gets this divided by the size as senders,
    /// clamped to 2..=64, so that large batches do not pile up tens of thousands of records
    /// waiting on Redis and Kafka at once.
    pub batch_records_in_flight: usize,
    /// Bytes of each large body.
    pub upload_bytes: usize,
    /// Bodies sent per upload step.
    pub uploads: u64,
    /// Uploads in flight, one step each.
    pub upload_senders: Vec<usize>,
    /// The ingress's `kafka.linger`.
    pub linger: Duration,
    pub dir: PathBuf,
}

/// Everything the fleet benchmarks measured.
#[derive(Debug, Clone, Serialize)]
pub struct FleetResults {
    pub batches: Vec<BatchStep>,
    pub uploads: Vec<UploadStep>,
}

/// Runs the batch steps, then the upload steps.
pub async fn fleet(settings: &FleetSettings) -> anyhow::Result<FleetResults> {
    // Ids and results are told apart by batch size and by sender count.
    for (name, values) in [
        ("--batch-sizes", &settings.batch_sizes),
        ("--upload-senders", &settings.upload_senders),
    ] {
        let distinct: std::collections::BTreeSet<_> = values.iter().collect();
        anyhow::ensure!(
            distinct.len() == values.len() && !values.contains(&0),
            "{name} must list distinct numbers above 0"
        );
    }
    std::fs::create_dir_all(&settings.dir)?;
    let batches = batches::run(settings).await?;
    let uploads = uploads::run(settings).await?;
    Ok(FleetResults { batches, uploads })
}

/// How long a closed loop runs.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    Requests(u64),
}

/// One answered request of a closed loop: its number, how long it took, and what the check
/// of its answer said.
#[derive(Debug)]
pub struct Sent {
    pub number: u64,
    pub latency: Duration,
    pub outcome: Result<(), String>,
}

/// The answers of a closed loop, and how long it ran.
#[derive(Debug)]
pub struct LoopResult {
    pub answers: Vec<Sent>,
    pub elapsed: Duration,
}

// === impl LoopResult ===

impl LoopResult {
    /// The numbers of the requests whose answers passed their check.
    pub fn succeeded(&self) -> impl Iterator<Item = u64> + '_ {
        self.answers
            .iter()
            .filter(|a| a.outcome.is_ok())
            .map(|a| a.number)
    }

    pub fn failed(&self) -> u64 {
        self.answers.iter().filter(|a| a.outcome.is_err()).count() as u64
    }

    /// The first few distinct reasons of failed answers, for the log.
    pub fn failures(&self) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        for reason in self.answers.iter().filter_map(|a| a.outcome.as_ref().err()) {
            if reasons.len() < 5 && !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
        }
        reasons
    }

    /// Latency percentiles of the answers that passed their check, in milliseconds: (p50,
    /// p99, max). A quick refusal is not a faster acceptance.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let mut all: Vec<Duration> = self
            .answers
            .iter()
            .filter(|a| a.outcome.is_ok())
            .map(|a| a.latency)
            .collect();
        all.sort_unstable();
        let at = |q: f64| {
            let index = ((all.len() as f64 * q).ceil() as usize).saturating_sub(1);
            all.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        (at(0.5), at(0.99), at(1.0))
    }
}

/// `senders` tasks each send request after request, waiting for each answer, until `until`;
/// `send(n)` sends request number `n` (numbered from 0 across the tasks) and checks its answer.
pub async fn closed_loop<F, Fut>(senders: usize, until: Until, send: F) -> LoopResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let send = Arc::new(send);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders.max(1) {
        let (send, next) = (send.clone(), next.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                let more = match until {
                    Until::Elapsed(limit) => started.elapsed() < limit,
                    Until::Requests(total) => number < total,
                };
                if !more {
                    return answers;
                }
                let sent_at = Instant::now();
                let outcome = send(number).await;
                answers.push(Sent {
                    number,
                    latency: sent_at.elapsed(),
                    outcome,
                });
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(sent) => answers.extend(sent),
            Err(e) => answers.push(Sent {
                number: u64::MAX,
                latency: Duration::ZERO,
                outcome: Err(format!("sender task failed: {e}")),
            }),
        }
    }
    LoopResult {
        answers,
        elapsed: started.elapsed(),
    }
}

/// The HTTP/1.1 client the fleet benchmarks send with.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// POSTs `body` with `headers` and returns the status and the answer's body.
pub async fn post(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let mut request = http::Request::post(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The answer's status and error code, for a failed check.
pub fn unexpected(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    format!("{status} {}", code.unwrap_or_default())
}

/// A fleet ingress with its one source, as a sender sees it, and its topics made.
#[derive(Debug)]
pub struct OneSource {
    pub ingress: Server,
    pub source: SignedSource,
    pub connection: Connection,
}

/// Starts an ingress of run `run`'s own (its ports, topics and Redis prefix) with one source
/// `name` signed as Standard Webhooks, its secret written beside the config: `source_yaml`
/// adds to the source's flow mapping, `top_yaml` to the config (whole lines).
pub async fn one_source_ingress(
    settings: &FleetSettings,
    run: &str,
    name: &str,
    source_yaml: &str,
    top_yaml: &str,
) -> anyhow::Result<OneSource> {
    let secret = settings.dir.join(format!("{name}.secret"));
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    let nodes: Vec<String> = settings
        .redis_nodes
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    let yaml = format!(
        "ingress: {{ listen: 127.0.0.1:{}, block_failing_clients: null }}\n\
         admin: {{ listen: 127.0.0.1:{} }}\n\
         kafka: {{ brokers: \"{}\", topic_prefix: \"fleet.{run}.\", linger: {}ms }}\n\
         redis: {{ nodes: [{}], key_prefix: \"fleet.{run}.\" }}\n{top_yaml}\
         sources:\n  {name}: {{ verify: {{ scheme: standard-webhooks }}, \
         secrets: [{{ id: {name}-1, file: \"{}\" }}], {source_yaml} }}\n",
        free_port(),
        free_port(),
        settings.brokers,
        settings.linger.as_millis(),
        nodes.join(", "),
        secret.display(),
    );
    let path = settings.dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml)?;
    let config = spillway_config::load(&path)?;
    let connection = Connection::from(&config.kafka);
    spillway_kafka::admin::ensure_topics(&connection, &config.topics(), 1, 1).await?;
    let source = SignedSource::from_config(&config)
        .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("source {name} cannot be signed"))?;
    let ingress = start_ingress(
        &settings.spillway_bin,
        &path,
        &settings.dir.join(format!("{name}.log")),
    )
    .await?;
    Ok(OneSource {
        ingress,
        source,
        connection,
    })
}

/// `bytes` in MiB.
pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}
