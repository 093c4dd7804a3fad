//! The receiver a team writes by hand in Node.js (loadtest/node-receiver: express, ioredis,
//! kafkajs; verify, `SET NX`, produce with `acks=all`, 202), swept with the load and at the
//! rates of the bench's sweeps, on a broker of its own: how far Spillway is ahead of the
//! alternative it replaces, in requests per second held and in CPU per request.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::bench::{measure, sweep, Case, Step, BENCH_SOURCES};
use crate::server::start_node_receiver;
use crate::stage::{Stage, StageSettings};

/// What the Node.js receiver's sweep runs with.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The stack, the step's length and where the config goes (the stage's rate is unused).
    pub stage: StageSettings,
    /// loadtest/node-receiver, its packages installed (dev/node-receiver.sh).
    pub receiver: PathBuf,
    /// The offered rates, in order.
    pub rates: Vec<f64>,
}

/// The sweep's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResults {
    pub steps: Vec<Step>,
    /// The highest rate held (0 when none was).
    pub max_rate: f64,
    /// The rate that ended the sweep, when one did: the highest rate held lies between.
    pub first_missed: Option<f64>,
}

/// The receiver's topics under `prefix`, one per source of [`BENCH_SOURCES`], in its order.
pub fn receiver_topics(prefix: &str) -> Vec<String> {
    BENCH_SOURCES
        .iter()
        .map(|(name, ..)| format!("{prefix}{name}"))
        .collect()
}

/// The environment of the Node.js receiver: the bench's three sources (their schemes and
/// secrets), each written to `<prefix><source>` and claimed under keys starting with
/// `prefix`, on `brokers` and the Redis Cluster of `redis_nodes` (`redis://host:port`).
pub fn receiver_env(
    brokers: &str,
    redis_nodes: &[String],
    prefix: &str,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let sources: Vec<serde_json::Value> = BENCH_SOURCES
        .iter()
        .zip(receiver_topics(prefix))
        .map(|((name, scheme, secret), topic)| {
            serde_json::json!({ "name": name, "scheme": scheme, "secret": secret, "topic": topic })
        })
        .collect();
    let redis_nodes = redis_nodes
        .iter()
        .map(|n| n.trim_start_matches("redis://"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(vec![
        ("BROKERS", brokers.to_owned()),
        ("REDIS_NODES", redis_nodes),
        ("KEY_PREFIX", prefix.to_owned()),
        ("SOURCES", serde_json::to_string(&sources)?),
    ])
}

/// Sweeps the Node.js receiver at `settings.rates`, writing to topics of its own (made here).
pub async fn node(settings: &NodeSettings) -> anyhow::Result<NodeResults> {
    let mut stage = Stage::prepare(&settings.stage).await?;
    stage.bench.rates = settings.rates.clone();
    let prefix = format!("node-{}-", uuid::Uuid::new_v4().simple());
    spillway_kafka::admin::ensure_topics(&stage.connection, &receiver_topics(&prefix), 1, 1)
        .await?;
    let env = receiver_env(&stage.bench.brokers, &stage.bench.redis_nodes, &prefix)?;
    let node = start_node_receiver(&settings.receiver, &env).await?;
    let case = |name, rate, duration| Case {
        target: "node",
        name,
        rate,
        duration,
        duplicates: 0.0,
        // Its records carry no Spillway envelope to reconcile; its test checks that every 202
        // is one record.
        verify_in: None,
    };
    let mut steps = Vec::new();
    let swept = async {
        // A first short step opens the connections and lets V8 compile the hot path, as the
        // floor's warm-up does; it is not kept. Without it the first rate of the sweep measured
        // the compiler (a p99 of 678 ms at 1,000/s, 44 ms at 2,000/s right after).
        let first = settings.rates.first().copied().unwrap_or(500.0);
        let warm_up = case("warm-up", first, Duration::from_secs(2));
        measure(&stage.bench, &node, &stage.sources, warm_up).await?;
        sweep(&stage.bench, &node, &stage.sources, &mut steps, |rate| {
            case("sweep", rate, stage.bench.step)
        })
        .await
    }
    .await;
    node.stop().await;
    let max_rate = swept?;
    let first_missed = steps.last().filter(|s| !s.held).map(|s| s.rate);
    Ok(NodeResults {
        steps,
        max_rate,
        first_missed,
    })
}
