//! Admission: past `max_in_flight` a request is refused at once with 503; a body that does not
//! arrive within `body_read_timeout` gets 408 and frees its place.

use std::time::Duration;

use serde_json::json;
use spillway_testkit::spillway::{post_event, setup, source};
use spillway_testkit::{patience, redis_nodes, Client, Wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_is_503_and_a_stalled_body_is_408() {
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        std::slice::from_ref(&github),
        json!({ "ingress": { "max_in_flight": 1, "body_read_timeout": "2s" } }),
    );
    spillway_testkit::create_topics(&brokers, &[setup.topic("github")]).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;

    // A sender that promises 100 bytes and sends 10 holds the only place.
    let mut stalled = TcpStream::connect(ingress.addr).await.expect("connect");
    let head = format!(
        "POST /v1/hooks/github HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n0123456789",
        ingress.addr
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    // Polled often: the stalled body times out 2 s after it started.
    Wait::new()
        .every(Duration::from_millis(20))
        .until("the stalled request in flight", async || {
            let metrics = ingress.metrics().await;
            if metrics.contains("spillway_http_in_flight_requests 1") {
                Ok(())
            } else {
                let gauge = metrics
                    .lines()
                    .find(|l| l.starts_with("spillway_http_in_flight_requests "))
                    .map(str::to_owned);
                Err(format!("{gauge:?}"))
            }
        })
        .await;

    let client = Client::http1();
    let id = spillway_testkit::unique("adm-");
    let reply = post_event(&client, &ingress, &github, &id, 1).await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("overloaded"));
    assert!(reply.headers.contains_key("retry-after"));

    // The stalled body times out: 408, and its place is free again.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(patience(), stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"body_timeout""#), "{answer}");

    let reply = post_event(&client, &ingress, &github, &id, 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}
