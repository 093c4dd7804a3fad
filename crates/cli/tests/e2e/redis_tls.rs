//! The ingress on a Redis Cluster that takes TLS only and asks for a client certificate:
//! `rediss://` seeds, the cluster's CA and the client's certificate in `redis.tls`. Claims go
//! over TLS (on the direct routes to the primaries too), so a retry is answered as a duplicate
//! and Kafka holds the event once.

use serde_json::json;
use spillway_testkit::spillway::{event_body, setup, source};
use spillway_testkit::{read_topic, Client, RedisCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_dedupes_on_a_cluster_over_tls() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_tls)
        .await
        .expect("start");
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let file = |name: &str| cluster.tls_file(name).display().to_string();
    let setup = setup(
        &brokers,
        &cluster.nodes(),
        std::slice::from_ref(&github),
        json!({
            "redis": { "tls": {
                "ca_file": file("ca.crt"),
                "client_cert_file": file("redis.crt"),
                "client_key_file": file("redis.key"),
            } }
        }),
    );
    let topic = setup.topic("github");
    spillway_testkit::create_topics(&brokers, std::slice::from_ref(&topic)).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let client = Client::http1();
    let url = format!("http://{}/v1/hooks/github", ingress.addr);
    let body = event_body("tls-1", 1);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let reply = client
            .post(&url, &github.sign("tls-1", &body, 0), body.clone())
            .await
            .expect("post");
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [202, 200], "accepted, then its retry a duplicate");
    assert_eq!(read_topic(&brokers, &topic).await.len(), 1);

    // The direct routes are built after the first command; fresh events then claim on them.
    let mut sent = 0;
    spillway_testkit::wait::eventually("claims on the direct TLS routes", async || {
        sent += 1;
        let id = format!("tls-direct-{sent}");
        let body = event_body(&id, 1);
        let reply = client
            .post(&url, &github.sign(&id, &body, 0), body)
            .await
            .expect("post");
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        let metrics = ingress.metrics().await;
        spillway_testkit::series_value(&metrics, "spillway_redis_direct_commands_total")
            .filter(|&n| n > 0)
    })
    .await;
}
