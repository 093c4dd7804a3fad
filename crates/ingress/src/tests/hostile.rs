//! Hostile and unlucky traffic: what one client can hold (places, body bytes, time), what it
//! cannot spend (a source's rate limit), what it cannot replay, and what a client that goes
//! away still holds while its event is written.

use bytes::Bytes;
use http::Request;
use spillway_kafka::{MemoryBehaviour, MemoryFault};

use super::answers::expect;
use super::*;

/// A request to `source` whose body sends `sent` bytes and then stalls.
fn stalled_after(source: &str, sent: usize) -> Request<Trickle> {
    let chunks = if sent == 0 {
        Vec::new()
    } else {
        vec![Bytes::from(vec![b'x'; sent])]
    };
    Request::post(format!("/v1/hooks/{source}"))
        .header("x-id", "stalled")
        .body(Trickle(chunks))
        .expect("request")
}

fn genuine_github() -> Request<Full<Bytes>> {
    post(
        "github",
        &[
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-delivery", "d-genuine"),
            ("x-github-event", "push"),
        ],
        GITHUB_BODY,
    )
}

#[tokio::test(start_paused = true)]
async fn stalled_uploads_hold_no_place_a_genuine_sender_needs() {
    let h = harness();
    // More stalled uploads than there are in-flight places, from addresses of their own.
    let mut stalls = Vec::new();
    for n in 0..MAX_IN_FLIGHT + 4 {
        let pipeline = h.pipeline.clone();
        let peer = format!("198.51.100.{n}:1000").parse().expect("peer");
        stalls.push(tokio::spawn(async move {
            pipeline.handle(stalled_after("nodedupe", 10), peer).await
        }));
    }
    settle().await;
    expect(&h.send(genuine_github()).await, 202, "accepted");
    for stall in stalls {
        stall.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn one_client_cannot_open_more_than_its_share_of_requests() {
    let h = harness();
    let mut stalls = Vec::new();
    for _ in 0..4 {
        let pipeline = h.pipeline.clone();
        stalls.push(tokio::spawn(async move {
            let peer = "203.0.113.7:1".parse().expect("peer");
            pipeline.handle(stalled_after("nodedupe", 0), peer).await
        }));
    }
    settle().await;
    let fifth = h
        .send_from(post("nodedupe", &[], "{}"), "203.0.113.7:2")
        .await;
    expect(&fifth, 503, "client_overloaded");
    assert_eq!(fifth.retry_after(), Some("3"));
    expect(&h.send(genuine_github()).await, 202, "accepted");
    for stall in stalls {
        stall.abort();
    }
    settle().await;
    let after = h
        .send_from(post("nodedupe", &[], "{}"), "203.0.113.7:3")
        .await;
    expect(&after, 202, "accepted");
}

#[tokio::test(start_paused = true)]
async fn body_memory_is_budgeted_in_bytes_as_they_arrive() {
    let h = harness();
    // A client that announces a large body but sends little holds only what it sent.
    let announced = Request::post("/v1/hooks/nodedupe")
        .header("content-length", "900000")
        .body(Trickle(vec![Bytes::from_static(b"{")]))
        .expect("request");
    let pipeline = h.pipeline.clone();
    let liar = tokio::spawn(async move {
        let peer = "203.0.113.20:1".parse().expect("peer");
        pipeline.handle(announced, peer).await
    });
    // One that sends 4,050 of the budget's 4,096 bytes and stalls.
    let pipeline = h.pipeline.clone();
    let hog = tokio::spawn(async move {
        let peer = "203.0.113.21:1".parse().expect("peer");
        pipeline.handle(stalled_after("nodedupe", 4050), peer).await
    });
    settle().await;
    let refused = h
        .send(post("open", &[("x-id", "b")], &"y".repeat(60)))
        .await;
    expect(&refused, 503, "overloaded");
    assert_eq!(refused.retry_after(), Some("3"));
    assert!(
        h.metrics().contains(
            "spillway_http_shed_requests_total{reason=\"body_memory\",source=\"open\"} 1"
        ),
        "{}",
        h.metrics()
    );
    hog.abort();
    settle().await;
    expect(
        &h.send(post("open", &[("x-id", "b")], &"y".repeat(60)))
            .await,
        202,
        "accepted",
    );
    liar.abort();
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_minimum_rate_is_cut_off_before_the_read_timeout() {
    let h = harness();
    let started = tokio::time::Instant::now();
    // 50 bytes a second against a minimum of 100 after a 2 s grace: the bytes at 0..=4 s buy
    // 2.5 s, so the cut comes at 4.5 s, before the 5 s read timeout.
    let req = Request::post("/v1/hooks/nodedupe")
        .body(Paced::new(50))
        .expect("request");
    let seen = h.send(req).await;
    expect(&seen, 408, "body_too_slow");
    assert_eq!(started.elapsed(), Duration::from_millis(4500));
}

#[tokio::test(start_paused = true)]
async fn a_body_sent_at_once_then_stalled_is_cut_off_after_the_grace() {
    let h = harness();
    let started = tokio::time::Instant::now();
    // 1,000 bytes would buy 10 s at the average rate; a pause longer than the grace does not.
    let seen = h.send(stalled_after("nodedupe", 1000)).await;
    expect(&seen, 408, "body_too_slow");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn anonymous_requests_do_not_spend_a_sources_rate_limit() {
    let h = harness();
    // From addresses of their own, so that none is blocked before the end.
    for n in 0..5 {
        let forged = post(
            "guarded",
            &[
                ("x-hub-signature-256", "sha256=00"),
                ("x-github-delivery", "f"),
            ],
            GITHUB_BODY,
        );
        let peer = format!("198.51.100.{n}:1");
        expect(&h.send_from(forged, &peer).await, 401, "signature_mismatch");
    }
    let genuine = post(
        "guarded",
        &[
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-delivery", "g1"),
        ],
        GITHUB_BODY,
    );
    expect(&h.send(genuine).await, 202, "accepted");
}

#[tokio::test]
async fn a_captured_github_request_with_a_fresh_delivery_id_is_a_duplicate() {
    let h = harness();
    let first = h.send(genuine_github()).await;
    expect(&first, 202, "accepted");
    // Same body and signature; the unsigned delivery id and event type changed.
    let replayed = post(
        "github",
        &[
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-delivery", "d-forged"),
            ("x-github-event", "release"),
        ],
        GITHUB_BODY,
    );
    let seen = h.send(replayed).await;
    expect(&seen, 200, "duplicate");
    assert_eq!(seen.id(), first.id());
    assert_eq!(h.kafka.records().len(), 1);
}

#[tokio::test]
async fn deployments_sharing_a_redis_do_not_answer_for_each_other() {
    let store = MemoryStore::new(secs(30), secs(3600));
    let staging = harness_on(Some(store.clone()), "cluster-staging");
    let production = harness_on(Some(store), "cluster-production");
    let event = || post("open", &[("x-id", "evt_1")], "{}");
    expect(&staging.send(event()).await, 202, "accepted");
    expect(&production.send(event()).await, 202, "accepted");
    assert_eq!(production.kafka.records().len(), 1);
    expect(&production.send(event()).await, 200, "duplicate");
}

#[tokio::test]
async fn a_record_kafka_refuses_as_too_large_is_413_not_a_retry() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Fail(MemoryFault::TooLarge));
    let seen = h.send(post("open", &[("x-id", "big")], "{}")).await;
    expect(&seen, 413, "record_too_large");
    assert_eq!(seen.retry_after(), None);
    // The claim is given back: a smaller retry of the same event is not a duplicate.
    h.kafka.behave(MemoryBehaviour::Accept);
    expect(
        &h.send(post("open", &[("x-id", "big")], "{}")).await,
        202,
        "accepted",
    );
}

#[tokio::test(start_paused = true)]
async fn a_fail_open_event_written_while_redis_blinked_is_still_deduplicated() {
    let h = harness();
    h.store.set_offline(true);
    h.kafka.behave(MemoryBehaviour::Delay(secs(1)));
    let pipeline = h.pipeline.clone();
    let first = tokio::spawn(async move {
        let req = post("lenient", &[("x-id", "blink")], "{}");
        pipeline
            .handle(req, PEER.parse().expect("peer"))
            .await
            .status()
    });
    settle().await;
    // Redis is back before Kafka acknowledges: the event's key is committed all the same.
    h.store.set_offline(false);
    assert_eq!(first.await.expect("first").as_u16(), 202);
    h.kafka.behave(MemoryBehaviour::Accept);
    let retry = h.send(post("lenient", &[("x-id", "blink")], "{}")).await;
    expect(&retry, 200, "duplicate");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_hangs_up_keeps_its_place_and_bytes_until_the_event_is_settled() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Delay(secs(2)));
    let pipeline = h.pipeline.clone();
    let request = tokio::spawn(async move {
        let req = post("nodedupe", &[], &"z".repeat(1000));
        pipeline.handle(req, PEER.parse().expect("peer")).await
    });
    settle().await;
    request.abort();
    assert!(request.await.is_err());
    assert_eq!(h.pipeline.limit.in_flight(), 1, "the place is still taken");
    assert_eq!(
        h.pipeline.budget.available(),
        4096 - 1000,
        "and the body's bytes"
    );
    h.settle().await;
    assert_eq!(h.pipeline.limit.in_flight(), 0);
    assert_eq!(h.pipeline.budget.available(), 4096);
}

#[test]
fn redis_decides_readiness_only_when_every_deduplicating_source_fails_closed() {
    let h = harness();
    let sources: Vec<_> = h
        .pipeline
        .sources
        .load()
        .values()
        .map(|s| (**s).clone())
        .collect();
    // The harness mixes `lenient` (fail open) with fail-closed sources: a Redis outage must
    // not take `lenient` out of the load balancer with the rest.
    assert!(!crate::redis_gates_readiness(&sources));
    let closed: Vec<_> = sources
        .into_iter()
        .filter(|s| s.on_redis_unavailable == spillway_config::FailMode::FailClosed)
        .collect();
    assert!(crate::redis_gates_readiness(&closed));
    assert!(!crate::redis_gates_readiness(&[]));
}

#[tokio::test(start_paused = true)]
async fn a_slow_kafka_shrinks_admission_so_the_rest_is_refused_at_once_and_it_recovers() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Delay(secs(2)));
    // Rounds of requests that take 2 s each, ten times the 200 ms latency target.
    for round in 0..6 {
        let sent: Vec<_> = (0..4)
            .map(|n| {
                let pipeline = h.pipeline.clone();
                tokio::spawn(async move {
                    let req = post("nodedupe", &[], &format!("{{\"r\":{round},\"n\":{n}}}"));
                    pipeline
                        .handle(req, PEER.parse().expect("peer"))
                        .await
                        .status()
                })
            })
            .collect();
        for request in sent {
            assert_eq!(request.await.expect("request").as_u16(), 202);
        }
    }
    let limit = h.pipeline.limit.limit();
    assert!(limit < MAX_IN_FLIGHT, "the limit shrank: {limit}");
    // A burst: as many as the limit are admitted (and answered after the delay); the rest are
    // refused before any time passes, instead of waiting behind the slow broker.
    let burst: Vec<_> = (0..MAX_IN_FLIGHT)
        .map(|n| {
            let pipeline = h.pipeline.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let req = post("nodedupe", &[], &format!("{{\"burst\":{n}}}"));
                let peer = format!("198.51.100.{n}:1").parse().expect("peer");
                let status = pipeline.handle(req, peer).await.status().as_u16();
                (status, started.elapsed())
            })
        })
        .collect();
    let mut admitted = 0;
    for request in burst {
        let (status, took) = request.await.expect("request");
        match status {
            202 => admitted += 1,
            503 => assert_eq!(took, Duration::ZERO, "refused at once"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, limit);
    // Kafka is fast again: the limit grows back to max_in_flight.
    h.kafka.behave(MemoryBehaviour::Accept);
    for n in 0..200 {
        tokio::time::advance(Duration::from_millis(100)).await;
        let req = post("nodedupe", &[], &format!("{{\"after\":{n}}}"));
        expect(&h.send(req).await, 202, "accepted");
        if h.pipeline.limit.limit() == MAX_IN_FLIGHT {
            break;
        }
    }
    assert_eq!(h.pipeline.limit.limit(), MAX_IN_FLIGHT);
    assert!(h.metrics().contains(&format!(
        "spillway_http_in_flight_limit_requests {MAX_IN_FLIGHT}"
    )));
}

#[tokio::test(start_paused = true)]
async fn a_commit_that_fails_once_is_tried_again() {
    let h = harness();
    h.kafka.behave(MemoryBehaviour::Delay(secs(1)));
    let pipeline = h.pipeline.clone();
    let first = tokio::spawn(async move {
        let req = post("open", &[("x-id", "blink")], "{}");
        pipeline
            .handle(req, PEER.parse().expect("peer"))
            .await
            .status()
    });
    settle().await;
    // Redis blinks while Kafka writes the event, and stays away while its commit is sent
    // after the 202: the first commit fails.
    h.store.set_offline(true);
    assert_eq!(first.await.expect("first").as_u16(), 202);
    h.committed().await;
    assert!(
        h.metrics()
            .contains("spillway_redis_errors_total{command=\"commit\"} 1"),
        "{}",
        h.metrics()
    );
    h.store.set_offline(false);
    h.settle().await;
    let id = h.kafka.records()[0]
        .header("spillway-event-id")
        .map(str::to_owned)
        .expect("id");
    assert_eq!(
        h.store.peek(&h.dedupe_key("open", "blink")),
        Some(format!("done:{id}")),
        "committed by a later try, so the sender's retry is a duplicate, not a second event"
    );
}

/// A body refused for its size is read on to its end before the 413, so that a client still
/// writing gets the answer, not a reset; one that never ends is given up on after the grace
/// period, and one declared over the drain limit is not read at all.
#[tokio::test(start_paused = true)]
async fn a_refused_body_is_drained_within_bounds_before_the_413() {
    let h = harness();
    fn over<B>(declared: &str, body: B) -> Request<B> {
        Request::post("/v1/hooks/open")
            .header("x-id", "d")
            .header("content-length", declared)
            .body(body)
            .expect("request")
    }
    // 70 bytes announced over the 64-byte cap, sent in three frames: all three are read.
    let chunks = vec![Bytes::from_static(&[b'x'; 30]); 3];
    let body = Trickle(chunks);
    let started = tokio::time::Instant::now();
    let seen = h.send(over("90", body)).await;
    expect(&seen, 413, "body_too_large");
    // The trickle stalls after its frames: the drain waited out the grace period (2 s).
    assert_eq!(started.elapsed(), secs(2));
    // A client that waits for `100 Continue` is answered at once: it has sent nothing.
    let started = tokio::time::Instant::now();
    let mut waiting = over("90", Stalled);
    waiting.headers_mut().insert(
        http::header::EXPECT,
        http::HeaderValue::from_static("100-continue"),
    );
    expect(&h.send(waiting).await, 413, "body_too_large");
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Declared over the drain limit (4 MiB by default): answered at once.
    let started = tokio::time::Instant::now();
    let seen = h.send(over("999999999", Stalled)).await;
    expect(&seen, 413, "body_too_large");
    assert_eq!(started.elapsed(), Duration::ZERO);
}
