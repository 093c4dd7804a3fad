//! Sizes agree end to end: with the defaults a body Kafka could not take is refused as 413
//! before anything is claimed (it used to be a 503 the sender retried until it gave up); with
//! Kafka's limit raised the same bodies land byte for byte; and a record Kafka refuses as too
//! large (its forwarded headers made it so) is a 413 with its own code, never a retryable 503.

use bytes::Bytes;
use serde_json::json;
use spillway_testkit::spillway::{ready_ingress, source, TestSource};
use spillway_testkit::{read_topic, Client, IngressProcess, Reply};

/// The body sizes the issue names: under librdkafka's default `message.max.bytes` with little
/// room for headers, just over it, and exactly 1 MiB.
const SIZES: [usize; 3] = [999_000, 1_000_100, 1_048_576];

/// A JSON body of exactly `len` bytes.
fn body_of(id: &str, len: usize) -> Bytes {
    let head = format!(r#"{{"id":"{id}","pad":""#);
    let pad = len - head.len() - 2;
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

async fn post(
    ingress: &IngressProcess,
    github: &TestSource,
    id: &str,
    len: usize,
    extra: &[(&str, String)],
) -> Reply {
    let body = body_of(id, len);
    assert_eq!(body.len(), len);
    let mut headers = github.sign(id, &body, 0);
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Client::http1()
        .post(&ingress.hook_url("github"), &headers, body)
        .await
        .expect("post")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_a_body_kafka_cannot_take_is_413_at_once() {
    let github = source("github");
    let (setup, ingress) = ready_ingress(std::slice::from_ref(&github), json!({})).await;
    for len in SIZES {
        let id = spillway_testkit::unique("big-");
        let reply = post(&ingress, &github, &id, len, &[]).await;
        assert_eq!(reply.status, 413, "{len} bytes: {:?}", reply.body);
        assert_eq!(reply.field("error").as_deref(), Some("body_too_large"));
        assert!(!reply.headers.contains_key("retry-after"));
    }
    // The largest body the defaults allow (960 KiB) lands.
    let id = spillway_testkit::unique("max-");
    let reply = post(&ingress, &github, &id, 960 * 1024, &[]).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let records = read_topic(&setup.brokers, &setup.topic("github")).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.len(), 960 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafkas_limit_raised_they_land_and_an_oversized_record_is_413() {
    let github = source("github");
    let (setup, ingress) = ready_ingress(
        std::slice::from_ref(&github),
        json!({
            "kafka": { "properties": { "message.max.bytes": "1064960" } },
            "sources": { "github": {
                "max_body_bytes": 1_048_576,
                "forward_headers": ["x-github-event", "x-github-delivery", "x-pad"],
            } },
        }),
    )
    .await;
    let mut ids = Vec::new();
    for len in SIZES {
        let id = spillway_testkit::unique("big-");
        let reply = post(&ingress, &github, &id, len, &[]).await;
        assert_eq!(reply.status, 202, "{len} bytes: {:?}", reply.body);
        ids.push((id, len));
    }
    // 1 MiB of body and 20 KB of forwarded header: more than Kafka's 1,064,960 bytes.
    let id = spillway_testkit::unique("over-");
    let reply = post(
        &ingress,
        &github,
        &id,
        1_048_576,
        &[("x-pad", "p".repeat(20_000))],
    )
    .await;
    assert_eq!(reply.status, 413, "{:?}", reply.body);
    assert_eq!(reply.field("error").as_deref(), Some("record_too_large"));
    assert!(
        !reply.headers.contains_key("retry-after"),
        "a retry cannot help"
    );
    // Its claim was given back: the same event, smaller headers, is accepted, not "duplicate".
    let again = post(&ingress, &github, &id, 1_048_576, &[]).await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    ids.push((id, 1_048_576));

    let records = read_topic(&setup.brokers, &setup.topic("github")).await;
    let mut lengths: Vec<usize> = records.iter().map(|r| r.value.len()).collect();
    lengths.sort_unstable();
    let mut want: Vec<usize> = ids.iter().map(|(_, len)| *len).collect();
    want.sort_unstable();
    assert_eq!(lengths, want);
    for (id, len) in &ids {
        assert!(
            records.iter().any(|r| r.value == body_of(id, *len)),
            "{id}: in Kafka byte for byte"
        );
    }
}
