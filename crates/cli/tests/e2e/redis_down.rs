//! Redis goes away: a fail-open source keeps accepting and counts the bypass; a fail-closed
//! source answers 503. Requests go through a load balancer that checks `/readyz`, as in
//! production: the pod stays ready (one fail-open source is enough), so the fail-open source
//! is not taken down with the rest.

use std::time::Duration;

use serde_json::json;
use spillway_core::headers;
use spillway_testkit::balancer::{Backend, Haproxy};
use spillway_testkit::spillway::{event_body, setup, source, TestSource};
use spillway_testkit::{read_topic, Client, RedisCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_accepts_and_counts_fail_closed_answers_503() {
    let cluster = RedisCluster::start();
    let github = source("github");
    let mut open = github.clone();
    open.name = "open";
    let mut closed = github.clone();
    closed.name = "closed";
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &cluster.nodes(),
        &[open.clone(), closed.clone()],
        json!({
            "sources": {
                "open": { "on_redis_unavailable": "fail_open" },
                "closed": { "on_redis_unavailable": "fail_closed" },
            }
        }),
    );
    spillway_testkit::create_topics(&brokers, &[setup.topic("open"), setup.topic("closed")]).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let haproxy = Haproxy::start(&[Backend {
        hooks: ingress.addr,
        admin: ingress.admin,
    }]);
    let client = Client::http1();
    let send = async |source: &TestSource, id: &str| {
        let body = event_body(id, 1);
        let url = format!("{}/v1/hooks/{}", haproxy.url(), source.name);
        client
            .post(&url, &source.sign(id, &body, 0), body)
            .await
            .expect("post through the balancer")
    };

    assert_eq!(send(&open, "o-1").await.status, 202);
    assert_eq!(send(&closed, "c-1").await.status, 202);
    assert_eq!(
        send(&open, "o-1").await.status,
        200,
        "dedupe works while Redis is up"
    );

    cluster.stop();
    // Long enough for the balancer's health checks (every 200 ms, down after 2 failures) to
    // take an unready pod out.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let reply = send(&open, "o-2").await;
    assert_eq!(
        reply.status,
        202,
        "fail-open accepts without Redis, through the balancer: {:?}\n{}",
        reply.body,
        haproxy.log_text()
    );
    let reply = send(&closed, "c-2").await;
    assert_eq!(
        reply.status, 503,
        "fail-closed refuses without Redis: {:?}",
        reply.body
    );
    assert_eq!(reply.field("error").as_deref(), Some("dedupe_unavailable"));
    assert!(reply.headers.contains_key("retry-after"));

    let metrics = ingress.metrics().await;
    assert!(
        metrics.contains("spillway_dedupe_fail_open_events_total{source=\"open\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "spillway_http_requests_total{outcome=\"redis_unavailable\",source=\"closed\"} 1"
        ),
        "{metrics}"
    );
    let ready = Client::http1()
        .get(&ingress.admin_url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(
        ready.status, 200,
        "a fail-open source keeps Redis out of readiness: {:?}",
        ready.body
    );

    let open_records = read_topic(&brokers, &setup.topic("open")).await;
    assert_eq!(
        open_records.len(),
        2,
        "o-1 once, and o-2 accepted while Redis was down"
    );
    let closed_records = read_topic(&brokers, &setup.topic("closed")).await;
    assert_eq!(closed_records.len(), 1, "c-2 was refused, not written");
    assert!(open_records
        .iter()
        .all(|r| r.header(headers::SOURCE) == Some("open")));
}
