//! A worker under test: a config with its own topics and consumer group, records produced the
//! way the ingress writes them, and a way to wait for what subscribers received.

use std::time::{Duration, Instant};

use bytes::Bytes;
use spillway_config::Config;
use spillway_core::{trace, Envelope, EventId};
use spillway_kafka::{EventProducer, ProducerSettings};
use spillway_testkit::{kafka_brokers, unique, TestSubscriber};

pub const PATIENCE: Duration = Duration::from_secs(60);
pub const SUB_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Rig {
    _dir: tempfile::TempDir,
    pub config: Config,
    pub producer: EventProducer,
}

/// `subscriptions`: (id, url, extra YAML lines); `worker`: YAML lines of the worker section.
pub async fn rig(subscriptions: &[(&str, String, &str)], worker: &str) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gh"), "gh-secret").expect("secret");
    std::fs::write(dir.path().join("sub"), SUB_SECRET).expect("secret");
    let prefix = format!("{}.", unique("it.worker."));
    let mut yaml = format!(
        "kafka: {{ brokers: \"{}\", topic_prefix: \"{prefix}\", partitions: 3 }}\n\
         sources:\n  github:\n    verify: {{ scheme: github }}\n    dedupe: {{ from: none }}\n    \
         secrets: [{{ id: k, file: \"{}\" }}]\n\
         worker:\n  group_id: \"{prefix}workers\"\n  allow_cidrs: [127.0.0.0/8]\n{worker}\
         subscriptions:\n",
        kafka_brokers(),
        dir.path().join("gh").display()
    );
    for (id, url, extra) in subscriptions {
        yaml.push_str(&format!(
            "  - id: {id}\n    url: \"{url}\"\n    secrets: [{{ id: s, file: \"{}\" }}]\n",
            dir.path().join("sub").display()
        ));
        if !extra.contains("timeout:") {
            yaml.push_str("    timeout: 2s\n");
        }
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            yaml.push_str(&format!("    {}\n", line.trim()));
        }
    }
    let path = dir.path().join("spillway.yaml");
    std::fs::write(&path, yaml).expect("config");
    let config = spillway_config::load(&path).expect("valid config");
    let mut topics = config.topics();
    topics.extend(spillway_worker::topics::worker_topics(&config));
    spillway_testkit::create_topics(&config.kafka.brokers, &topics).await;
    let producer = EventProducer::new(&ProducerSettings {
        brokers: config.kafka.brokers.clone(),
        delivery_timeout: Duration::from_secs(10),
        linger: Duration::from_millis(2),
        max_queued_messages: 10_000,
        properties: Default::default(),
        recreate_on_timeout: true,
    })
    .expect("producer");
    Rig {
        _dir: dir,
        config,
        producer,
    }
}

impl Rig {
    /// Writes a GitHub event as the ingress would: `key` is the record key, `seq` goes in the body.
    pub async fn publish(&self, key: &str, seq: usize, event_type: &str) -> String {
        let id = EventId::new_v4();
        let envelope = Envelope {
            id,
            source: "github".into(),
            received_at_ms: 0,
            dedupe_key: None,
            scheme: "github".into(),
            key_id: Some("k".into()),
            device_id: None,
            content_type: Some("application/json".into()),
            traceparent: trace::new_traceparent(),
            forwarded: vec![("x-github-event".into(), Bytes::from(event_type.to_owned()))],
            record_key: Some(key.to_owned()),
            hops: 0,
            body: Bytes::from(format!(r#"{{"key":"{key}","seq":{seq}}}"#)),
        };
        self.producer
            .send(
                &format!("{}github", self.config.kafka.topic_prefix),
                &envelope,
            )
            .await
            .expect("produce");
        id.to_string()
    }

    /// Runs a worker until the returned sender is dropped or fired.
    pub fn start_worker(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (stop, task, _) = self.start_worker_with_admin();
        (stop, task)
    }

    /// Runs a worker with its admin listener on a free port, whose address is returned.
    pub fn start_worker_with_admin(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
        std::net::SocketAddr,
    ) {
        let worker = spillway_worker::Worker::from_config(&self.config).expect("worker");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let admin = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run(admin, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("worker run");
        });
        (stop, task, addr)
    }
}

/// Waits until `done` holds (a guard against hangs, not a speed check).
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The JSON body fields of what a subscriber received: (key, seq) in arrival order.
pub fn keys_and_seqs(subscriber: &TestSubscriber) -> Vec<(String, u64)> {
    subscriber
        .received()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            (
                v["key"].as_str().expect("key").to_owned(),
                v["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}
