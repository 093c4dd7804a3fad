//! A worker under test: a config with its own topics and consumer group, records produced the
//! way the ingress writes them, and what subscribers received, by key and sequence. Waits are
//! testkit's (`spillway_testkit::eventually`), within its one patience.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use spillway_config::Config;
use spillway_core::{trace, Envelope, EventId};
use spillway_kafka::{EventProducer, ProducerSettings};
use spillway_testkit::config_doc::merge;
use spillway_testkit::{kafka_brokers, unique, ConfigDoc, TestSubscriber};

pub const SUB_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Rig {
    _dir: tempfile::TempDir,
    pub config: Config,
    pub producer: EventProducer,
}

/// `subscriptions`: (id, url, settings merged into the subscription, `json!({})` for none);
/// `worker`: settings merged into the worker section.
pub async fn rig(subscriptions: &[(&str, String, Value)], worker: Value) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("secret");
        path.display().to_string()
    };
    let (gh, sub) = (file("gh", "gh-secret"), file("sub", SUB_SECRET));
    let prefix = format!("{}.", unique("it.worker."));
    let mut doc = ConfigDoc::new(json!({
        "kafka": { "brokers": kafka_brokers(), "topic_prefix": prefix, "partitions": 3 },
        "sources": {
            "github": {
                "verify": { "scheme": "github" },
                "dedupe": { "from": "none" },
                "secrets": [{ "id": "k", "file": gh }],
            }
        },
        "worker": { "group_id": format!("{prefix}workers"), "allow_cidrs": ["127.0.0.0/8"] },
        "subscriptions": [],
    }));
    doc.merge(json!({ "worker": worker }));
    for (id, url, settings) in subscriptions {
        let mut subscription = json!({
            "id": id,
            "url": url,
            "secrets": [{ "id": "s", "file": sub }],
            "timeout": "2s",
        });
        merge(&mut subscription, settings.clone());
        doc.push("subscriptions", subscription);
    }
    let path = dir.path().join("spillway.yaml");
    doc.write(&path);
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
            batch: None,
            invalid: None,
            stored: None,
            event_type: None,
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

impl Rig {
    /// The workers' committed offsets of `topic`, summed over its partitions.
    pub fn committed(&self, topic: &str) -> i64 {
        spillway_kafka::reader::committed_total(
            &spillway_kafka::Connection::plain(&self.config.kafka.brokers),
            &self.config.worker.group_id,
            topic,
            self.config.kafka.partitions,
            Duration::from_secs(5),
        )
        .unwrap_or(0)
    }
}

/// The JSON body fields of what a subscriber received: (key, seq) in arrival order.
pub fn keys_and_seqs(subscriber: &TestSubscriber) -> Vec<(String, u64)> {
    subscriber
        .received()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            (
                v["key"].as_str().expect("key").to_owned(),
                v["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}
