//! Spillway as the end-to-end and fault tests run it: one test source per signature scheme,
//! requests signed as each provider signs them, a config per test (a [`ConfigDoc`] written
//! beside its secret files in a temporary directory, on its own topics and Redis key prefix),
//! and `spillway ingress` and `spillway worker` processes started on it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Value};
use spillway_signature::{sign, unix_seconds, Algorithm, Field, Scheme, Template, TimestampFormat};

use crate::{Client, ConfigDoc, IngressProcess, Reply, WorkerProcess};

/// The `spillway` binary under test.
///
/// Cargo and nextest set `CARGO_BIN_EXE_spillway` for the `spillway` package's integration
/// tests at run time too, not only for `env!`; a test binary run by hand finds the binary in
/// its profile directory (`target/debug/deps/e2e-…` beside `target/debug/spillway`).
pub fn spillway_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_spillway") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("spillway"))
        .filter(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no spillway binary beside {}: run the tests with cargo or nextest",
                exe.display()
            )
        })
}

/// A test source: its name, scheme and the secret text as the provider shows it.
#[derive(Debug, Clone)]
pub struct TestSource {
    pub name: &'static str,
    pub scheme: Scheme,
    pub secret: &'static str,
}

impl TestSource {
    /// The signing key, decoded from the secret text as the scheme says.
    pub fn key(&self) -> Vec<u8> {
        self.scheme.decode_secret(self.secret).expect("secret")
    }

    /// Headers of a request signed as the provider would, `age` seconds ago.
    pub fn sign(&self, id: &str, body: &[u8], age: i64) -> Vec<(String, String)> {
        self.sign_with(&self.key(), id, body, age)
    }

    /// Headers of a request signed with `key`, `age` seconds ago.
    pub fn sign_with(&self, key: &[u8], id: &str, body: &[u8], age: i64) -> Vec<(String, String)> {
        let ts = unix_seconds(SystemTime::now()) - age;
        let mut headers = sign(&self.scheme, key, id, ts, body).expect("an HMAC test scheme");
        headers.push(("content-type".into(), "application/json".into()));
        headers
    }

    /// True when the scheme signs a timestamp, so that a stale request can be made.
    pub fn has_timestamp(&self) -> bool {
        self.scheme.signs_timestamp()
    }

    /// The source's `verify` section.
    fn verify(&self) -> Value {
        match self.scheme {
            // The only generic scheme of the tests: the meters' (see [`meter_scheme`]).
            ref generic if generic.name() == "hmac" => json!({
                "scheme": "hmac",
                "header": "x-meter-signature",
                "prefix": "v1=",
                "encoding": "hex",
                "template": "{id}:{timestamp}:{body}",
                "id_header": "x-meter-reading-id",
                "timestamp_header": "x-meter-time",
            }),
            ref other => json!({ "scheme": other.name() }),
        }
    }
}

/// The smart meters' generic HMAC scheme.
pub fn meter_scheme() -> Scheme {
    Scheme::new("hmac", Algorithm::HmacSha256, "x-meter-signature")
        .prefix("v1=")
        .id(Field::Header("x-meter-reading-id".into()))
        .timestamp(
            Field::Header("x-meter-time".into()),
            TimestampFormat::Seconds,
        )
        .template(Template::parse("{id}:{timestamp}:{body}").expect("template"))
}

/// The catalogue's scheme of `preset`.
pub fn preset_scheme(preset: &str) -> Scheme {
    spillway_providers::find(preset)
        .unwrap_or_else(|| panic!("no preset {preset}"))
        .scheme
        .clone()
}

/// One source per scheme.
pub fn all_sources() -> Vec<TestSource> {
    vec![
        TestSource {
            name: "github",
            scheme: preset_scheme("github"),
            secret: "gh-test-secret",
        },
        TestSource {
            name: "stripe",
            scheme: preset_scheme("stripe"),
            secret: "whsec_stripe_test",
        },
        TestSource {
            name: "shopify",
            scheme: preset_scheme("shopify"),
            secret: "shpss_test",
        },
        TestSource {
            name: "slack",
            scheme: preset_scheme("slack"),
            secret: "slack-signing-secret",
        },
        TestSource {
            name: "acme",
            scheme: preset_scheme("standard-webhooks"),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
        TestSource {
            name: "meters",
            scheme: meter_scheme(),
            secret: "meter-fleet-key",
        },
    ]
}

/// The test source of that name.
pub fn source(name: &str) -> TestSource {
    all_sources()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no test source {name}"))
}

/// The second secret of the `acme` source (a rotation in progress); subscriptions sign with
/// it too.
pub const ACME_OLD_SECRET: &str = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2";

/// A JSON event body: `/id` for Stripe's dedupe key, `/device` for the meters' partition key.
pub fn event_body(id: &str, n: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","type":"test.event","device":"meter-{}","n":{n},"pad":"{}"}}"#,
        n % 7,
        "x".repeat(n % 300)
    ))
}

/// Signs and posts one event (`event_body(id, n)`) to `source` on `ingress`.
pub async fn post_event(
    client: &Client,
    ingress: &IngressProcess,
    source: &TestSource,
    id: &str,
    n: usize,
) -> Reply {
    let body = event_body(id, n);
    client
        .post(
            &ingress.hook_url(source.name),
            &source.sign(id, &body, 0),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("POST to {}: {e}", source.name))
}

/// A test's directory (config file, secret files, logs) and its config. The file is rewritten
/// whenever the config is changed through [`Setup::set`] or [`Setup::merge`].
#[derive(Debug)]
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// The config file the processes read.
    pub config: PathBuf,
    pub brokers: String,
    /// The prefix of this test's topics, which is its Redis key prefix too.
    pub topic_prefix: String,
    doc: ConfigDoc,
}

impl Setup {
    /// The topic of a source.
    pub fn topic(&self, source: &str) -> String {
        format!("{}{source}", self.topic_prefix)
    }

    /// The config as data.
    pub fn doc(&self) -> &ConfigDoc {
        &self.doc
    }

    /// Sets one value of the config (see [`ConfigDoc::set`]) and rewrites the file.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) -> &mut Self {
        self.doc.set(path, value);
        self.doc.write(&self.config);
        self
    }

    /// Merges a patch into the config (see [`ConfigDoc::merge`]) and rewrites the file.
    pub fn merge(&mut self, patch: Value) -> &mut Self {
        self.doc.merge(patch);
        self.doc.write(&self.config);
        self
    }

    /// The config file loaded as the processes load it.
    pub fn load(&self) -> spillway_config::Config {
        spillway_config::load(&self.config)
            .unwrap_or_else(|e| panic!("invalid test config ({e}):\n{}", self.doc.to_yaml()))
    }

    /// Creates every source topic of the config and, when it has a worker section, the
    /// worker's own topics (retry tiers, dead letters, the registry). Only then: tansu's memory
    /// storage slows down with every topic it holds, and the ingress-only tests are many.
    pub async fn create_topics(&self) {
        let config = self.load();
        let mut topics = config.topics();
        if self.doc.get("worker").is_some() {
            topics.extend(spillway_worker::topics::worker_topics(&config));
        }
        crate::create_topics(&self.brokers, &topics).await;
    }

    /// Starts `spillway ingress` on the config, logging to `<name>.log`.
    pub fn spawn_ingress(&self, name: &str) -> IngressProcess {
        IngressProcess::spawn(&spillway_bin(), &self.config, &[], self.log(name))
    }

    /// Starts `spillway worker` on the config, logging to `<name>.log`.
    pub fn spawn_worker(&self, name: &str) -> WorkerProcess {
        WorkerProcess::spawn(&spillway_bin(), &self.config, self.log(name))
    }

    /// Starts `spillway console` on the config, logging to `<name>.log`.
    pub fn spawn_console(&self, name: &str) -> crate::ConsoleProcess {
        crate::ConsoleProcess::spawn(&spillway_bin(), &self.config, self.log(name))
    }

    /// Where the process `name` logs.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}

/// Writes a config listening on port 0 with the given sources, their secrets in files beside
/// it (`<source>.secret`), then `patch` merged in (`json!({})` for none). No topic is created.
pub fn setup(brokers: &str, redis: &[String], sources: &[TestSource], patch: Value) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic_prefix = format!("{}.", crate::unique("e2e."));
    let write = |name: &str, text: &str| -> String {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("secret file");
        file.display().to_string()
    };
    let mut doc = ConfigDoc::new(json!({
        "ingress": { "listen": "127.0.0.1:0" },
        "admin": { "listen": "127.0.0.1:0" },
        "kafka": {
            "brokers": brokers,
            "topic_prefix": topic_prefix,
            // tansu 0.6 has no KIP-360 epoch bump (docs/development.md).
            "recreate_producer_on_timeout": true,
        },
        "redis": { "nodes": redis, "key_prefix": topic_prefix },
        "sources": {},
    }));
    for s in sources {
        let file = write(&format!("{}.secret", s.name), &format!("{}\n", s.secret));
        let path = format!("sources.{}", s.name);
        doc.set(&path, json!({ "verify": s.verify() })).push(
            &format!("{path}.secrets"),
            json!({ "id": format!("{}-current", s.name), "file": file }),
        );
        match s.name {
            "acme" => {
                let old = write("acme-old.secret", ACME_OLD_SECRET);
                doc.push(
                    &format!("{path}.secrets"),
                    json!({ "id": "acme-old", "file": old }),
                );
            }
            "meters" => {
                doc.set(
                    &format!("{path}.partition_key"),
                    json!({ "from": "json_pointer", "pointer": "/device" }),
                );
            }
            // A source fed by another webhook system: only the hop limit stops a loop.
            "relay" => {
                doc.set(&format!("{path}.dedupe"), json!({ "from": "none" }));
            }
            _ => {}
        }
    }
    doc.merge(patch);
    let config = dir.path().join("spillway.yaml");
    doc.write(&config);
    Setup {
        dir,
        config,
        brokers: brokers.to_owned(),
        topic_prefix,
        doc,
    }
}

/// A setup of `sources` on the shared local stack with `patch` merged in, its topics created,
/// and one ingress started on it and ready.
pub async fn ready_ingress(sources: &[TestSource], patch: Value) -> (Setup, IngressProcess) {
    let setup = setup(
        &crate::kafka_brokers(),
        &crate::redis_nodes(),
        sources,
        patch,
    );
    setup.create_topics().await;
    let ingress = setup.spawn_ingress("ingress");
    ingress.wait_ready().await;
    (setup, ingress)
}

/// A setup for ingress and worker processes on the shared local stack: one source, a worker
/// section (admin port 0, its own group, loopback subscribers allowed), then what `patch`
/// returns for the setup's directory merged in (it may write files there), and every topic
/// created.
pub async fn worker_setup(source: &TestSource, patch: impl FnOnce(&Path) -> Value) -> Setup {
    worker_setup_on(
        &crate::kafka_brokers(),
        &crate::redis_nodes(),
        std::slice::from_ref(source),
        patch,
    )
    .await
}

/// [`worker_setup`] with any sources, on the given Kafka and Redis.
pub async fn worker_setup_on(
    brokers: &str,
    redis: &[String],
    sources: &[TestSource],
    patch: impl FnOnce(&Path) -> Value,
) -> Setup {
    let mut setup = setup(brokers, redis, sources, json!({}));
    let worker = json!({
        "worker": {
            "admin_listen": "127.0.0.1:0",
            "group_id": format!("{}workers", setup.topic_prefix),
            "allow_cidrs": ["127.0.0.0/8"],
        }
    });
    let patch = patch(setup.dir.path());
    setup.merge(worker).merge(patch);
    setup.create_topics().await;
    setup
}

/// A subscription `id` delivering every source to `url`, signed with [`ACME_OLD_SECRET`]
/// from `subscriber.secret` in `dir` (written here).
pub fn subscription(dir: &Path, id: &str, url: &str) -> Value {
    let secret = dir.join("subscriber.secret");
    std::fs::write(&secret, ACME_OLD_SECRET).expect("secret");
    json!({
        "id": id,
        "url": url,
        "secrets": [{ "id": "s", "file": secret.display().to_string() }],
    })
}

/// The subscription `inbox` delivering every source to `url`.
pub fn inbox_subscription(dir: &Path, url: &str) -> Value {
    subscription(dir, "inbox", url)
}

/// Worker settings for tests that kill a worker: a killed member holds its partitions until
/// its session times out (45 s by default), 6 s here; a stopped one drains for 3 s at most.
pub fn quick_failover() -> Value {
    json!({
        "worker": {
            "drain_timeout": "3s",
            "consumer_properties": {
                "session.timeout.ms": "6000",
                "heartbeat.interval.ms": "1000",
            },
        }
    })
}
