//! The floor: the least work a receiver with Spillway's guarantees does per request, written
//! by hand on the same engines and client libraries. It reads the body, claims a key on the
//! Redis Cluster (`SET NX` on a connection to the key's primary), produces the body to Kafka
//! (idempotent, `acks=all`) and answers 202 once the broker has it. No signature, no headers
//! or envelope, no metrics, no logs, no commit after the answer, no limits.
//!
//! Between the bare server (the HTTP exchange alone) and the ingress, it splits the ingress's
//! cost into what the claim and the produce cost in any receiver that makes them, and what
//! Spillway adds on top. Written by hand because it is itself the measurement: the least
//! code that does the two round trips.

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
use redis::Value;
use tokio::net::TcpListener;

const ACCEPTED: &[u8] = br#"{"id":"00000000-0000-4000-8000-000000000000","status":"accepted"}"#;
const DUPLICATE: &[u8] = br#"{"status":"duplicate"}"#;
const FAILED: &[u8] = br#"{"error":"unavailable"}"#;

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// How long a claim lasts: the keys are never repeated, so only Redis's memory cares.
const CLAIM_TTL_MS: u64 = 10 * 60 * 1000;

/// How long a produce may wait for its acknowledgement (the ingress's default delivery timeout).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl FloorWork {
    /// The name `spillway-loadgen floor --work` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Claim => "claim",
            Self::Produce => "produce",
        }
    }
}

/// What every request shares: the producer, a connection to each primary and the slot table.
struct Floor {
    producer: FutureProducer,
    /// `owner[slot]` indexes `primaries`.
    owner: Vec<usize>,
    primaries: Vec<MultiplexedConnection>,
    topics: Vec<String>,
    work: FloorWork,
    /// Distinct keys: this process's start and a counter.
    run: u128,
    next: AtomicU64,
}

/// Connects to the Redis Cluster's primaries and to Kafka; errors if either is unreachable.
async fn connect(settings: &FloorSettings) -> anyhow::Result<Floor> {
    anyhow::ensure!(!settings.topics.is_empty(), "the floor needs a topic");
    let mut seed = redis::Client::open(settings.redis_seed.as_str())?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {}", settings.redis_seed))?;
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut seed)
        .await?;
    let (owner, addresses) = slot_table(&slots)?;
    let mut primaries = Vec::with_capacity(addresses.len());
    for address in &addresses {
        primaries.push(
            redis::Client::open(format!("redis://{address}"))?
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("connecting to the Redis primary {address}"))?,
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
    Ok(Floor {
        producer,
        owner,
        primaries,
        topics: settings.topics.clone(),
        work: settings.work,
        run: uuid::Uuid::new_v4().as_u128(),
        next: AtomicU64::new(0),
    })
}

/// `CLUSTER SLOTS` as the primary of each slot (an index into the addresses returned).
fn slot_table(answer: &Value) -> anyhow::Result<(Vec<usize>, Vec<String>)> {
    let Value::Array(ranges) = answer else {
        anyhow::bail!("CLUSTER SLOTS: not an array");
    };
    let mut owner = vec![usize::MAX; usize::from(SLOTS)];
    let mut addresses: Vec<String> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            anyhow::bail!("CLUSTER SLOTS: a range is not an array");
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            anyhow::bail!("CLUSTER SLOTS: a range without start, end and primary");
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) = (node.first(), node.get(1))
        else {
            anyhow::bail!("CLUSTER SLOTS: a primary without host and port");
        };
        let address = format!("{}:{port}", String::from_utf8_lossy(host));
        let index = match addresses.iter().position(|a| *a == address) {
            Some(index) => index,
            None => {
                addresses.push(address);
                addresses.len() - 1
            }
        };
        let (start, end) = (usize::try_from(*start)?, usize::try_from(*end)?);
        owner
            .get_mut(start..=end)
            .context("CLUSTER SLOTS: a slot out of range")?
            .fill(index);
    }
    anyhow::ensure!(
        owner.iter().all(|&i| i != usize::MAX),
        "CLUSTER SLOTS: some slots have no primary"
    );
    Ok((owner, addresses))
}

/// A key's slot (keys here have no hash tag).
fn slot_of(key: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(key.as_bytes()) % SLOTS)
}

// === impl Floor ===

impl Floor {
    /// Claims a new key and produces the body under it: `Ok(false)` if the key was taken.
    async fn accept(&self, body: Bytes) -> anyhow::Result<bool> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = format!("floor:{:032x}:{n}", self.run);
        if self.work != FloorWork::Produce {
            let mut primary = self.primaries[self.owner[slot_of(&key)]].clone();
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL_MS)
                .query_async(&mut primary)
                .await?;
            if claimed.is_none() {
                return Ok(false);
            }
        }
        if self.work == FloorWork::Claim {
            return Ok(true);
        }
        let topic = &self.topics[usize::try_from(n).unwrap_or_default() % self.topics.len()];
        let record = FutureRecord::to(topic).key(&key).payload(&body[..]);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map_err(|(e, _)| e)?;
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
                        Err(_) => (StatusCode::BAD_REQUEST, FAILED),
                        Ok(body) => match floor.accept(body.to_bytes()).await {
                            Ok(true) => (StatusCode::ACCEPTED, ACCEPTED),
                            Ok(false) => (StatusCode::OK, DUPLICATE),
                            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, FAILED),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
            ]),
        ])
    }

    #[test]
    fn every_slot_gets_its_primary() {
        let answer = Value::Array(vec![
            range(0, 8191, "127.0.0.1", 7000),
            range(8192, 16383, "127.0.0.1", 7001),
        ]);
        let (owner, addresses) = slot_table(&answer).unwrap();
        assert_eq!(addresses, ["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(
            (owner[0], owner[8191], owner[8192], owner[16383]),
            (0, 0, 1, 1)
        );
    }

    #[test]
    fn a_slot_without_a_primary_is_refused() {
        let answer = Value::Array(vec![range(0, 100, "127.0.0.1", 7000)]);
        let error = slot_table(&answer).unwrap_err().to_string();
        assert!(error.contains("no primary"), "{error}");
    }

    #[test]
    fn slots_are_redis_clusters() {
        // From the Redis Cluster specification: "123456789" hashes to 0x31C3.
        assert_eq!(slot_of("123456789"), 0x31C3);
    }
}
