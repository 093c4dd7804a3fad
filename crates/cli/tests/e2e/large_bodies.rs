//! Large bodies by reference across processes, on the real stack with the local S3 server
//! (s3s-fs): a 100 MiB body signed as Standard Webhooks streams through the ingress into the
//! store without the ingress ever holding it, its record in Kafka carries the reference, the
//! worker delivers the whole body signed to a subscriber, and `spillway objects sweep` removes
//! an object no record refers to and keeps the one that is.

use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use spillway_core::{headers, ObjectRef};
use spillway_objects::{Objects, ObjectsConfig};
use spillway_signature::{Scheme, SecretRing, Verifier};
use spillway_testkit::spillway::{
    inbox_subscription, spillway_bin, worker_setup, TestSource, ACME_OLD_SECRET,
};
use spillway_testkit::{
    kafka_brokers, local_s3_options, proc_status_bytes, read_topic, Client, TestSubscriber, Wait,
};

const SIZE: usize = 100 * 1024 * 1024;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_body_streams_to_the_store_and_reaches_its_subscriber_whole() {
    let source = TestSource {
        name: "waveforms",
        scheme: Scheme::standard_webhooks(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };
    let subscriber = TestSubscriber::ok().await;
    let url = subscriber.url("/inbox");
    let mut prefix = String::new();
    let setup = worker_setup(&source, |dir| {
        let mut inbox = inbox_subscription(dir, &url);
        inbox["timeout"] = json!("60s");
        // The test's own directory name keeps its objects apart from other runs'.
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("e2e");
        prefix = format!("s3://spillway/{}", name.trim_start_matches('.'));
        json!({
            "objects": { "url": prefix, "options": local_s3_options() },
            "subscriptions": [inbox],
            // The body budget could hold the body (a compressed one is read whole); the
            // peak memory below shows this one was not.
            "ingress": { "max_body_memory": 134217728, "body_read_timeout": "120s" },
            "kafka": { "delivery_timeout": "2s" },
            "worker": { "max_subscription_timeout": "60s" },
            // Keyed and typed from headers only (the Standard Webhooks preset reads its type
            // from the body), so that the body can stream.
            "sources": { "waveforms": { "max_body_bytes": SIZE, "event_type": { "from": "none" } } },
        })
    })
    .await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    let worker = setup.spawn_worker("worker");

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
    let peak = proc_status_bytes(ingress.pid(), "VmHWM");
    assert!(
        peak < 96 * 1024 * 1024,
        "the ingress peaked at {} MiB: it held the body",
        peak / (1024 * 1024)
    );

    let records = read_topic(&kafka_brokers(), &setup.topic("waveforms")).await;
    assert_eq!(records.len(), 1);
    assert!(records[0].value.is_empty(), "the body is not in Kafka");
    let reference = ObjectRef::from_headers(|name| records[0].header(name)).expect("a reference");
    assert_eq!(reference.size, SIZE as u64);
    assert_eq!(reference.sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(records[0].header(headers::DEDUPE_KEY), Some("wave-1"));

    let delivered = Wait::new()
        .every(Duration::from_millis(200))
        .poll(async || {
            subscriber
                .received()
                .into_iter()
                .find(|r| r.answered == Some(200))
        })
        .await
        .unwrap_or_else(|_| panic!("not delivered: {}", worker.log_text()));
    assert!(delivered.body == body, "the whole body, as sent");
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

    // An object no record refers to (a request cut off between the store and Kafka).
    let objects = Objects::open(&ObjectsConfig {
        options: local_s3_options(),
        ..ObjectsConfig::new(prefix)
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
}
