//! Delivery against real local subscribers: signatures a subscriber can verify, failures
//! classified for retry, and the SSRF guard.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use spillway_config::ResolvedSubscription;
use spillway_signature::{Scheme, Secret, SecretRing, Verifier};
use spillway_testkit::{Behaviour, TestSubscriber};
use spillway_worker::{AddressPolicy, Deliverer, DeliveryOutcome, OutboundEvent, Roots};

pub(crate) const CURRENT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PREVIOUS: &str = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2";

pub(crate) fn secret(id: &str, text: &str, not_after: Option<SystemTime>) -> Secret {
    Secret {
        id: id.into(),
        key: Scheme::standard_webhooks()
            .decode_secret(text)
            .expect("secret"),
        not_after,
    }
}

pub(crate) fn subscription(
    url: &str,
    secrets: Vec<Secret>,
    timeout: Duration,
) -> ResolvedSubscription {
    ResolvedSubscription {
        id: "test-sub".into(),
        url: url.parse().expect("url"),
        sources: Vec::new(),
        event_types: Vec::new(),
        secrets,
        headers: vec![(
            http::HeaderName::from_static("x-team"),
            http::HeaderValue::from_static("billing"),
        )],
        timeout,
        rate_limit: None,
        protobuf_json: false,
        reference_expiry: None,
    }
}

pub(crate) fn event() -> OutboundEvent {
    OutboundEvent {
        event_id: "5b1f8a8e-7c57-4e4c-9a51-d1c1a6f0b7a2".into(),
        source: "stripe".into(),
        event_type: Some("invoice.paid".into()),
        content_type: Some("application/json".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        dedupe_key: None,
        hops: 0,
        body: Bytes::from_static(br#"{"id":"evt_1","type":"invoice.paid"}"#),
        json_body: None,
        stored: None,
        test_for: None,
    }
}

pub(crate) fn loopback_allowed() -> Deliverer {
    Deliverer::new(
        AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]),
        &Roots::BuiltIn,
    )
    .expect("deliverer")
}

pub(crate) fn verifies_with(text: &str, received: &spillway_testkit::Received) -> bool {
    let ring = SecretRing::new(vec![secret("v", text, None)]);
    Verifier::new(Scheme::standard_webhooks(), ring, Duration::from_secs(300))
        .verify(&received.headers, &received.body, SystemTime::now())
        .is_ok()
}

#[tokio::test]
async fn a_delivery_is_signed_with_every_active_secret_and_carries_the_event() {
    let subscriber = TestSubscriber::ok().await;
    let sub = subscription(
        &subscriber.url("/hooks"),
        vec![
            secret("current", CURRENT, None),
            secret("previous", PREVIOUS, None),
            secret(
                "retired",
                "whsec_cmV0aXJlZC1zZWNyZXQ=",
                Some(SystemTime::UNIX_EPOCH),
            ),
        ],
        Duration::from_secs(5),
    );
    let outcome = loopback_allowed().deliver(&sub, &event(), 1).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });

    let got = subscriber.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.body, event().body, "the exact bytes");
    // A subscriber mid-rotation verifies with either secret; the expired one signs nothing.
    assert!(verifies_with(CURRENT, r));
    assert!(verifies_with(PREVIOUS, r));
    assert!(!verifies_with("whsec_cmV0aXJlZC1zZWNyZXQ=", r));
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("webhook-signature").map(|s| s.split(' ').count()),
        Some(2)
    );
    assert_eq!(
        header("webhook-id").as_deref(),
        Some(event().event_id.as_str())
    );
    assert_eq!(
        header("spillway-hop").as_deref(),
        Some("1"),
        "the hop count goes up by one"
    );
    assert_eq!(header("spillway-attempt").as_deref(), Some("1"));
    assert_eq!(
        header("spillway-event-type").as_deref(),
        Some("invoice.paid")
    );
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-team").as_deref(), Some("billing"));
    assert!(header("traceparent").is_some());
}

#[tokio::test]
async fn every_failure_is_classified_for_retry() {
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    let cases = [
        (Behaviour::Status(500), Some(500), None),
        (
            Behaviour::StatusRetryAfter(429, "7".into()),
            Some(429),
            Some(Duration::from_secs(7)),
        ),
        (
            Behaviour::StatusRetryAfter(503, later),
            Some(503),
            Some(Duration::from_secs(60)),
        ),
        // Retry-After is only honoured on 429 and 503.
        (
            Behaviour::StatusRetryAfter(500, "7".into()),
            Some(500),
            None,
        ),
        (Behaviour::Status(404), Some(404), None),
        (Behaviour::Status(302), Some(302), None),
        (Behaviour::Close, None, None),
        (Behaviour::Hang, None, None),
    ];
    let deliverer = loopback_allowed();
    for (behaviour, want_status, want_after) in cases {
        let b = behaviour.clone();
        let subscriber = TestSubscriber::start(move |_| b.clone()).await;
        let sub = subscription(
            &subscriber.url("/"),
            vec![secret("c", CURRENT, None)],
            Duration::from_millis(500),
        );
        match deliverer.deliver(&sub, &event(), 3).await {
            DeliveryOutcome::Failed {
                status,
                retry_after,
                reason,
            } => {
                assert_eq!(status, want_status, "{behaviour:?}: {reason}");
                match (retry_after, want_after) {
                    (Some(got), Some(want)) => assert!(
                        got <= want && got + Duration::from_secs(5) > want,
                        "{behaviour:?}: {got:?}"
                    ),
                    (got, want) => assert_eq!(got, want, "{behaviour:?}"),
                }
                if behaviour == Behaviour::Hang {
                    assert!(reason.contains("no answer within"), "{reason}");
                }
            }
            other => panic!("{behaviour:?}: {other:?}"),
        }
    }
    // A loop refused by an ingress is final: no retries.
    let ingress = TestSubscriber::start(|_| Behaviour::Status(508)).await;
    let sub = subscription(
        &ingress.url("/"),
        vec![secret("c", CURRENT, None)],
        Duration::from_millis(500),
    );
    match deliverer.deliver(&sub, &event(), 1).await {
        DeliveryOutcome::Refused { reason } => assert!(reason.contains("508"), "{reason}"),
        other => panic!("508: {other:?}"),
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_targets_unless_allowed() {
    let subscriber = TestSubscriber::ok().await;
    let port = subscriber.addr.port();
    let guarded = Deliverer::new(AddressPolicy::default(), &Roots::BuiltIn).expect("deliverer");
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
    ] {
        let sub = subscription(
            &url,
            vec![secret("c", CURRENT, None)],
            Duration::from_secs(2),
        );
        match guarded.deliver(&sub, &event(), 1).await {
            DeliveryOutcome::Refused { reason } => {
                assert!(reason.contains("is refused"), "{url}: {reason}")
            }
            other => panic!("{url} must be refused, got {other:?}"),
        }
    }
    assert!(
        subscriber.received().is_empty(),
        "nothing reached the internal target"
    );

    // The allowlist lets the trusted test subscriber through, by name and by address.
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let sub = subscription(
            &url,
            vec![secret("c", CURRENT, None)],
            Duration::from_secs(2),
        );
        assert_eq!(
            loopback_allowed().deliver(&sub, &event(), 1).await,
            DeliveryOutcome::Delivered { status: 200 },
            "{url}"
        );
    }
    assert_eq!(subscriber.received().len(), 2);
}

#[tokio::test]
async fn subscribers_get_the_source_s_dedupe_key_and_no_invalid_event_type() {
    let subscriber = TestSubscriber::ok().await;
    let sub = subscription(
        &subscriber.url("/hooks"),
        vec![secret("current", CURRENT, None)],
        Duration::from_secs(5),
    );
    let mut sent = event();
    sent.dedupe_key = Some("evt_1 \n€/x".into());
    sent.event_type = Some("a\nb".into());
    let outcome = loopback_allowed().deliver(&sub, &sent, 1).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
    let got = subscriber.received();
    assert_eq!(got.len(), 1);
    // M-11: the same for every copy of the event; percent-encoded, so any key is a header.
    assert_eq!(
        got[0].header("spillway-dedupe-key"),
        Some("stripe:evt_1%20%0A%E2%82%AC/x")
    );
    // L-5: an event type that is no header value is left out, the event still delivered.
    assert_eq!(got[0].header("spillway-event-type"), None);
}

#[tokio::test]
async fn a_subscription_whose_secrets_all_expired_is_refused_not_sent_unsigned() {
    let subscriber = TestSubscriber::ok().await;
    let sub = subscription(
        &subscriber.url("/hooks"),
        vec![secret("old", CURRENT, Some(SystemTime::UNIX_EPOCH))],
        Duration::from_secs(5),
    );
    let outcome = loopback_allowed().deliver(&sub, &event(), 1).await;
    match outcome {
        DeliveryOutcome::Refused { reason } => {
            assert!(reason.contains("every signing secret"), "{reason}")
        }
        other => panic!("sent anyway: {other:?}"),
    }
    assert!(subscriber.received().is_empty());
}

#[tokio::test]
async fn a_2xx_whose_body_never_comes_is_a_success() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await;
        // The status and a promise of 100 bytes, then nothing.
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let sub = subscription(
        &url,
        vec![secret("current", CURRENT, None)],
        Duration::from_secs(5),
    );
    let outcome = loopback_allowed().deliver(&sub, &event(), 1).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
    server.abort();
}
