//! The floor: the least work a receiver with Spillway's guarantees does per request, written
//! by hand on the same engines and client libraries. It reads the body, claims a key on the
//! Redis Cluster (`SET NX` on a connection to the key's primary), produces the body to Kafka
//! (idempotent, `acks=all`) and answers 202 once the broker has it. No signature, no headers
//! or envelope, no metrics, no logs, no limits, and (but in `--work committed`) no commit
//! after the answer.
//!
//! Between the bare server (the HTTP exchange alone) and the ingress, it splits the ingress's
//! cost into what the claim, the produce and the commit cost in any receiver that makes them,
//! and what Spillway adds on top. Written by hand because it is itself the measurement: the
//! least code that makes these round trips.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo as _, Value};
use spillway_kafka::durability::inspect_topics;
use tokio::net::TcpListener;

const ACCEPTED: &[u8] = br#"{"id":"00000000-0000-4000-8000-000000000000","status":"accepted"}"#;
const DUPLICATE: &[u8] = br#"{"status":"duplicate"}"#;
const UNREADABLE: &[u8] = br#"{"error":"bad_request"}"#;
const UNAVAILABLE: &[u8] = br#"{"error":"unavailable"}"#;

/// How long a claim lasts: the keys are never repeated, so only Redis's memory cares.
const CLAIM_TTL_MS: u64 = 10 * 60 * 1000;

/// How long a committed claim lasts (`--work committed`): longer than the claim, as the
/// ingress's `redis.window` is longer than its `redis.claim_ttl`.
const COMMITTED_TTL_MS: u64 = 2 * CLAIM_TTL_MS;

/// How long a record may wait for its acknowledgement: the ingress's default
/// `kafka.delivery_timeout`.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the start waits for the topics' metadata (each of its requests).
const METADATA_WAIT: Duration = Duration::from_secs(10);

/// Where the floor writes and claims.
#[derive(Debug, Clone)]
pub struct FloorSettings {
    pub brokers: String,
    /// Any node of the Redis Cluster, `redis://host:port`.
    pub redis_seed: String,
    /// Existing topics, written to in turn (as the ingress writes each source to its own).
    pub topics: Vec<String>,
    /// The producer's `linger.ms`, as the ingress's `kafka.linger`.
    pub linger: Duration,
    /// Which round trips a request makes: both, or one of them to see what each costs.
    pub work: FloorWork,
}

/// The round trips of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorWork {
    /// The claim and then the produce: the floor.
    Both,
    /// Only the claim on the Redis Cluster.
    Claim,
    /// Only the produce to Kafka.
    Produce,
    /// The claim, the produce, and once the answer is decided a commit of the claim (`SET XX`
    /// with a longer expiry): what a receiver must add for the claim to outlive the answer, so
    /// that a sender's retry after a 202 is still dropped.
    Committed,
}

impl FloorWork {
    /// The name `spillway-loadgen floor --work` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Claim => "claim",
            Self::Produce => "produce",
            Self::Committed => "committed",
        }
    }
}

/// What every request shares: the producer, a connection to each primary and the slot table.
struct Floor {
    producer: FutureProducer,
    /// The index into `primaries` of each slot's primary.
    primary_of_slot: Vec<u16>,
    primaries: Vec<MultiplexedConnection>,
    topics: Vec<String>,
    work: FloorWork,
    /// Keys are this prefix (unique to the process) and a counter.
    key_prefix: String,
    next_key: AtomicU64,
}

/// Connects to every primary of the Redis Cluster, and checks that Kafka knows the topics.
async fn connect(settings: &FloorSettings) -> anyhow::Result<Floor> {
    anyhow::ensure!(!settings.topics.is_empty(), "the floor needs a topic");
    let seed = settings.redis_seed.as_str().into_connection_info()?;
    let mut seed_connection = redis::Client::open(seed.clone())?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {}", settings.redis_seed))?;
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut seed_connection)
        .await?;
    let (primary_of_slot, addresses) = spillway_store::parse_slots(&slots)?;
    anyhow::ensure!(
        primary_of_slot
            .iter()
            .all(|&i| usize::from(i) < addresses.len()),
        "CLUSTER SLOTS: some slots have no primary"
    );
    let mut primaries = Vec::with_capacity(addresses.len());
    for primary in addresses {
        // The seed's settings (credentials, protocol) with the primary's address.
        let info = seed
            .clone()
            .set_addr(ConnectionAddr::Tcp(primary.host.clone(), primary.port));
        primaries.push(
            redis::Client::open(info)?
                .get_multiplexed_async_connection()
                .await
                .with_context(|| {
                    format!(
                        "connecting to the Redis primary {}:{}",
                        primary.host, primary.port
                    )
                })?,
        );
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()?;
    // Asked through the project's own check, which never creates a topic it asks about.
    let connection = spillway_kafka::Connection::plain(&settings.brokers);
    let states = inspect_topics(&connection, &settings.topics, METADATA_WAIT).await?;
    if let Some((missing, _)) = states.iter().find(|(_, state)| !state.exists) {
        anyhow::bail!("Kafka has no topic {missing}");
    }
    Ok(Floor {
        producer,
        primary_of_slot,
        primaries,
        topics: settings.topics.clone(),
        work: settings.work,
        key_prefix: format!("floor:{}:", uuid::Uuid::new_v4().simple()),
        next_key: AtomicU64::new(0),
    })
}

// === impl Floor ===

impl Floor {
    /// Claims a new key and produces the body under it (or only one of the two, or both and
    /// then the commit, as `work` says): `Ok(false)` if the key was taken.
    async fn accept(&self, body: Bytes) -> anyhow::Result<bool> {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        let key = format!("{}{n}", self.key_prefix);
        let mut primary = None;
        if self.work != FloorWork::Produce {
            let slot = spillway_store::slot_of(key.as_bytes());
            let connection = primary.insert(
                self.primary_of_slot
                    .get(usize::from(slot))
                    .and_then(|&i| self.primaries.get(usize::from(i)))
                    .context("a slot without a primary")?
                    .clone(),
            );
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL_MS)
                .query_async(connection)
                .await?;
            if claimed.is_none() {
                return Ok(false);
            }
        }
        if self.work == FloorWork::Claim {
            return Ok(true);
        }
        let topic = self
            .topics
            .get(usize::try_from(n).unwrap_or_default() % self.topics.len())
            .context("no topic")?;
        let record = FutureRecord::to(topic).key(&key).payload(&body[..]);
        // As the ingress does: a full queue is refused at once, not waited out.
        let delivery = self.producer.send_result(record).map_err(|(e, _)| e)?;
        delivery.await?.map_err(|(e, _)| e)?;
        if let (FloorWork::Committed, Some(mut connection)) = (self.work, primary) {
            // After the answer, as the ingress commits: the 202 does not wait for it, and a
            // failed commit only shortens how long the claim drops retries.
            tokio::spawn(async move {
                let _: redis::RedisResult<Option<String>> = redis::cmd("SET")
                    .arg(&key)
                    .arg(2)
                    .arg("XX")
                    .arg("PX")
                    .arg(COMMITTED_TTL_MS)
                    .query_async(&mut connection)
                    .await;
            });
        }
        Ok(true)
    }
}

/// Connects, prints the listener's address (what [`crate::server::start_floor`] waits for),
/// and serves until the task is dropped (HTTP/1.1 and HTTP/2).
pub async fn serve(listener: TcpListener, settings: &FloorSettings) -> anyhow::Result<()> {
    let floor = Arc::new(connect(settings).await?);
    println!("{}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let floor = Arc::clone(&floor);
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<Incoming>| {
                let floor = Arc::clone(&floor);
                async move {
                    let (status, body) = match req.into_body().collect().await {
                        Err(_) => (StatusCode::BAD_REQUEST, UNREADABLE),
                        Ok(body) => match floor.accept(body.to_bytes()).await {
                            Ok(true) => (StatusCode::ACCEPTED, ACCEPTED),
                            Ok(false) => (StatusCode::OK, DUPLICATE),
                            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
                        },
                    };
                    let mut answer = Response::new(Full::new(Bytes::from_static(body)));
                    *answer.status_mut() = status;
                    Ok::<_, Infallible>(answer)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
