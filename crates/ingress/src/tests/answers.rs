//! Every status of the README's answer table, from a request that earns it, and the table
//! itself checked against [`crate::answer::CATALOG`].

use std::collections::BTreeSet;

use http::{Request, StatusCode};
use http_body_util::Full;
use spillway_store::SharedStore;

use super::*;
use crate::answer::CATALOG;
use crate::tls::ClientSubject;

/// Asserts the answer's status and code, and that the pair is catalogued.
pub(super) fn expect(seen: &Seen, status: u16, code: &str) {
    assert_eq!(seen.status.as_u16(), status, "{seen:?}");
    let got = if seen.body.get("error").is_some() {
        seen.code()
    } else {
        seen.body["status"].as_str().unwrap_or_default()
    };
    assert_eq!(got, code, "{seen:?}");
    assert!(
        CATALOG.contains(&(status, code)),
        "({status}, {code}) is not in answer::CATALOG"
    );
    if seen.body.get("error").is_some() {
        assert!(
            seen.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "every error carries a sentence: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_verified_github_delivery_is_accepted() {
    let h = harness();
    let seen = h
        .send(post(
            "github",
            &[
                ("x-hub-signature-256", GITHUB_SIGNATURE),
                ("x-github-delivery", "d-1"),
                ("x-github-event", "ping"),
            ],
            GITHUB_BODY,
        ))
        .await;
    expect(&seen, 202, "accepted");
    assert!(
        spillway_core::EventId::parse(seen.id()).is_some(),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_repeated_delivery_is_a_duplicate_carrying_the_original_id() {
    let h = harness();
    let first = h.send(post("open", &[("x-id", "k")], "{}")).await;
    let again = h.send(post("open", &[("x-id", "k")], "{}")).await;
    expect(&first, 202, "accepted");
    expect(&again, 200, "duplicate");
    assert_eq!(again.id(), first.id());
    assert_eq!(h.kafka.records().len(), 1, "a duplicate is not written");
}

#[tokio::test]
async fn robots_are_told_to_stay_away() {
    let h = harness();
    let req = Request::get("/robots.txt")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let seen = h.send(req).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, "User-agent: *\nDisallow: /\n");
    assert!(CATALOG.contains(&(200, "(robots.txt)")));
}

#[tokio::test]
async fn a_tampered_body_is_unauthorised_and_an_unsigned_one_too() {
    let h = harness();
    let tampered = h
        .send(post(
            "github",
            &[
                ("x-hub-signature-256", GITHUB_SIGNATURE),
                ("x-github-delivery", "d"),
            ],
            "Hello, World?",
        ))
        .await;
    expect(&tampered, 401, "signature_mismatch");
    let unsigned = h
        .send(post("github", &[("x-github-delivery", "d")], GITHUB_BODY))
        .await;
    expect(&unsigned, 401, "signature_missing");
    let malformed = h
        .send(post(
            "github",
            &[
                ("x-hub-signature-256", "md5=zz"),
                ("x-github-delivery", "d"),
            ],
            GITHUB_BODY,
        ))
        .await;
    expect(&malformed, 400, "malformed_header");
    assert!(h.kafka.records().is_empty());
}

#[tokio::test]
async fn unknown_paths_and_sources_are_not_found() {
    let h = harness();
    let req = Request::post("/hooks/github")
        .body(Full::new(Bytes::new()))
        .expect("request");
    expect(&h.send(req).await, 404, "not_found");
    expect(
        &h.send(post("nosuch", &[], "{}")).await,
        404,
        "unknown_source",
    );
}

#[tokio::test]
async fn only_post_is_allowed() {
    let h = harness();
    let req = Request::put("/v1/hooks/open")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let seen = h.send(req).await;
    expect(&seen, 405, "method_not_allowed");
    assert_eq!(
        seen.headers.get("allow").map(|v| v.as_bytes()),
        Some(b"POST".as_slice())
    );
}

#[tokio::test]
async fn an_address_outside_the_allowlist_is_refused_before_its_body_is_read() {
    let h = harness();
    let outside = h.send(post("fenced", &[], "{}")).await;
    expect(&outside, 403, "address_not_allowed");
    let inside = h
        .send_from(post("fenced", &[], "{}"), "10.1.2.3:5000")
        .await;
    expect(&inside, 202, "accepted");
}

#[tokio::test]
async fn a_mutual_tls_source_needs_a_client_certificate() {
    let h = harness();
    expect(
        &h.send(post("devices", &[], "{}")).await,
        401,
        "client_certificate_required",
    );
    let mut req = post("devices", &[], "{}");
    req.extensions_mut()
        .insert(ClientSubject(Arc::from("meter-7")));
    expect(&h.send(req).await, 202, "accepted");
    let record = &h.kafka.records()[0];
    assert_eq!(record.header("spillway-device-id"), Some("meter-7"));
}

#[tokio::test]
async fn a_client_failing_verification_past_the_limit_is_blocked() {
    let h = harness();
    let forged = || {
        post(
            "github",
            &[
                ("x-hub-signature-256", "sha256=00"),
                ("x-github-delivery", "d"),
            ],
            "x",
        )
    };
    for _ in 0..3 {
        expect(&h.send(forged()).await, 401, "signature_mismatch");
    }
    let seen = h.send(forged()).await;
    expect(&seen, 403, "client_blocked");
    assert_eq!(seen.retry_after(), Some("600"));
    // Another address is not blocked.
    let other = h
        .send_from(post("open", &[("x-id", "o")], "{}"), "192.0.2.99:1")
        .await;
    expect(&other, 202, "accepted");
}

#[tokio::test]
async fn hop_counts_past_the_limit_are_loops_and_garbage_is_malformed() {
    let h = harness();
    let looping = h
        .send(post("open", &[("x-id", "a"), ("spillway-hop", "3")], "{}"))
        .await;
    expect(&looping, 508, "loop_detected");
    let garbage = h
        .send(post("open", &[("x-id", "a"), ("spillway-hop", "-1")], "{}"))
        .await;
    expect(&garbage, 400, "malformed_header");
    let within = h
        .send(post("open", &[("x-id", "a"), ("spillway-hop", "2")], "{}"))
        .await;
    expect(&within, 202, "accepted");
    assert_eq!(h.kafka.records()[0].header("spillway-hop"), Some("2"));
}

#[tokio::test]
async fn a_source_over_its_rate_limit_is_told_when_to_come_back() {
    let h = harness();
    for _ in 0..2 {
        expect(&h.send(post("limited", &[], "{}")).await, 202, "accepted");
    }
    let seen = h.send(post("limited", &[], "{}")).await;
    expect(&seen, 429, "rate_limited");
    let after: u64 = seen.retry_after().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&after), "{seen:?}");
    // The limiter protects; when Redis is down it lets requests through.
    h.store.set_offline(true);
    expect(&h.send(post("limited", &[], "{}")).await, 202, "accepted");
}

#[tokio::test]
async fn a_saturated_process_sheds_instead_of_queueing() {
    let h = harness();
    let held: Vec<_> = (0..MAX_IN_FLIGHT)
        .map(|_| h.pipeline.limit.try_enter().expect("place"))
        .collect();
    let seen = h.send(post("open", &[("x-id", "x")], "{}")).await;
    expect(&seen, 503, "overloaded");
    assert_eq!(seen.retry_after(), Some("3"));
    drop(held);
    expect(
        &h.send(post("open", &[("x-id", "x")], "{}")).await,
        202,
        "accepted",
    );
}

#[tokio::test]
async fn unknown_codings_are_unsupported_and_corrupt_ones_undecodable() {
    let h = harness();
    let br = h
        .send(post(
            "open",
            &[("x-id", "b"), ("content-encoding", "br")],
            "{}",
        ))
        .await;
    expect(&br, 415, "unsupported_encoding");
    let corrupt = h
        .send(post(
            "open",
            &[("x-id", "c"), ("content-encoding", "gzip")],
            "not gzip",
        ))
        .await;
    expect(&corrupt, 400, "body_undecodable");
}

#[tokio::test]
async fn bodies_over_the_cap_are_too_large_announced_or_streamed() {
    let h = harness();
    let big = "x".repeat(65);
    let announced = h
        .send(post(
            "open",
            &[("x-id", "a"), ("content-length", "65")],
            &big,
        ))
        .await;
    expect(&announced, 413, "body_too_large");
    // Full<Bytes> announces no length itself: the cap is enforced while reading.
    let streamed = h.send(post("open", &[("x-id", "a")], &big)).await;
    expect(&streamed, 413, "body_too_large");
    let at_cap = h
        .send(post("open", &[("x-id", "a")], &"y".repeat(64)))
        .await;
    assert_ne!(at_cap.status.as_u16(), 413, "{at_cap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_is_too_slow_after_the_grace() {
    let h = harness();
    let req = Request::post("/v1/hooks/open")
        .header("x-id", "slow")
        .body(Stalled)
        .expect("request");
    let started = tokio::time::Instant::now();
    let seen = h.send(req).await;
    expect(&seen, 408, "body_too_slow");
    assert_eq!(started.elapsed(), secs(2), "the configured body_rate_grace");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_keeps_coming_but_never_ends_times_out() {
    let h = harness();
    let req = Request::post("/v1/hooks/nodedupe")
        // 200 bytes a second: faster than the harness's min_body_rate of 100.
        .body(Paced::new(200))
        .expect("request");
    let started = tokio::time::Instant::now();
    let seen = h.send(req).await;
    expect(&seen, 408, "body_timeout");
    assert_eq!(
        started.elapsed(),
        secs(5),
        "the configured body_read_timeout"
    );
}

#[tokio::test]
async fn keys_that_cannot_be_read_are_the_senders_fault() {
    let h = harness();
    expect(
        &h.send(post("open", &[], "{}")).await,
        400,
        "key_header_invalid",
    );
    expect(
        &h.send(post("meters", &[], "not json")).await,
        400,
        "body_not_json",
    );
    expect(
        &h.send(post("meters", &[], "{\"id\": \"r1\", \"device\": {}}"))
            .await,
        400,
        "key_not_in_body",
    );
    expect(
        &h.send(post("open", &[("x-id", "")], "{}")).await,
        400,
        "key_invalid",
    );
    assert!(h.kafka.records().is_empty());
}

#[tokio::test]
async fn a_key_claimed_by_a_request_in_flight_is_answered_503_to_retry() {
    let h = harness();
    let store = SharedStore::Memory(h.store.clone());
    let claimed = store
        .claim(&h.dedupe_key("open", "busy"), "elsewhere")
        .await;
    assert!(matches!(claimed, Ok(spillway_store::Claim::Claimed(_))));
    let seen = h.send(post("open", &[("x-id", "busy")], "{}")).await;
    // Not 409: several senders treat every 4xx as final, and the original may yet fail.
    expect(&seen, 503, "in_flight");
    assert_eq!(seen.retry_after(), Some("3"));
}

#[tokio::test]
async fn a_fail_closed_source_refuses_while_redis_is_down_and_a_fail_open_one_accepts() {
    let h = harness();
    h.store.set_offline(true);
    let closed = h.send(post("open", &[("x-id", "r")], "{}")).await;
    expect(&closed, 503, "dedupe_unavailable");
    assert_eq!(closed.retry_after(), Some("3"));
    let open = h.send(post("lenient", &[("x-id", "r")], "{}")).await;
    expect(&open, 202, "accepted");
    assert!(h
        .metrics()
        .contains("spillway_dedupe_fail_open_events_total{source=\"lenient\"} 1"));
}

#[test]
fn the_readme_answer_table_is_the_catalog() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let table = readme
        .split("## What the ingress answers")
        .nth(1)
        .expect("the README has the answers section");
    let mut listed = BTreeSet::new();
    for row in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(status) = cells[1].parse::<u16>() else {
            continue; // the header and its rule
        };
        let codes: Vec<&str> = cells[2].split('`').skip(1).step_by(2).collect();
        if codes.is_empty() {
            listed.insert((status, cells[2].to_owned()));
        }
        for code in codes {
            listed.insert((status, code.to_owned()));
        }
    }
    let catalog: BTreeSet<(u16, String)> =
        CATALOG.iter().map(|(s, c)| (*s, (*c).to_owned())).collect();
    let missing: Vec<_> = catalog.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&catalog).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README answer table: missing {missing:?}, not given by the code {extra:?}"
    );
}
