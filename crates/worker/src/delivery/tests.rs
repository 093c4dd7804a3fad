use http::HeaderValue;

use super::*;

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut h = http::HeaderMap::new();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&later).expect("date"),
    );
    let d = retry_after(&h).expect("date");
    assert!(
        d > Duration::from_secs(100) && d <= Duration::from_secs(120),
        "{d:?}"
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(retry_after(&h), None);
}

#[tokio::test]
async fn a_subscription_taking_json_gets_the_protobuf_records_json_signed_as_sent() {
    let key = b"a-key-of-the-subscriber".to_vec();
    let secret = spillway_signature::Secret {
        id: "k".into(),
        key: key.clone(),
        not_after: None,
    };
    let event = OutboundEvent {
        event_id: "evt-1".into(),
        source: "meters".into(),
        event_type: None,
        content_type: Some("application/x-protobuf".into()),
        traceparent: None,
        dedupe_key: None,
        hops: 0,
        body: Bytes::from_static(b"\x0a\x03r-1"),
        json_body: Some(Bytes::from_static(br#"{"id":"r-1"}"#)),
        stored: None,
        test_for: None,
    };
    for (json, body, content_type) in [
        (false, &b"\x0a\x03r-1"[..], "application/x-protobuf"),
        (true, &br#"{"id":"r-1"}"#[..], "application/json"),
    ] {
        let sub = ResolvedSubscription {
            secrets: vec![secret.clone()],
            protobuf_json: json,
            reference_expiry: None,
            ..crate::test_support::subscription("s")
        };
        let request = build_request(&sub, &event, 1).expect("request");
        let header = |name: &str| request.headers()[name].to_str().expect("text").to_owned();
        assert_eq!(header("content-type"), content_type);
        let timestamp: i64 = header("webhook-timestamp").parse().expect("seconds");
        let expected = sign(&Scheme::standard_webhooks(), &key, "evt-1", timestamp, body)
            .expect("signs")
            .into_iter()
            .find(|(name, _)| name == "webhook-signature")
            .map(|(_, v)| v);
        assert_eq!(Some(header("webhook-signature")), expected);
        let sent = request
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&sent[..], body);
    }
}

#[test]
fn matching_by_source_and_event_type() {
    let sub = |sources: &[&str], types: &[&str]| ResolvedSubscription {
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        event_types: types.iter().map(|s| (*s).to_owned()).collect(),
        ..crate::test_support::subscription("s")
    };
    assert!(wants(&sub(&[], &[]), "github", None));
    assert!(wants(&sub(&["github"], &[]), "github", Some("push")));
    assert!(!wants(&sub(&["stripe"], &[]), "github", Some("push")));
    assert!(wants(&sub(&[], &["push"]), "github", Some("push")));
    assert!(!wants(&sub(&[], &["push"]), "github", Some("issues")));
    assert!(
        !wants(&sub(&[], &["push"]), "github", None),
        "a typed subscription needs a type"
    );
}

#[test]
fn a_test_event_is_for_its_subscription_only_and_says_so() {
    let mut event = OutboundEvent {
        event_id: "evt-1".into(),
        source: "github".into(),
        event_type: Some("push".into()),
        content_type: None,
        traceparent: None,
        dedupe_key: None,
        hops: 0,
        body: Bytes::from_static(b"{}"),
        json_body: None,
        stored: None,
        test_for: None,
    };
    let sub = |id: &str| ResolvedSubscription {
        secrets: vec![spillway_signature::Secret {
            id: "k".into(),
            key: b"a-key-of-the-subscriber".to_vec(),
            not_after: None,
        }],
        ..crate::test_support::subscription(id)
    };
    let (billing, audit) = (sub("billing"), sub("audit"));
    assert!(event.is_for(&billing) && event.is_for(&audit));
    let header = |request: &Request<OutBody>| request.headers().get(headers::TEST_EVENT).cloned();
    assert_eq!(
        header(&build_request(&billing, &event, 1).expect("request")),
        None
    );
    event.test_for = Some("billing".into());
    assert!(event.is_for(&billing) && !event.is_for(&audit));
    assert_eq!(
        header(&build_request(&billing, &event, 1).expect("request")),
        Some(HeaderValue::from_static("true"))
    );
}
