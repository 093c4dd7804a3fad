//! Test support shared by the integration and end-to-end tests. Tests run against the real
//! local stack that `make up` starts; when it is not there they fail with a message saying so,
//! they never skip.
//!
//! Every wait polls for what it needs through [`wait`] ([`eventually`]), within one patience
//! (`SPILLWAY_TEST_PATIENCE_SECS`); configs are built as data ([`ConfigDoc`]); [`spillway`]
//! holds what the end-to-end and fault suites share: test sources, signed requests, a config
//! per test and the processes started on it.
#![allow(clippy::expect_used)] // Test support: a failed expectation is a failed test.

pub mod balancer;
pub mod client;
pub mod config_doc;
pub mod console;
pub mod delay_proxy;
pub mod front;
pub mod otlp;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis_cluster;
pub mod spillway;
pub mod subscriber;
pub mod tls;
pub mod wait;

use std::path::PathBuf;

pub use client::{Client, Reply};
pub use config_doc::ConfigDoc;
pub use console::ConsoleProcess;
pub use ports::free_port;
pub use postgres::Postgres;
pub use process::{proc_status_bytes, series_value, IngressProcess, Tansu, WorkerProcess};
pub use redis_cluster::RedisCluster;
use spillway_kafka::reader::ReadRecord;
pub use subscriber::{Behaviour, Received, TestSubscriber};
pub use tls::{LocalCa, TlsSubscriber};
pub use wait::{eventually, eventually_blocking, patience, Wait};

/// Bootstrap servers of the shared local broker.
pub fn kafka_brokers() -> String {
    std::env::var("SPILLWAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The `objects.options` of the local S3 server (s3s-fs, started by `make up` through
/// dev/s3.sh): its endpoint, region, credentials and path-style URLs.
pub fn local_s3_options() -> std::collections::BTreeMap<String, String> {
    let endpoint =
        std::env::var("SPILLWAY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_access_key_id", "spillway-local".into()),
        ("aws_secret_access_key", "spillway-local-secret".into()),
        // s3s-fs serves path-style URLs only.
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Seed nodes of the shared local Redis Cluster.
pub fn redis_nodes() -> Vec<String> {
    std::env::var("SPILLWAY_TEST_REDIS_NODES")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".into()
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tansu binary that `dev/tansu.sh install` caches.
pub fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SPILLWAY_TANSU_BIN") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("SPILLWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/spillway")
        });
    cache.join("tansu-0.6.0/bin/tansu")
}

/// A unique name for topics or keys of one test run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}{}{nanos:x}", std::process::id())
}

/// Every record of `topic`, read to its end (within [`patience`]).
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<ReadRecord> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        spillway_kafka::reader::read_topic(&spillway_kafka::Connection::plain(&b), &t, patience())
    })
    .await
    .expect("reader task")
    .unwrap_or_else(|e| panic!("reading {topic} back: {e}"))
}

/// Creates topics on a broker, failing the test with a hint when the broker is not there.
pub async fn create_topics(brokers: &str, topics: &[String]) {
    spillway_kafka::admin::ensure_topics(&spillway_kafka::Connection::plain(brokers), topics, 3, 1)
        .await
        .unwrap_or_else(|e| {
            panic!("creating topics on {brokers} ({e}); is the local stack up? run `make up`")
        });
}
