//! Events whose body is in object storage, delivered from a real S3-compatible store on
//! loopback (s3s-fs, started by `make up`): the body streamed and signed as sent, a body that
//! changed or went away refused for good, and a reference with a pre-signed URL that works.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use spillway_objects::{ObjectRef, Objects, ObjectsConfig};
use spillway_testkit::TestSubscriber;
use spillway_worker::{Deliverer, DeliveryOutcome, OutboundEvent};

use crate::delivery::{event, loopback_allowed, secret, subscription, verifies_with, CURRENT};

fn store() -> Objects {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    Objects::open(&ObjectsConfig {
        url: format!("s3://spillway/worker-it-{nanos}"),
        options: spillway_testkit::local_s3_options(),
        ..ObjectsConfig::new("")
    })
    .expect("opens")
}

async fn put(objects: &Objects, name: &str, body: &Bytes) -> ObjectRef {
    let mut writer = objects
        .writer(name, Some("application/octet-stream".into()))
        .await
        .expect("writer");
    writer.write(body.clone()).await.expect("write");
    writer.finish().await.expect("finish")
}

fn stored_event(reference: &ObjectRef) -> OutboundEvent {
    OutboundEvent {
        body: Bytes::new(),
        content_type: reference.content_type.clone(),
        stored: Some(reference.clone()),
        ..event()
    }
}

fn deliverer(objects: &Objects) -> Deliverer {
    loopback_allowed().with_objects(Some(objects.clone()))
}

/// 6 MiB: more than one part of the store's, and read in many chunks.
fn large_body() -> Bytes {
    (0..6 * 1024 * 1024)
        .map(|i: usize| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn a_stored_body_is_streamed_to_the_subscriber_and_signed_as_sent() {
    let objects = store();
    let body = large_body();
    let reference = put(&objects, "github/2026-12-02/e-1", &body).await;
    let subscriber = TestSubscriber::ok().await;
    let sub = subscription(
        &subscriber.url("/hooks"),
        vec![secret("current", CURRENT, None)],
        Duration::from_secs(30),
    );
    let outcome = deliverer(&objects)
        .deliver(&sub, &stored_event(&reference), 1)
        .await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
    let got = subscriber.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "the exact bytes");
    assert!(verifies_with(CURRENT, &got[0]), "signed over what was sent");
    assert_eq!(
        got[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(
        got[0].header("content-type"),
        Some("application/octet-stream")
    );
}

#[tokio::test]
async fn a_stored_body_that_changed_or_went_away_is_refused_for_good() {
    let objects = store();
    let reference = put(&objects, "meters/2026-12-02/e-2", &large_body()).await;
    // The same name, other bytes: what the record refers to is no longer what was accepted.
    put(
        &objects,
        "meters/2026-12-02/e-2",
        &Bytes::from_static(b"other"),
    )
    .await;
    let subscriber = TestSubscriber::ok().await;
    let sub = subscription(
        &subscriber.url("/"),
        vec![secret("c", CURRENT, None)],
        Duration::from_secs(30),
    );
    let deliverer = deliverer(&objects);
    match deliverer.deliver(&sub, &stored_event(&reference), 1).await {
        DeliveryOutcome::Refused { reason } => {
            assert!(reason.contains("does not match"), "{reason}")
        }
        other => panic!("changed: {other:?}"),
    }
    objects.delete(&reference).await.expect("delete");
    match deliverer.deliver(&sub, &stored_event(&reference), 2).await {
        DeliveryOutcome::Refused { reason } => {
            assert!(reason.contains("no longer in object storage"), "{reason}")
        }
        other => panic!("gone: {other:?}"),
    }
    assert!(subscriber.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_subscription_may_take_a_reference_with_a_url_that_works() {
    let objects = store();
    let body = large_body();
    let reference = put(&objects, "meters/2026-12-02/e-3", &body).await;
    let subscriber = TestSubscriber::ok().await;
    let sub = spillway_config::ResolvedSubscription {
        reference_expiry: Some(Duration::from_secs(600)),
        ..subscription(
            &subscriber.url("/"),
            vec![secret("c", CURRENT, None)],
            Duration::from_secs(30),
        )
    };
    let outcome = deliverer(&objects)
        .deliver(&sub, &stored_event(&reference), 1)
        .await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
    let got = subscriber.received();
    assert!(verifies_with(CURRENT, &got[0]));
    assert_eq!(
        got[0].header("content-type"),
        Some("application/vnd.spillway.object-reference+json")
    );
    let doc: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(doc["uri"], reference.uri.as_str());
    assert_eq!(doc["size"], body.len());
    assert_eq!(doc["sha256"], hex::encode(Sha256::digest(&body)));
    let url = doc["url"].as_str().expect("url");
    let fetched = reqwest::get(url).await.expect("get");
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().await.expect("body") == body);
}
