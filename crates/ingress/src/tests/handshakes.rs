//! The registration handshakes, each from a request shaped as its provider sends it: answered
//! as the provider expects, counted, and never written to Kafka; and an authentic request
//! whose preset dedupe key is absent, accepted under its body's hash.

use http::Request;
use http_body_util::Full;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use spillway_signature::sign;

use super::answers::expect;
use super::*;

const NOW_SECS: fn() -> i64 = || spillway_signature::unix_seconds(std::time::SystemTime::now());

/// `body` signed for `source` the way its preset's provider signs it.
fn signed(source: &str, secret: &str, id: &str, body: &str) -> Vec<(String, String)> {
    let scheme = spillway_providers::find(source)
        .expect("preset")
        .scheme
        .clone();
    let key = scheme.decode_secret(secret).expect("secret");
    sign(&scheme, &key, id, NOW_SECS(), body.as_bytes()).expect("signs")
}

fn post_signed(source: &str, headers: &[(String, String)], body: &str) -> Request<Full<Bytes>> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post(source, &pairs, body)
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).expect("request")
}

/// Answered 200 with `body`, counted as a handshake, and nothing written.
fn answered(h: &Harness, seen: &Seen, body: serde_json::Value, kind: &str, source: &str) {
    assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    assert_eq!(seen.body, body, "{seen:?}");
    assert!(h.kafka.records().is_empty(), "a handshake is not an event");
    let metrics = h.metrics();
    let line = format!(
        "spillway_handshake_requests_total{{kind=\"{kind}\",result=\"answered\",source=\"{source}\"}} 1"
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(metrics.contains(&format!(
        "spillway_http_requests_total{{outcome=\"handshake\",source=\"{source}\"}} 1"
    )));
}

fn text(seen: &Seen) -> String {
    seen.body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| seen.body.to_string())
}

#[tokio::test]
async fn slack_url_verification_is_answered_with_its_challenge_once_verified() {
    let h = harness();
    let body = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let headers = signed("slack", "slack-signing-secret", "", body);
    let seen = h.send(post_signed("slack", &headers, body)).await;
    answered(
        &h,
        &seen,
        serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}),
        "slack_url_verification",
        "slack",
    );
    // Unsigned, it is refused like any event.
    let seen = h.send(post("slack", &[], body)).await;
    expect(&seen, 401, "signature_missing");
}

#[tokio::test]
async fn a_source_that_stores_handshakes_writes_them_once_and_still_answers_them() {
    let h = harness();
    // The source keys its events by /event_id and /team_id, which a url_verification has
    // not, and allows one event an hour: neither refuses its handshakes.
    let body = r#"{"token":"t","challenge":"c-1","type":"url_verification"}"#;
    for _ in 0..3 {
        let headers = signed("slack", "slack-signing-secret", "", body);
        let seen = h.send(post_signed("slack-stored", &headers, body)).await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        assert_eq!(seen.body, serde_json::json!({"challenge": "c-1"}));
    }
    let records = h.kafka.records();
    assert_eq!(records.len(), 1, "written once, the others are duplicates");
    assert_eq!(records[0].value.as_deref(), Some(body.as_bytes()));
    // An event still needs its keys.
    let event = r#"{"type":"event_callback","event":{"type":"message"}}"#;
    let headers = signed("slack", "slack-signing-secret", "", event);
    let seen = h.send(post_signed("slack-stored", &headers, event)).await;
    expect(&seen, 400, "key_not_in_body");
}

#[tokio::test]
async fn a_slack_event_is_still_an_event() {
    let h = harness();
    let body = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#;
    let headers = signed("slack", "slack-signing-secret", "", body);
    let seen = h.send(post_signed("slack", &headers, body)).await;
    expect(&seen, 202, "accepted");
    assert_eq!(h.kafka.records().len(), 1);
}

#[tokio::test]
async fn zoom_url_validation_answers_the_hmac_of_the_plain_token() {
    let h = harness();
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let headers = signed("zoom", "zoom-secret-token", "", body);
    let seen = h.send(post_signed("zoom", &headers, body)).await;
    // Python: hmac.new(b"zoom-secret-token", b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    let encrypted = "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3";
    answered(
        &h,
        &seen,
        serde_json::json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": encrypted}),
        "zoom_url_validation",
        "zoom",
    );
}

#[tokio::test]
async fn twitch_callback_verification_answers_the_challenge_as_text() {
    let h = harness();
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}"#;
    let mut headers = signed("twitch", "twitch-eventsub-secret", "msg-1", body);
    headers.push((
        "twitch-eventsub-message-type".into(),
        "webhook_callback_verification".into(),
    ));
    let seen = h.send(post_signed("twitch", &headers, body)).await;
    assert_eq!(
        seen.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    answered(
        &h,
        &seen,
        serde_json::json!("pogchamp-kappa-360noscope-vohiyo"),
        "twitch_callback_verification",
        "twitch",
    );
}

#[tokio::test]
async fn a_discord_ping_is_answered_with_a_pong() {
    let h = harness();
    let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("key pair");
    assert_eq!(hex::encode(pair.public_key().as_ref()), DISCORD_PUBLIC_KEY);
    let body = r#"{"type":1,"id":"1","application_id":"2"}"#;
    let ts = NOW_SECS().to_string();
    let sig = hex::encode(pair.sign(format!("{ts}{body}").as_bytes()).as_ref());
    let seen = h
        .send(post(
            "discord",
            &[
                ("x-signature-ed25519", &sig),
                ("x-signature-timestamp", &ts),
            ],
            body,
        ))
        .await;
    answered(
        &h,
        &seen,
        serde_json::json!({"type": 1}),
        "discord_ping",
        "discord",
    );
    // Discord also sends a PING with a bad signature, and expects it refused.
    let forged = h
        .send(post(
            "discord",
            &[
                ("x-signature-ed25519", &"00".repeat(64)),
                ("x-signature-timestamp", &ts),
            ],
            body,
        ))
        .await;
    expect(&forged, 401, "signature_mismatch");
}

#[tokio::test]
async fn meta_hub_challenge_needs_the_verify_token() {
    let h = harness();
    let uri = |token: &str| {
        format!(
            "/v1/hooks/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        )
    };
    let seen = h.send(get(&uri("meta-verify-token"), &[])).await;
    assert_eq!(text(&seen), "1158201444");
    answered(
        &h,
        &seen,
        serde_json::json!(1158201444),
        "meta_hub_challenge",
        "meta",
    );
    let wrong = h.send(get(&uri("guess"), &[])).await;
    expect(&wrong, 403, "verify_token_mismatch");
    // A guess counts as a failed verification, towards blocking the address.
    assert!(h.metrics().contains(
        "spillway_verification_failures_total{reason=\"verify_token_mismatch\",source=\"meta\"} 1"
    ));
    // WhatsApp uses Meta's handshake; this source has no verify_token.
    let unset = h
        .send(get(
            "/v1/hooks/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            &[],
        ))
        .await;
    expect(&unset, 403, "verify_token_not_configured");
    // Any other GET is still not allowed.
    let plain = h.send(get("/v1/hooks/meta", &[])).await;
    expect(&plain, 405, "method_not_allowed");
}

#[tokio::test]
async fn dropbox_and_graph_challenges_are_echoed_as_unsniffable_text() {
    let h = harness();
    let seen = h
        .send(get("/v1/hooks/dropbox?challenge=abc123XYZ", &[]))
        .await;
    assert_eq!(
        seen.headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    answered(
        &h,
        &seen,
        serde_json::json!("abc123XYZ"),
        "dropbox_challenge",
        "dropbox",
    );

    let token =
        "Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+b8f3";
    let req = Request::post(format!("/v1/hooks/graph?validationToken={token}"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let seen = h.send(req).await;
    assert_eq!(
        text(&seen),
        "Validation: Testing client application reachability for subscription Request-Id: b8f3"
    );
    let control = h.send(get("/v1/hooks/dropbox?challenge=a%0Ab", &[])).await;
    expect(&control, 400, "handshake_invalid");
}

#[tokio::test]
async fn okta_verification_checks_the_hook_token() {
    let h = harness();
    let challenge = "X8VjCtCLbVZ9WMvs4xXOS1VGr5BbLWzx3Y8IlwNA";
    let seen = h
        .send(get(
            "/v1/hooks/okta",
            &[
                ("x-okta-verification-challenge", challenge),
                ("authorization", "Bearer okta-hook-token"),
            ],
        ))
        .await;
    answered(
        &h,
        &seen,
        serde_json::json!({"verification": challenge}),
        "okta_verification",
        "okta",
    );
    let wrong = h
        .send(get(
            "/v1/hooks/okta",
            &[
                ("x-okta-verification-challenge", challenge),
                ("authorization", "Bearer guess"),
            ],
        ))
        .await;
    expect(&wrong, 401, "signature_mismatch");
}

#[tokio::test]
async fn asana_hook_secret_is_echoed() {
    let h = harness();
    let seen = h
        .send(post("asana", &[("x-hook-secret", "b537207f20cbfa02")], ""))
        .await;
    assert_eq!(
        seen.headers
            .get("x-hook-secret")
            .and_then(|v| v.to_str().ok()),
        Some("b537207f20cbfa02")
    );
    answered(
        &h,
        &seen,
        serde_json::json!({}),
        "asana_hook_secret",
        "asana",
    );
}

#[tokio::test]
async fn a_head_probe_and_xeros_intent_to_receive_are_answered_empty() {
    let h = harness();
    let head = Request::head("/v1/hooks/trello")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let seen = h.send(head).await;
    assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
    // Xero's intent to receive: signed, no events, answered 200 with nothing in the body.
    let body = r#"{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"YBHUGWJPQRMOELSRLKTR"}"#;
    let headers = signed("xero", "xero-webhooks-key", "", body);
    let seen = h.send(post_signed("xero", &headers, body)).await;
    answered(
        &h,
        &seen,
        serde_json::json!(""),
        "xero_intent_to_receive",
        "xero",
    );
    // The same with a bad signature: 401, as Xero checks.
    let forged = post("xero", &[("x-xero-signature", "AAAA")], body);
    expect(&h.send(forged).await, 401, "signature_mismatch");
    // A real delivery is an event.
    let body = r#"{"events":[{"resourceId":"r1","eventType":"UPDATE"}],"entropy":"X"}"#;
    let headers = signed("xero", "xero-webhooks-key", "", body);
    expect(
        &h.send(post_signed("xero", &headers, body)).await,
        202,
        "accepted",
    );
}

#[tokio::test]
async fn an_authentic_request_without_its_preset_id_is_keyed_by_its_body() {
    let h = harness();
    // A Stripe event whose body lost its `/id`: authentic, so accepted, not refused.
    let body = r#"{"object":"event","type":"charge.succeeded"}"#;
    let headers = signed("stripe", "whsec_unit_test", "", body);
    let seen = h.send(post_signed("stripe", &headers, body)).await;
    expect(&seen, 202, "accepted");
    let again = h.send(post_signed("stripe", &headers, body)).await;
    expect(&again, 200, "duplicate");
    let records = h.kafka.records();
    assert_eq!(records.len(), 1);
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    assert_eq!(
        records[0].header(spillway_core::headers::DEDUPE_KEY),
        Some(hash.as_str())
    );
    assert!(h
        .metrics()
        .contains("spillway_dedupe_fallback_events_total{source=\"stripe\"} 2"));
    // A source that names its own key has no fallback.
    let seen = h.send(post("open", &[], "{}")).await;
    expect(&seen, 400, "key_header_invalid");
}
