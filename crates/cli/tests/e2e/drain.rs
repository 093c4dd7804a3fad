//! SIGTERM under load: readiness turns false, in-flight requests finish, the producer is
//! flushed, the process exits 0, and every 202 it gave is in Kafka.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use spillway_core::headers;
use spillway_testkit::spillway::{event_body, setup, source};
use spillway_testkit::{read_topic, redis_nodes, Client, Wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_loses_nothing() {
    let github = source("github");
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &redis_nodes(),
        std::slice::from_ref(&github),
        json!({ "ingress": { "drain_timeout": "20s" } }),
    );
    let topic = setup.topic("github");
    spillway_testkit::create_topics(&brokers, std::slice::from_ref(&topic)).await;
    let mut ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;

    let answered = Arc::new(AtomicUsize::new(0));
    let url = ingress.hook_url("github");
    // Senders on keep-alive connections, each sending until the server stops taking requests.
    let senders: Vec<_> = (0..8)
        .map(|worker| {
            let (url, github, answered) = (url.clone(), github.clone(), answered.clone());
            tokio::spawn(async move {
                let client = Client::http1();
                let mut accepted = Vec::new();
                let mut refused = 0;
                for n in 0..5_000 {
                    let id = format!("drain-{worker}-{n}-{}", spillway_testkit::unique(""));
                    let body = event_body(&id, n);
                    match client.post(&url, &github.sign(&id, &body, 0), body).await {
                        Ok(reply) if reply.status == 202 => {
                            accepted.push(reply.field("id").expect("id"))
                        }
                        Ok(reply) => {
                            assert_eq!(
                                reply.status, 503,
                                "only 202 or 503 while draining: {:?}",
                                reply.body
                            );
                            refused += 1;
                        }
                        // The listener is closed: the request was never read, so never accepted.
                        Err(_) => break,
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                (accepted, refused)
            })
        })
        .collect();

    // Terminate once traffic is flowing (a count, not a clock).
    Wait::new()
        .every(std::time::Duration::from_millis(10))
        .until("300 answers", async || {
            spillway_testkit::wait::at_least(answered.load(Ordering::Relaxed), 300)
        })
        .await;
    ingress.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let status = ingress.wait_exit();
        (status, ingress.log_text())
    })
    .await
    .expect("join");
    assert!(
        status.0.success(),
        "clean exit after the drain; log:\n{}",
        status.1
    );
    assert!(
        status.1.contains("readiness off"),
        "readiness turned off first; log:\n{}",
        status.1
    );
    assert!(
        status.1.contains("producer flushed"),
        "producer flushed; log:\n{}",
        status.1
    );

    let mut accepted = HashSet::new();
    for sender in senders {
        let (ids, _refused) = sender.await.expect("sender");
        accepted.extend(ids);
    }
    assert!(accepted.len() >= 300, "traffic flowed before the signal");
    let records = read_topic(&brokers, &topic).await;
    let in_kafka: HashSet<String> = records
        .iter()
        .map(|r| r.header(headers::EVENT_ID).expect("id").to_owned())
        .collect();
    assert_eq!(in_kafka.len(), records.len(), "no event twice");
    let missing: Vec<&String> = accepted.difference(&in_kafka).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events are missing from Kafka",
        missing.len()
    );
    assert_eq!(
        in_kafka, accepted,
        "nothing in Kafka that was not answered 202"
    );
}
