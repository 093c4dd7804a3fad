//! The receiver a team writes by hand in Node.js (loadtest/node-receiver: express, ioredis,
//! kafkajs; verify, `SET NX`, produce with `acks=all`, 202), swept at the bench's rates as
//! the ingress and the bare server are: how far Spillway is ahead of the alternative it
//! replaces, in requests per second held and in CPU per request at the same rate.

use std::path::Path;
use std::time::Duration;

use spillway_kafka::Connection;

use crate::bench::{measure, sweep, BenchSettings, Case, Step, BENCH_SOURCES};
use crate::server::start_node_receiver;
use crate::signing::SignedSource;

/// The environment of the Node.js receiver: the bench's three sources (their schemes and
/// secrets), each written to `<topic_prefix><source>`, on `brokers` and the Redis Cluster of
/// `redis_nodes` (`redis://host:port`).
pub fn receiver_env(
    brokers: &str,
    redis_nodes: &[String],
    topic_prefix: &str,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let sources: Vec<serde_json::Value> = BENCH_SOURCES
        .iter()
        .map(|(name, scheme, secret)| {
            let topic = format!("{topic_prefix}{name}");
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
        ("SOURCES", serde_json::to_string(&sources)?),
    ])
}

/// Sweeps the Node.js receiver in `dir`, writing to topics of its own (made here), and
/// returns the highest rate it held; its steps go to `steps` as target "node".
pub(crate) async fn measure_node(
    settings: &BenchSettings,
    dir: &Path,
    connection: &Connection,
    sources: &[SignedSource],
    steps: &mut Vec<Step>,
) -> anyhow::Result<f64> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("node-{run}-");
    let topics: Vec<String> = BENCH_SOURCES
        .iter()
        .map(|(name, ..)| format!("{prefix}{name}"))
        .collect();
    spillway_kafka::admin::ensure_topics(connection, &topics, settings.partitions, 1).await?;
    let env = receiver_env(&settings.brokers, &settings.redis_nodes, &prefix)?;
    let node = start_node_receiver(dir, &env).await?;
    let case = |name, rate, duration| Case {
        target: "node",
        name,
        rate,
        duration,
        duplicates: 0.0,
        verify_in: None,
    };
    // A first short step opens the connections and lets V8 compile the hot path, as the
    // floor's warm-up does; it is not kept. Without it the first rate of the sweep measured
    // the compiler (a p99 of 678 ms at 1,000/s, 44 ms at 2,000/s right after).
    let first = settings.rates.first().copied().unwrap_or(500.0);
    let warm_up = measure(
        settings,
        &node,
        sources,
        case("warm-up", first, Duration::from_secs(2)),
    )
    .await;
    let held = match warm_up {
        Ok(_) => {
            sweep(settings, &node, sources, steps, |rate| {
                case("sweep", rate, settings.step)
            })
            .await
        }
        Err(e) => Err(e),
    };
    node.stop().await;
    held
}
