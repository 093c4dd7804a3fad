//! Large bodies by reference across processes, on the real stack with the local S3 server
//! (s3s-fs): a 100 MiB body signed as Standard Webhooks streams through the ingress into the
//! store without the ingress ever holding it, its record in Kafka carries the reference, the
//! worker delivers the whole body signed to a subscriber, and `spillway objects sweep` removes
//! an object no record refers to and keeps the one that is. With the default limits, bodies of
//! 500 KiB (inline), 700 KiB (stored, under Kafka's record limit) and 10 MiB (stored, over it)
//! all arrive whole. Both keep the ingress's peak memory within the bound docs/fleet.md gives.

use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use spillway_core::{headers, ObjectRef};
use spillway_objects::{Objects, ObjectsConfig};
use spillway_signature::{Scheme, SecretRing, Verifier};
use spillway_testkit::spillway::{
    inbox_subscription, spillway_bin, worker_setup, Setup, TestSource, ACME_OLD_SECRET,
};
use spillway_testkit::{
    kafka_brokers, local_s3_options, proc_status_bytes, read_topic, Client, Received,
    TestSubscriber, Wait,
};

const SIZE: usize = 100 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// docs/fleet.md's bound: a streamed body raises the ingress's peak resident memory by at most
/// what it may charge to the body budget (three parts of the default `objects.part_bytes`) and
/// 16 MiB for the store client's buffers and the allocator, whatever its size. (Measured in a
/// debug build: +8 MiB for 10 MiB, +16 MiB for 100 MiB; only the 100 MiB body could not stay
/// within it if it were held.)
fn assert_within_bound(idle: u64, peak: u64) {
    let bound = ObjectsConfig::new("s3://bucket/prefix").upload_bytes() + 16 * MIB;
    assert!(
        peak.saturating_sub(idle) < bound,
        "the ingress's peak grew from {} to {} MiB, more than the documented {} MiB",
        idle / MIB,
        peak / MIB,
        bound / MIB
    );
}

fn sweep(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(spillway_bin())
        .args(["--log-format", "text", "objects", "sweep", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("spillway runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the delivery's signature as the subscriber would, with the inbox's secret.
fn verify_delivery(delivered: &Received) {
    let key = Scheme::standard_webhooks()
        .decode_secret(ACME_OLD_SECRET)
        .expect("key");
    let ring = SecretRing::new(vec![spillway_signature::Secret {
        id: "s".into(),
        key,
        not_after: None,
    }]);
    Verifier::new(Scheme::standard_webhooks(), ring, Duration::from_secs(300))
        .verify(&delivered.headers, &delivered.body, SystemTime::now())
        .expect("the subscriber verifies the delivery");
}

/// A source signed as Standard Webhooks, as a device sending large captures would be.
fn streaming_source(name: &'static str) -> TestSource {
    TestSource {
        name,
        scheme: Scheme::standard_webhooks(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
}

/// A worker setup for `source` with objects in the local S3 server under a prefix of the
/// test's own (returned), one inbox subscription at `subscriber` and `extra` merged into the
/// config's top level. The source takes its event type from nowhere: the Standard Webhooks
/// preset reads it from the body, and a body read from cannot stream.
async fn stored_setup(
    source: &TestSource,
    subscriber: &TestSubscriber,
    extra: serde_json::Value,
) -> (Setup, String) {
    let url = subscriber.url("/inbox");
    let mut prefix = String::new();
    let setup = worker_setup(source, |dir| {
        let mut inbox = inbox_subscription(dir, &url);
        inbox["timeout"] = json!("60s");
        // The test's own directory name keeps its objects apart from other runs'.
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("e2e");
        prefix = format!("s3://spillway/{}", name.trim_start_matches('.'));
        let mut config = json!({
            "objects": { "url": prefix, "options": local_s3_options() },
            "subscriptions": [inbox],
            "kafka": { "delivery_timeout": "2s" },
            "worker": { "max_subscription_timeout": "60s" },
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        config["sources"][source.name]["event_type"] = json!({ "from": "none" });
        config
    })
    .await;
    (setup, prefix)
}

/// Removes what a test left under `prefix`, so that runs do not fill the local store's disk.
async fn remove_all(prefix: &str) {
    let objects = Objects::open(&ObjectsConfig {
        options: local_s3_options(),
        ..ObjectsConfig::new(prefix)
    })
    .expect("store");
    for object in objects.list().await.expect("list") {
        objects.delete_uri(&object.uri).await.expect("delete");
    }
}

/// `body` as the subscriber received it, once delivered.
async fn delivered(subscriber: &TestSubscriber, body: &[u8], log: impl Fn() -> String) -> Received {
    Wait::new()
        .every(Duration::from_millis(200))
        .poll(async || {
            subscriber
                .received()
                .into_iter()
                .find(|r| r.answered == Some(200) && r.body == body)
        })
        .await
        .unwrap_or_else(|_| panic!("not delivered: {}", log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_body_streams_to_the_store_and_reaches_its_subscriber_whole() {
    let source = streaming_source("waveforms");
    let subscriber = TestSubscriber::ok().await;
    let (setup, prefix) = stored_setup(
        &source,
        &subscriber,
        json!({
            // The body budget could hold the body (a compressed one is read whole); the
            // peak memory below shows this one was not.
            "ingress": { "max_body_memory": 134217728, "body_read_timeout": "120s" },
            "sources": { "waveforms": { "max_body_bytes": SIZE } },
        }),
    )
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let worker = setup.spawn_worker("worker");

    let idle = proc_status_bytes(ingress.pid(), "VmHWM");
    let body: Bytes = (0..SIZE)
        .map(|i| b'a' + (i % 23) as u8)
        .collect::<Vec<u8>>()
        .into();
    let reply = Client::http1()
        .post(
            &ingress.hook_url("waveforms"),
            &source.sign("wave-1", &body, 0),
            body.clone(),
        )
        .await
        .expect("answer");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    assert_within_bound(idle, proc_status_bytes(ingress.pid(), "VmHWM"));

    let records = read_topic(&kafka_brokers(), &setup.topic("waveforms")).await;
    assert_eq!(records.len(), 1);
    assert!(records[0].value.is_empty(), "the body is not in Kafka");
    let reference = ObjectRef::from_headers(|name| records[0].header(name)).expect("a reference");
    assert_eq!(reference.size, SIZE as u64);
    assert_eq!(reference.sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(records[0].header(headers::DEDUPE_KEY), Some("wave-1"));

    let delivered = delivered(&subscriber, &body, || worker.log_text()).await;
    verify_delivery(&delivered);

    // An object no record refers to (a request cut off between the store and Kafka).
    let objects = Objects::open(&ObjectsConfig {
        options: local_s3_options(),
        ..ObjectsConfig::new(prefix.clone())
    })
    .expect("store");
    let mut orphan = objects.writer("waveforms/orphan", None).await.expect("put");
    orphan
        .write(Bytes::from_static(b"lost"))
        .await
        .expect("put");
    let orphan = orphan.finish().await.expect("put");
    let config = setup.config.clone();
    // Past the grace period (more than kafka.delivery_timeout) it shows as an orphan.
    let listed = Wait::new()
        .every(Duration::from_millis(500))
        .poll(async || {
            let out = sweep(&config, &["--older-than", "3s", "--dry-run"]);
            out.contains(&format!("would remove {}", orphan.uri))
                .then_some(out)
        })
        .await
        .expect("the orphan is found");
    assert!(!listed.contains(&reference.uri), "{listed}");
    let out = sweep(&config, &["--older-than", "3s"]);
    assert!(out.contains(&format!("removed {}", orphan.uri)), "{out}");
    let left: Vec<String> = objects
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.uri)
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&reference.uri),
        "the referenced body stays"
    );
    remove_all(&prefix).await;
}

/// The defaults around the two limits that matter, against the real broker: 512 KiB inline,
/// Kafka's record limit of about 1 MB, and 10 MiB the largest body. A 500 KiB body stays in its
/// record; 700 KiB (over the inline limit, under Kafka's) and 10 MiB (ten times Kafka's) are
/// stored. All three reach the subscriber byte-exact, and the ingress stays within the bound
/// docs/fleet.md gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_on_each_side_of_the_inline_and_record_limits_arrive_whole() {
    let source = streaming_source("captures");
    let subscriber = TestSubscriber::ok().await;
    let (setup, prefix) = stored_setup(&source, &subscriber, json!({})).await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let worker = setup.spawn_worker("worker");

    let cases = [
        ("inline", 500 * 1024, false),
        ("between", 700 * 1024, true),
        ("large", 10 * 1024 * 1024, true),
    ];
    let mut bodies = Vec::new();
    let idle = proc_status_bytes(ingress.pid(), "VmHWM");
    for (id, size, _) in cases {
        let body: Bytes = (0..size)
            .map(|i| b'A' + ((i + size) % 26) as u8)
            .collect::<Vec<u8>>()
            .into();
        let reply = Client::http1()
            .post(
                &ingress.hook_url("captures"),
                &source.sign(id, &body, 0),
                body.clone(),
            )
            .await
            .expect("answer");
        assert_eq!(reply.status, 202, "{id}: {:?}", reply.json());
        bodies.push(body);
    }
    assert_within_bound(idle, proc_status_bytes(ingress.pid(), "VmHWM"));

    let records = read_topic(&kafka_brokers(), &setup.topic("captures")).await;
    assert_eq!(records.len(), cases.len());
    for ((id, _, stored), body) in cases.iter().zip(&bodies) {
        let record = records
            .iter()
            .find(|r| r.header(headers::DEDUPE_KEY) == Some(*id))
            .unwrap_or_else(|| panic!("{id} is in Kafka"));
        let reference = ObjectRef::from_headers(|name| record.header(name));
        if *stored {
            let reference = reference.expect("a reference");
            assert!(record.value.is_empty(), "{id}: the body is not in Kafka");
            assert_eq!(reference.size, body.len() as u64, "{id}");
            assert_eq!(reference.sha256, hex::encode(Sha256::digest(body)), "{id}");
        } else {
            assert!(reference.is_none(), "{id} stays in its record");
            assert!(record.value == *body, "{id}: the record holds the body");
        }
        verify_delivery(&delivered(&subscriber, body, || worker.log_text()).await);
    }
    remove_all(&prefix).await;
}
