//! The request path's invariants: no 2xx without Kafka's acknowledgement; a claim released
//! when the produce fails (so the retry is processed, not called a duplicate); the Kafka value
//! byte-identical to the body; a duplicate answered with the original's id; the durable section
//! finishing even when the client goes away.

use std::io::Write;

use spillway_kafka::{MemoryBehaviour, MemoryFault};

use super::*;

const FAULTS: [MemoryBehaviour; 5] = [
    MemoryBehaviour::Fail(MemoryFault::QueueFull),
    MemoryBehaviour::Fail(MemoryFault::Refused),
    MemoryBehaviour::Fail(MemoryFault::AcknowledgementLost),
    MemoryBehaviour::Fail(MemoryFault::Canceled),
    MemoryBehaviour::TimeOut(Duration::from_secs(5)),
];

#[tokio::test(start_paused = true)]
async fn no_fault_of_kafka_is_answered_2xx() {
    for fault in FAULTS {
        let h = harness();
        h.kafka.then(fault);
        let seen = h.send(post("open", &[("x-id", "k")], "{}")).await;
        assert_eq!(
            seen.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{fault:?}: {seen:?}"
        );
        assert_eq!(seen.code(), "kafka_unavailable", "{fault:?}");
        assert_eq!(seen.retry_after(), Some("3"), "{fault:?}");
    }
}

#[tokio::test]
async fn a_503_names_its_code_and_a_sentence_not_the_kafka_clients_text() {
    let h = harness();
    h.kafka.then(MemoryBehaviour::Fail(MemoryFault::Refused));
    let seen = h.send(post("open", &[("x-id", "k")], "{}")).await;
    assert_eq!(
        seen.body["message"],
        "the event could not be made durable in Kafka; retry later"
    );
    assert!(!seen.body.to_string().contains("Broker"), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_produce_releases_the_claim_so_the_retry_is_accepted() {
    for fault in FAULTS {
        let h = harness();
        h.kafka.then(fault);
        let failed = h.send(post("open", &[("x-id", "same")], "{}")).await;
        assert_eq!(failed.status.as_u16(), 503, "{fault:?}");
        assert_eq!(
            h.store.peek(&h.dedupe_key("open", "same")),
            None,
            "{fault:?}: the claim was released"
        );
        let retried = h.send(post("open", &[("x-id", "same")], "{}")).await;
        assert_eq!(retried.status.as_u16(), 202, "{fault:?}: {retried:?}");
        h.committed().await;
        assert_eq!(
            h.store.peek(&h.dedupe_key("open", "same")),
            Some(format!("done:{}", retried.id())),
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn a_lost_acknowledgement_is_at_least_once_never_lost() {
    let h = harness();
    h.kafka
        .then(MemoryBehaviour::Fail(MemoryFault::AcknowledgementLost));
    let unconfirmed = h.send(post("open", &[("x-id", "k")], "{\"n\":1}")).await;
    let retried = h.send(post("open", &[("x-id", "k")], "{\"n\":1}")).await;
    assert_eq!(unconfirmed.status.as_u16(), 503);
    assert_eq!(retried.status.as_u16(), 202);
    let ids: Vec<_> = h
        .kafka
        .records()
        .iter()
        .map(|r| r.header("spillway-event-id").map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "the unconfirmed record stays, the retry writes again"
    );
    assert_eq!(ids[1].as_deref(), Some(retried.id()));
}

#[tokio::test]
async fn the_kafka_record_is_the_body_byte_for_byte_with_the_answers_id() {
    let h = harness();
    let body = "{\"id\": \"r-9\",\n \"device\": \"m-1\",  \"kwh\": 1.50}";
    let seen = h
        .send(post(
            "meters",
            &[("content-type", "application/json")],
            body,
        ))
        .await;
    assert_eq!(seen.status.as_u16(), 202, "{seen:?}");
    let records = h.kafka.records_in("spillway.meters");
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.value.as_deref(), Some(body.as_bytes()));
    assert_eq!(record.header("spillway-event-id"), Some(seen.id()));
    assert_eq!(record.header("spillway-source"), Some("meters"));
    assert_eq!(record.header("spillway-dedupe-key"), Some("r-9"));
    assert_eq!(record.header("content-type"), Some("application/json"));
    // The partition key, not the dedupe key, keys the record: one device stays in order.
    assert_eq!(record.key.as_deref(), Some(b"m-1".as_slice()));
}

#[tokio::test]
async fn the_dedupe_key_keys_the_record_and_allowed_headers_are_forwarded() {
    let h = harness();
    let seen = h
        .send(post(
            "open",
            &[("x-id", "k-1"), ("x-trace-me", "yes"), ("x-other", "no")],
            "{}",
        ))
        .await;
    assert_eq!(seen.status.as_u16(), 202);
    let record = &h.kafka.records()[0];
    assert_eq!(record.key.as_deref(), Some(b"k-1".as_slice()));
    assert_eq!(record.header("x-trace-me"), Some("yes"));
    assert_eq!(record.header("x-other"), None);
}

#[tokio::test]
async fn a_gzip_body_is_verified_and_stored_decoded() {
    let h = harness();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(GITHUB_BODY.as_bytes()).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");
    let req = Request::post("/v1/hooks/github")
        .header("content-encoding", "gzip")
        .header("x-hub-signature-256", GITHUB_SIGNATURE)
        .header("x-github-delivery", "gz-1")
        .body(Full::new(Bytes::from(gzipped)))
        .expect("request");
    let seen = h.send(req).await;
    assert_eq!(seen.status.as_u16(), 202, "{seen:?}");
    assert_eq!(
        h.kafka.records()[0].value.as_deref(),
        Some(GITHUB_BODY.as_bytes())
    );
}

#[tokio::test(start_paused = true)]
async fn the_answer_waits_for_the_acknowledgement() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Delay(secs(2)));
    let started = tokio::time::Instant::now();
    let seen = h.send(post("open", &[("x-id", "slow")], "{}")).await;
    assert_eq!(seen.status.as_u16(), 202);
    assert_eq!(started.elapsed(), secs(2));
    // While the produce is pending, the key is claimed: a retry meanwhile is told to wait.
    h.kafka.behave(MemoryBehaviour::Delay(secs(2)));
    let pipeline = h.pipeline.clone();
    let first = tokio::spawn(async move {
        pipeline
            .handle(
                post("open", &[("x-id", "pending")], "{}"),
                PEER.parse().expect("peer"),
            )
            .await
            .status()
    });
    settle().await;
    let meanwhile = h.send(post("open", &[("x-id", "pending")], "{}")).await;
    assert_eq!(meanwhile.status.as_u16(), 503, "{meanwhile:?}");
    assert_eq!(first.await.expect("first").as_u16(), 202);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_still_gets_its_event_settled() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Delay(secs(2)));
    let pipeline = h.pipeline.clone();
    let request = tokio::spawn(async move {
        pipeline
            .handle(
                post("open", &[("x-id", "gone")], "{}"),
                PEER.parse().expect("peer"),
            )
            .await
    });
    settle().await;
    // hyper drops the request's future when the connection closes.
    request.abort();
    assert!(request.await.is_err());
    h.settle().await;
    assert_eq!(h.kafka.records().len(), 1);
    let id = h.kafka.records()[0]
        .header("spillway-event-id")
        .map(str::to_owned);
    assert_eq!(
        h.store.peek(&h.dedupe_key("open", "gone")),
        id.map(|id| format!("done:{id}")),
        "the claim is committed although nobody waits for the answer"
    );
}

#[tokio::test]
async fn gauges_return_to_zero_and_outcomes_are_counted() {
    let h = harness();
    h.send(post("open", &[("x-id", "m")], "{}")).await;
    h.send(post("open", &[("x-id", "m")], "{}")).await;
    h.committed().await;
    let text = h.metrics();
    for line in [
        "spillway_http_in_flight_requests 0",
        "spillway_dedupe_in_flight_claims 0",
        "spillway_http_requests_total{outcome=\"accepted\",source=\"open\"} 1",
        "spillway_http_requests_total{outcome=\"duplicate\",source=\"open\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// A request's future is moved whole, and every move copies all of it (into hyper's
/// connection state): the durable section and the rare paths are boxed so that it stays
/// small (see `crate::detach`). In a release build it is about 7 KiB with hyper's body type
/// (it was 15 KiB), here 6.3 KiB; the bound leaves room for a compiler's changes, not for a
/// rare path inlined again.
#[tokio::test(start_paused = true)]
async fn a_request_future_stays_small() {
    let h = harness();
    let request = h
        .pipeline
        .clone()
        .handle(post("open", &[], "{}"), PEER.parse().expect("peer"));
    let size = size_of_val(&request);
    assert!(size <= 8 * 1024, "a request's future is {size} bytes");
}
