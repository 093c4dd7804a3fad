//! The keys an event claims: the delivery id and the signature's fingerprint of a scheme that
//! signs neither an id nor a timestamp, claimed together, and what happens when only one of
//! them is free.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use spillway_kafka::MemoryBehaviour;

use super::answers::expect;
use super::*;

/// GitHub's headers for `body`, signed with the harness's secret, as delivery `delivery`.
pub(crate) fn github_headers(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, GITHUB_SECRET.as_bytes());
    let signature = hex::encode(ring::hmac::sign(&key, body).as_ref());
    vec![
        ("x-hub-signature-256", format!("sha256={signature}")),
        ("x-github-delivery", delivery.to_owned()),
        ("x-github-event", "push".to_owned()),
        ("content-type", "application/octet-stream".to_owned()),
    ]
}

/// A GitHub request as `delivery`, its own body signed with the harness's secret.
fn github_delivery(delivery: &str, body: &str) -> Request<Full<Bytes>> {
    let headers = github_headers(body.as_bytes(), delivery);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post("github", &headers, body)
}

/// GitHub's published example (`Hello, World!`) as `delivery`.
fn published(delivery: &str) -> Request<Full<Bytes>> {
    published_to("github", delivery)
}

/// GitHub's published example as `delivery`, to `source`.
fn published_to(source: &str, delivery: &str) -> Request<Full<Bytes>> {
    post(
        source,
        &[
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-delivery", delivery),
            ("x-github-event", "push"),
        ],
        GITHUB_BODY,
    )
}

/// The value of the metric `series` (name and labels), or "none" when it was never written.
fn sample(h: &Harness, series: &str) -> String {
    let prefix = format!("{series} ");
    h.metrics()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or("none")
        .to_owned()
}

/// The count of `spillway_dedupe_hits_total` for GitHub's source in `state`.
fn hits(h: &Harness, state: &str) -> String {
    sample(
        h,
        &format!("spillway_dedupe_hits_total{{source=\"github\",state=\"{state}\"}}"),
    )
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_on_one_of_its_keys_gives_back_the_other() {
    // Its delivery id and its fingerprint are claimed together: when one is taken, the claim
    // on the other must be released, or the next genuine event with it would wait in flight.
    let h = harness();
    let first = h.send(published("d-genuine")).await;
    expect(&first, 202, "accepted");
    // Committed, so that the keys are answered by the store, not by this pod's memory.
    h.committed().await;
    // A known delivery id with a new body: a duplicate; the new body's fingerprint was free.
    let known_id = h.send(github_delivery("d-genuine", "{\"n\":1}")).await;
    expect(&known_id, 200, "duplicate");
    assert_eq!(known_id.id(), first.id());
    // A captured body with a fresh delivery id: a duplicate; the fresh id was free.
    let known_body = h.send(published("d-fresh")).await;
    expect(&known_body, 200, "duplicate");
    assert_eq!(known_body.id(), first.id());
    // Each key the refused requests claimed is free again for a genuine event.
    let other_id = h.send(github_delivery("d-other", "{\"n\":1}")).await;
    expect(&other_id, 202, "accepted");
    expect(
        &h.send(github_delivery("d-fresh", "{\"n\":2}")).await,
        202,
        "accepted",
    );
    // Both keys taken in Redis (their commits landed), by two events: the delivery id's
    // answer, and one hit for the request.
    h.committed().await;
    let crossed = h.send(github_delivery("d-other", "{\"n\":2}")).await;
    expect(&crossed, 200, "duplicate");
    assert_eq!(crossed.id(), other_id.id());
    assert_eq!(h.kafka.records().len(), 3);
    assert_eq!(hits(&h, "done"), "3", "one hit per refused request");
}

#[tokio::test(start_paused = true)]
async fn a_later_key_given_back_within_a_moment_is_claimed_again() {
    // Claimed together, two copies of one request can each win one key and each find the
    // other's in flight. The one holding the delivery id claims the fingerprint again after
    // short pauses, by which time the other has given it back. Here a capture under another
    // delivery id holds the fingerprint until Kafka fails it 3 ms on.
    let h = harness();
    h.kafka
        .then(MemoryBehaviour::TimeOut(Duration::from_millis(3)))
        .then(MemoryBehaviour::Accept);
    let pipeline = h.pipeline.clone();
    let capture = tokio::spawn(async move {
        let peer = PEER.parse().expect("peer");
        pipeline.handle(published("d-capture"), peer).await.status()
    });
    settle().await;
    assert_eq!(
        h.kafka.queued(),
        1,
        "the capture holds both keys while Kafka has it"
    );
    let genuine = h.send(published("d-genuine")).await;
    expect(&genuine, 202, "accepted");
    assert_eq!(capture.await.expect("capture").as_u16(), 503);
    assert_eq!(h.kafka.records().len(), 1);
    assert_eq!(hits(&h, "in_flight"), "none", "the request was not refused");
}

#[tokio::test(start_paused = true)]
async fn a_later_key_still_in_flight_is_answered_in_flight() {
    // The fingerprint held by a request that is still being written: after the pauses, the
    // answer is the 503 a sender retries, and the delivery id is given back.
    let h = harness();
    h.kafka.then(MemoryBehaviour::Delay(secs(2)));
    let pipeline = h.pipeline.clone();
    let slow = tokio::spawn(async move {
        let peer = PEER.parse().expect("peer");
        pipeline.handle(published("d-slow"), peer).await.status()
    });
    settle().await;
    let waiting = h.send(published("d-waiting")).await;
    expect(&waiting, 503, "in_flight");
    assert_eq!(hits(&h, "in_flight"), "1");
    assert_eq!(slow.await.expect("slow").as_u16(), 202);
    // Its delivery id was given back: with a body of its own, it is accepted.
    expect(
        &h.send(github_delivery("d-waiting", "{}")).await,
        202,
        "accepted",
    );
}

#[tokio::test]
async fn with_redis_down_both_keys_go_unanswered_as_one_event() {
    let h = harness();
    h.store.set_offline(true);
    // Fails open: written without its dedupe, and counted once for the event, not per key.
    let lenient = h.send(published_to("github-lenient", "d-down")).await;
    expect(&lenient, 202, "accepted");
    let metrics = h.metrics();
    assert!(
        metrics.contains("spillway_dedupe_fail_open_events_total{source=\"github-lenient\"} 1\n"),
        "{metrics}"
    );
    // Fails closed: refused, nothing written.
    expect(
        &h.send(published("d-down")).await,
        503,
        "dedupe_unavailable",
    );
    assert_eq!(h.kafka.records().len(), 1);
}

/// How many claims were sent to the store (`spillway_redis_command_duration_seconds`).
fn claims_sent(h: &Harness) -> String {
    sample(
        h,
        "spillway_redis_command_duration_seconds_count{command=\"claim\"}",
    )
}

#[tokio::test(start_paused = true)]
async fn a_delivery_id_accepted_here_a_moment_ago_asks_redis_nothing() {
    let h = harness();
    let first = h.send(published("d-1")).await;
    expect(&first, 202, "accepted");
    let sent = claims_sent(&h);
    assert_eq!(sent, "2", "the delivery id and the fingerprint");
    // Its commit is still queued: the delivery id answers here, and the fingerprint of a new
    // body under it is not claimed (to be given back at once).
    let again = h.send(github_delivery("d-1", "{}")).await;
    expect(&again, 200, "duplicate");
    assert_eq!(again.id(), first.id());
    assert_eq!(claims_sent(&h), sent);
}
