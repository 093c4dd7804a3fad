//! Admission: past `max_in_flight` a request is refused at once with 503; a body that does not
//! arrive within `body_read_timeout` gets 408 and frees its place.

use spillway_testkit::{redis_nodes, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{post_event, setup, source, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_is_503_and_a_stalled_body_is_408() {
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        std::slice::from_ref(&github),
        "  max_in_flight: 1\n  body_read_timeout: 2s\n",
        "",
    );
    spillway_testkit::create_topics(&brokers, &[setup.topic("github")]).await;
    let ingress = setup.spawn("ingress");
    ingress.wait_ready(PATIENCE).await;

    // A sender that promises 100 bytes and sends 10 holds the only place.
    let mut stalled = TcpStream::connect(ingress.addr).await.expect("connect");
    let head = format!(
        "POST /v1/hooks/github HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n0123456789",
        ingress.addr
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    let deadline = std::time::Instant::now() + PATIENCE;
    while !ingress
        .metrics()
        .await
        .contains("spillway_http_in_flight_requests 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled request never got in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let client = Client::http1();
    let id = spillway_testkit::unique("adm-");
    let reply = post_event(&client, &ingress, &github, &id, 1).await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("overloaded"));
    assert!(reply.headers.contains_key("retry-after"));

    // The stalled body times out: 408, and its place is free again.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"body_timeout""#), "{answer}");

    let reply = post_event(&client, &ingress, &github, &id, 1).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}
