//! The ingress as a library: `Ingress::run` on injected port-0 listeners against the real local
//! stack, stopped through its shutdown future.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use spillway_core::headers;
use spillway_testkit::{kafka_brokers, read_topic, redis_nodes, unique, Client, ConfigDoc};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_until_shutdown_and_the_event_is_in_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("gh.secret");
    std::fs::write(&secret, "in-process-secret").expect("secret");
    let prefix = format!("{}.", unique("it.ingress."));
    let path = dir.path().join("spillway.yaml");
    ConfigDoc::new(json!({
        "kafka": { "brokers": kafka_brokers(), "topic_prefix": prefix },
        "redis": { "nodes": redis_nodes(), "key_prefix": prefix },
        "sources": {
            "github": {
                "verify": { "scheme": "github" },
                "secrets": [{ "id": "k", "file": secret.display().to_string() }],
            }
        },
    }))
    .write(&path);
    let config = spillway_config::load(&path).expect("valid config");
    let topic = format!("{prefix}github");
    spillway_testkit::create_topics(&kafka_brokers(), std::slice::from_ref(&topic)).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ingress = spillway_ingress::Ingress::from_config(&config).expect("ingress");
    let metrics = ingress.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(ingress.run(listener, admin, async move {
        let _ = stopped.await;
    }));

    let body = Bytes::from_static(br#"{"zen":"Keep it logically awesome."}"#);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let signed = spillway_signature::sign(
        &spillway_testkit::spillway::preset_scheme("github"),
        b"in-process-secret",
        "d-1",
        ts,
        &body,
    )
    .expect("signs");
    let reply = Client::http1()
        .post(
            &format!("http://{addr}/v1/hooks/github"),
            &signed,
            body.clone(),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let id = reply.field("id").expect("id");
    // An event a Spillway worker delivered back in (within the hop limit) keeps its count.
    // Another body: the same body and signature under a new delivery id would be a replay.
    let relayed_body = Bytes::from_static(br#"{"zen":"Relayed."}"#);
    let mut relayed = spillway_signature::sign(
        &spillway_testkit::spillway::preset_scheme("github"),
        b"in-process-secret",
        "d-2",
        ts,
        &relayed_body,
    )
    .expect("signs");
    relayed.push(("spillway-hop".into(), "2".into()));
    let reply = Client::http1()
        .post(
            &format!("http://{addr}/v1/hooks/github"),
            &relayed,
            relayed_body.clone(),
        )
        .await
        .expect("post");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let relayed_id = reply.field("id").expect("id");
    assert_eq!(
        metrics.count("github", spillway_telemetry::Outcome::Accepted),
        2
    );

    stop.send(()).expect("stop");
    running.await.expect("run returns after the drain");
    assert!(
        Client::http1()
            .post(
                &format!("http://{addr}/v1/hooks/github"),
                &signed,
                body.clone()
            )
            .await
            .is_err(),
        "the listener is closed after shutdown"
    );

    let records = read_topic(&kafka_brokers(), &topic).await;
    assert_eq!(records.len(), 2);
    let first = records
        .iter()
        .find(|r| r.header(headers::EVENT_ID) == Some(id.as_str()))
        .expect("first");
    assert_eq!(first.value, body.to_vec());
    assert_eq!(
        first.header(headers::HOP),
        None,
        "an outside sender's event has no hop header"
    );
    let second = records
        .iter()
        .find(|r| r.header(headers::EVENT_ID) == Some(relayed_id.as_str()))
        .expect("second");
    assert_eq!(second.header(headers::HOP), Some("2"));
}
