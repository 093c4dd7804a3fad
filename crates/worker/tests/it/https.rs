//! Deliveries to an HTTPS subscriber whose certificate a private CA signed: refused with the
//! built-in roots alone, delivered over HTTP/2 (ALPN) once `worker.extra_roots` names the CA.

use std::time::Duration;

use spillway_testkit::{LocalCa, TlsSubscriber};
use spillway_worker::{AddressPolicy, Deliverer, DeliveryOutcome};

use crate::delivery::{event, secret, subscription, CURRENT};

fn loopback() -> AddressPolicy {
    AddressPolicy::new(vec![
        "127.0.0.0/8".parse().unwrap(),
        "::1/128".parse().unwrap(),
    ])
}

#[tokio::test]
async fn a_private_ca_in_extra_roots_is_trusted_and_h2_is_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::write(dir.path());
    let subscriber = TlsSubscriber::start(&ca).await;
    let sub = subscription(
        &subscriber.url("/hooks"),
        vec![secret("current", CURRENT, None)],
        Duration::from_secs(5),
    );

    let built_in = Deliverer::new(loopback(), &Deliverer::roots(None)).expect("deliverer");
    match built_in.deliver(&sub, &event(), 1).await {
        DeliveryOutcome::Failed { reason, status, .. } => {
            assert_eq!(status, None, "{reason}");
            assert!(reason.contains("certificate"), "{reason}");
        }
        other => panic!("an unknown CA must not be trusted: {other:?}"),
    }
    assert!(subscriber.received().is_empty(), "nothing reached it");

    let trusting =
        Deliverer::new(loopback(), &Deliverer::roots(Some(&ca.ca_file))).expect("deliverer");
    for attempt in 1..=2 {
        let outcome = trusting.deliver(&sub, &event(), attempt).await;
        assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
    }
    let received = subscriber.received();
    assert_eq!(received.len(), 2);
    for (version, body) in received {
        assert_eq!(version, http::Version::HTTP_2, "ALPN chose h2");
        assert_eq!(body, event().body);
    }
}

#[test]
fn extra_roots_without_a_certificate_stop_the_deliverer_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let err = Deliverer::new(loopback(), &Deliverer::roots(Some(&empty))).expect_err("refused");
    let text = spillway_egress::error_chain(&err);
    assert!(text.contains("holds no PEM certificate"), "{text}");
}
