//! Clients that vanish mid-request: the whole request is sent, then the connection closed
//! before the answer. The sender never learns the outcome, so it retries; the retry must be
//! accepted or answered "duplicate", and the event must be in Kafka exactly once either way.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use spillway_testkit::spillway::{event_body, source};
use spillway_testkit::{read_topic, redis_nodes, Client, TestSubscriber, Wait};
use tokio::io::AsyncWriteExt;

use crate::harness::{record, stack, start, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_vanish_after_sending_and_their_retries_are_exactly_once() {
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = stack(
        &spillway_testkit::kafka_brokers(),
        &redis_nodes(),
        std::slice::from_ref(&github),
        json!({}),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.2).await;
    let vanished: Vec<String> = (0..100)
        .map(|n| format!("vanish-{n}-{}", spillway_testkit::unique("")))
        .collect();
    for (n, id) in vanished.iter().enumerate() {
        let body = event_body(id, n);
        let mut request = format!(
            "POST /v1/hooks/github HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            ingress.addr,
            body.len()
        );
        for (k, v) in github.sign(id, &body, 0) {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(ingress.addr)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("head");
        stream.write_all(&body).await.expect("body");
        // Gone before the answer: every byte sent, the socket closed.
        drop(stream);
    }
    let finished = load.finish().await;
    finished.assert_nothing_lost();

    // The senders retry until they get an answer that settles it.
    let client = Client::http1();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (n, id) in vanished.iter().enumerate() {
        let body = event_body(id, n);
        Wait::new()
            .every(Duration::from_millis(100))
            .until(format!("{id} settled, not in flight"), async || {
                let reply = client
                    .post(
                        &ingress.hook_url("github"),
                        &github.sign(id, &body, 0),
                        body.clone(),
                    )
                    .await
                    .expect("retry");
                *statuses.entry(reply.status.as_u16()).or_default() += 1;
                if matches!(reply.status.as_u16(), 200 | 202) {
                    return Ok(());
                }
                assert_eq!(
                    (reply.status.as_u16(), reply.field("error").as_deref()),
                    (503, Some("in_flight")),
                    "only in flight may delay it: {:?}",
                    reply.body
                );
                Err(format!("{:?}", reply.body))
            })
            .await;
    }
    let records = read_topic(&setup.brokers, &setup.topic("github")).await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for record in &records {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&record.value) {
            if let Some(id) = v.get("id").and_then(|i| i.as_str()) {
                *copies.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    for id in &vanished {
        assert_eq!(
            copies.get(id).copied(),
            Some(1),
            "{id} is in Kafka exactly once"
        );
    }
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    let already = statuses.get(&200).copied().unwrap_or_default();
    record(
        "clients_vanish",
        "100 clients send a whole signed request and close the connection before the answer, at 20% of the load",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "the ingress finished {already} of the 100 although their clients were gone (the \
             retry got 200 duplicate); the rest were retried and accepted; each is in Kafka once"
        ),
    );
}
