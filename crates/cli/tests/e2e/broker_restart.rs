//! The broker goes away: every request answers 503 (never 202) and its claim is released; the
//! broker comes back on the same sqlite data: the retries are accepted, and nothing accepted
//! before is missing.

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::json;
use spillway_core::headers;
use spillway_testkit::spillway::{post_event, setup, source};
use spillway_testkit::{read_topic, redis_nodes, Client, Tansu};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_answers_503_and_after_restart_nothing_is_lost() {
    let mut tansu = Tansu::start_sqlite();
    let github = source("github");
    let sources = [github.clone()];
    let setup = setup(
        &tansu.brokers(),
        &redis_nodes(),
        &sources,
        json!({ "kafka": { "delivery_timeout": "2s" } }),
    );
    let topic = setup.topic("github");
    spillway_testkit::create_topics(&tansu.brokers(), std::slice::from_ref(&topic)).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let client = Client::http1();
    let send = async |id: String, n: usize| post_event(&client, &ingress, &github, &id, n).await;

    let mut accepted = HashSet::new();
    for n in 0..30 {
        let reply = send(format!("before-{n}"), n).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        accepted.insert(reply.field("id").expect("id"));
    }

    tansu.kill();
    let down: Vec<String> = (0..10).map(|n| format!("during-{n}")).collect();
    let replies = join_all(down.iter().enumerate().map(|(n, id)| send(id.clone(), n))).await;
    for reply in &replies {
        assert_eq!(
            reply.status, 503,
            "never 202 without the broker: {:?}",
            reply.body
        );
        assert_eq!(reply.field("error").as_deref(), Some("kafka_unavailable"));
        assert!(reply.headers.contains_key("retry-after"));
    }
    let not_ready = Client::http1()
        .get(&ingress.admin_url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(not_ready.status, 503, "not ready without Kafka");

    tansu.start();
    ingress.wait_ready().await;
    // The senders retry what got 503: their claims were released, so they are accepted now.
    for (n, id) in down.iter().enumerate() {
        let reply = send(id.clone(), n).await;
        assert_eq!(
            reply.status, 202,
            "retry after the outage: {:?}",
            reply.body
        );
        accepted.insert(reply.field("id").expect("id"));
    }
    for n in 0..30 {
        let reply = send(format!("after-{n}"), n).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        accepted.insert(reply.field("id").expect("id"));
    }

    let records = read_topic(&tansu.brokers(), &topic).await;
    let in_kafka: Vec<String> = records
        .iter()
        .map(|r| r.header(headers::EVENT_ID).expect("id").to_owned())
        .collect();
    let unique: HashSet<String> = in_kafka.iter().cloned().collect();
    assert_eq!(unique.len(), in_kafka.len(), "no event is in Kafka twice");
    assert_eq!(
        unique, accepted,
        "every 202, before and after the outage, and nothing else"
    );
    assert_eq!(accepted.len(), 70);
}
