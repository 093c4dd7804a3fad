//! The load generator against the bare baseline, the floor, the Node.js receiver and a real
//! in-process ingress on the local stack. Assertions are on counts and reconciliation, never
//! on speed: a run sends exactly rate x duration requests however fast the machine is.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use spillway_loadgen::plan::{Kind, Mix, Planner};
use spillway_loadgen::run::{is_expected, run, Settings};
use spillway_loadgen::signing::SignedSource;
use spillway_loadgen::verify::{read_back, reconcile};
use spillway_testkit::{kafka_brokers, redis_nodes, unique, ConfigDoc};
use tokio::net::TcpListener;

struct Stack {
    _dir: tempfile::TempDir,
    config: spillway_config::Config,
}

/// A config with three sources of three providers' schemes, on its own topics.
async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}.", unique("it.loadgen."));
    // The sources as the bench writes them, on this test's topics and key prefix.
    let mut doc =
        ConfigDoc::from_yaml(&spillway_loadgen::bench::three_sources(dir.path()).unwrap());
    doc.merge(json!({
        "kafka": { "brokers": kafka_brokers(), "topic_prefix": prefix },
        "redis": { "nodes": redis_nodes(), "key_prefix": prefix },
    }));
    let path = dir.path().join("spillway.yaml");
    doc.write(&path);
    let config = spillway_config::load(&path).expect("valid config");
    spillway_testkit::create_topics(&kafka_brokers(), &config.topics()).await;
    Stack { _dir: dir, config }
}

fn settings(target: String, rate: f64, seconds: u64) -> Settings {
    Settings {
        target,
        rate,
        duration: Duration::from_secs(seconds),
        connections: 32,
        http2: false,
        timeout: Duration::from_secs(30),
        progress: false,
    }
}

fn mix(duplicates: f64, tampered: f64, stale: f64) -> Mix {
    Mix {
        duplicates,
        tampered,
        stale,
        body_sizes: "200:1,1024:2,4096:1".parse().unwrap(),
    }
}

/// Every answer of `summary` is a right one for its kind of request.
fn assert_right_answers(summary: &spillway_loadgen::report::Summary) {
    for (kind, outcomes) in &summary.kinds {
        for outcome in outcomes.keys() {
            assert_eq!(
                is_expected(*kind, outcome),
                Some(true),
                "{kind:?} answered {outcome}: {outcomes:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planned_request_is_sent_and_a_server_that_keeps_nothing_fails_verification() {
    let stack = stack().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bare = tokio::spawn(spillway_loadgen::bare::serve(listener));
    let sources = SignedSource::from_config(&stack.config).unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let planner = Planner::new(sources.clone(), mix(0.0, 0.0, 0.0), &run_id, 3);
    let report = run(&settings(format!("http://{addr}"), 200.0, 2), planner)
        .await
        .unwrap();
    let summary = report.summary();
    assert_eq!(
        summary.requests, 400,
        "rate x duration requests: {summary:?}"
    );
    assert_eq!(summary.statuses.get(&202), Some(&400));
    assert!(summary.errors.is_empty());
    assert!(summary.latency_ms.max >= summary.latency_ms.p99);
    // The same over HTTP/2 (prior knowledge, one connection, concurrent streams).
    let h2 = Settings {
        http2: true,
        ..settings(format!("http://{addr}"), 100.0, 1)
    };
    let planner_h2 = Planner::new(sources.clone(), mix(0.0, 0.0, 0.0), "h2-run", 4);
    let summary_h2 = run(&h2, planner_h2).await.unwrap().summary();
    assert_eq!(summary_h2.statuses.get(&202), Some(&100), "{summary_h2:?}");
    assert!(summary_h2.errors.is_empty());

    // The bare server answers 202 and keeps nothing: every acknowledged event is missing.
    let topics: Vec<String> = sources.iter().map(|s| s.topic.clone()).collect();
    let connection = spillway_kafka::Connection::from(&stack.config.kafka);
    let records = tokio::task::spawn_blocking(move || {
        read_back(&connection, &topics, &run_id, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .unwrap();
    let reconciled = reconcile(report.answers(), &records);
    assert!(!reconciled.ok());
    assert_eq!(reconciled.missing.len(), 400);
    bare.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_run_against_the_ingress_gets_the_right_answers_and_reconciles_with_kafka() {
    let stack = stack().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ingress = spillway_ingress::Ingress::from_config(&stack.config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(ingress.run(listener, admin, async move {
        let _ = stopped.await;
    }));
    let sources = SignedSource::from_config(&stack.config).unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let planner = Planner::new(sources.clone(), mix(0.2, 0.1, 0.1), &run_id, 5);
    let report = run(&settings(format!("http://{addr}"), 150.0, 2), planner)
        .await
        .unwrap();
    let summary = report.summary();
    assert_eq!(summary.requests, 300);
    assert!(summary.errors.is_empty(), "{summary:?}");
    // Every answer is a right one for its kind (a duplicate may overtake its original, so
    // valid requests may see 200 or 503 in_flight and duplicates 202; verification below
    // settles it).
    assert_right_answers(&summary);
    for kind in [Kind::Valid, Kind::Duplicate, Kind::Tampered, Kind::Stale] {
        assert!(summary.kinds.contains_key(&kind), "{kind:?} was sent");
    }
    assert_eq!(
        summary.kinds[&Kind::Tampered].keys().collect::<Vec<_>>(),
        ["401"]
    );

    let topics: Vec<String> = sources.iter().map(|s| s.topic.clone()).collect();
    let connection = spillway_kafka::Connection::from(&stack.config.kafka);
    let run = run_id.clone();
    let records = tokio::task::spawn_blocking(move || {
        read_back(&connection, &topics, &run, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .unwrap();
    let reconciled = reconcile(report.answers(), &records);
    assert!(reconciled.ok(), "{}", reconciled.text());
    // An event is acknowledged by its valid request's 202, or by the 202 of a duplicate that
    // overtook it (the valid one then got 200 or 503 in_flight).
    let accepted = |kind: Kind| summary.kinds[&kind].get("202").copied().unwrap_or(0) as usize;
    assert_eq!(
        reconciled.acknowledged,
        accepted(Kind::Valid) + accepted(Kind::Duplicate)
    );
    assert_eq!(reconciled.in_kafka_once, reconciled.acknowledged);
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// Runs the floor doing `work` for 100 requests over two topics, checks every 202 is a record
/// in one of them (in turn, each under a key of its own), and returns a connection to the
/// Redis Cluster with the records' keys.
async fn floor_records(
    work: spillway_loadgen::floor::FloorWork,
) -> (redis::cluster_async::ClusterConnection, Vec<Vec<u8>>) {
    let stack = stack().await;
    let run_id = unique("floor");
    let topics: Vec<String> = (0..2).map(|i| format!("it.floor.{run_id}.{i}")).collect();
    spillway_testkit::create_topics(&kafka_brokers(), &topics).await;
    let floor_settings = spillway_loadgen::floor::FloorSettings {
        brokers: kafka_brokers(),
        redis_seed: redis_nodes()[0].clone(),
        topics: topics.clone(),
        linger: Duration::from_millis(5),
        work,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let floor =
        tokio::spawn(
            async move { spillway_loadgen::floor::serve(listener, &floor_settings).await },
        );
    let sources = SignedSource::from_config(&stack.config).unwrap();
    let planner = Planner::new(sources, mix(0.0, 0.0, 0.0), &run_id, 5);
    let summary = run(&settings(format!("http://{addr}"), 100.0, 1), planner)
        .await
        .unwrap()
        .summary();
    if floor.is_finished() {
        panic!("the floor stopped: {:?}", floor.await);
    }
    assert_eq!(summary.statuses.get(&202), Some(&100), "{summary:?}");

    let mut keys = Vec::new();
    for topic in &topics {
        let records = spillway_testkit::read_topic(&kafka_brokers(), topic).await;
        assert_eq!(records.len(), 50, "the topics are written in turn");
        for record in records {
            let body = String::from_utf8(record.value).unwrap();
            assert!(body.contains(&run_id), "a body of this run: {body}");
            keys.push(record.key.expect("a key"));
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 100);
    floor.abort();
    let client = redis::cluster::ClusterClient::new(redis_nodes()).unwrap();
    (client.get_async_connection().await.unwrap(), keys)
}

/// The value a floor's key holds in Redis, and how long it has left to live.
async fn floor_key(
    redis: &mut redis::cluster_async::ClusterConnection,
    key: &[u8],
) -> (Option<String>, i64) {
    let value: Option<String> = redis::cmd("GET").arg(key).query_async(redis).await.unwrap();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(redis)
        .await
        .unwrap();
    (value, ttl_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_claims_every_key_and_writes_every_body_to_kafka() {
    let (mut redis, keys) = floor_records(spillway_loadgen::floor::FloorWork::Both).await;
    for key in &keys {
        let (value, ttl_ms) = floor_key(&mut redis, key).await;
        assert_eq!(value.as_deref(), Some("1"), "the claim of {key:?}");
        assert!(
            (1..=10 * 60 * 1000).contains(&ttl_ms),
            "the claim's expiry: {ttl_ms} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_floor_commits_every_claim_it_accepted() {
    let (mut redis, keys) = floor_records(spillway_loadgen::floor::FloorWork::Committed).await;
    for key in &keys {
        // The commit follows the answer, so the last ones may still be on their way.
        let ttl_ms = spillway_testkit::wait::eventually(
            format!("the commit of {}", String::from_utf8_lossy(key)),
            async || match floor_key(&mut redis, key).await {
                (Some(value), ttl_ms) if value == "2" => Ok(ttl_ms),
                seen => Err(format!("{seen:?}")),
            },
        )
        .await;
        assert!(
            ttl_ms > 10 * 60 * 1000,
            "a commit outlives the claim: {ttl_ms} ms left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_refuses_to_start_on_a_topic_kafka_does_not_have() {
    let settings = spillway_loadgen::floor::FloorSettings {
        brokers: kafka_brokers(),
        redis_seed: redis_nodes()[0].clone(),
        topics: vec![unique("it.floor.missing.")],
        linger: Duration::from_millis(5),
        work: spillway_loadgen::floor::FloorWork::Both,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = spillway_loadgen::floor::serve(listener, &settings)
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("has no topic"), "{error:#}");
}

/// The Node.js receiver's directory, its packages installed by dev/node-receiver.sh.
async fn node_receiver() -> std::path::PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../dev/node-receiver.sh");
    let out = tokio::process::Command::new(script).output().await.unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_receiver_verifies_claims_and_writes_each_accepted_body_once() {
    let stack = stack().await;
    // Random, as the event ids start with it: a rerun must not find this run's claims.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("it.node.{run_id}.");
    let env = spillway_loadgen::node_steps::receiver_env(&kafka_brokers(), &redis_nodes(), &prefix)
        .unwrap();
    let sources = SignedSource::from_config(&stack.config).unwrap();
    let topics = spillway_loadgen::node_steps::receiver_topics(&prefix);
    spillway_testkit::create_topics(&kafka_brokers(), &topics).await;
    let node = spillway_loadgen::server::start_node_receiver(&node_receiver().await, &env)
        .await
        .unwrap();
    let planner = Planner::new(sources, mix(0.2, 0.1, 0.1), &run_id, 5);
    let summary = run(&settings(node.base.clone(), 100.0, 2), planner)
        .await
        .unwrap()
        .summary();
    assert_eq!(summary.requests, 200);
    assert!(summary.errors.is_empty(), "{summary:?}");
    assert_right_answers(&summary);
    for (kind, status) in [(Kind::Tampered, "401"), (Kind::Stale, "400")] {
        assert_eq!(
            summary.kinds[&kind].keys().collect::<Vec<_>>(),
            [status],
            "{kind:?}"
        );
    }

    // Every 202 is one record in its source's topic, keyed by the event's id, each id once.
    let mut keys = Vec::new();
    for topic in &topics {
        for record in spillway_testkit::read_topic(&kafka_brokers(), topic).await {
            let body: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
            assert_eq!(body["run"], run_id.as_str(), "a body of this run: {body}");
            let key = String::from_utf8(record.key.expect("a key")).unwrap();
            assert_eq!(body["id"], key.as_str(), "keyed by its event id");
            keys.push(key);
        }
    }
    let written = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), written, "an event written twice");
    assert_eq!(Some(&(written as u64)), summary.statuses.get(&202));
    node.stop().await;
}
