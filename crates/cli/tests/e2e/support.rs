//! Configs, signed requests and process start-up shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use spillway_signature::{sign, unix_seconds, Encoding, GenericHmac, Scheme, Template};
use spillway_testkit::{Client, IngressProcess, Reply};

pub const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// A test source: its name, scheme and the secret text as the provider shows it.
#[derive(Debug, Clone)]
pub struct TestSource {
    pub name: &'static str,
    pub scheme: Scheme,
    pub secret: &'static str,
}

impl TestSource {
    pub fn key(&self) -> Vec<u8> {
        self.scheme.decode_secret(self.secret).expect("secret")
    }

    /// Headers of a request signed as the provider would, `age` seconds ago.
    pub fn sign(&self, id: &str, body: &[u8], age: i64) -> Vec<(String, String)> {
        self.sign_with(&self.key(), id, body, age)
    }

    pub fn sign_with(&self, key: &[u8], id: &str, body: &[u8], age: i64) -> Vec<(String, String)> {
        let ts = unix_seconds(SystemTime::now()) - age;
        let mut headers = sign(&self.scheme, key, id, ts, body);
        headers.push(("content-type".into(), "application/json".into()));
        headers
    }

    pub fn has_timestamp(&self) -> bool {
        matches!(
            self.scheme,
            Scheme::StandardWebhooks | Scheme::Stripe | Scheme::Slack | Scheme::Generic(_)
        )
    }
}

pub fn meter_scheme() -> Scheme {
    Scheme::Generic(GenericHmac {
        signature_header: "x-meter-signature".into(),
        prefix: "v1=".into(),
        encoding: Encoding::Hex,
        template: Template::parse("{id}:{timestamp}:{body}").expect("template"),
        id_header: Some("x-meter-reading-id".into()),
        timestamp_header: Some("x-meter-time".into()),
    })
}

/// One source per scheme.
pub fn all_sources() -> Vec<TestSource> {
    vec![
        TestSource {
            name: "github",
            scheme: Scheme::Github,
            secret: "gh-test-secret",
        },
        TestSource {
            name: "stripe",
            scheme: Scheme::Stripe,
            secret: "whsec_stripe_test",
        },
        TestSource {
            name: "shopify",
            scheme: Scheme::Shopify,
            secret: "shpss_test",
        },
        TestSource {
            name: "slack",
            scheme: Scheme::Slack,
            secret: "slack-signing-secret",
        },
        TestSource {
            name: "acme",
            scheme: Scheme::StandardWebhooks,
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

/// The second secret of the `acme` source (a rotation in progress).
pub const ACME_OLD_SECRET: &str = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2";

/// The YAML `verify:` block of a scheme.
fn verify_yaml(scheme: &Scheme) -> String {
    match scheme {
        Scheme::Generic(_) => "{ scheme: hmac, header: x-meter-signature, prefix: \"v1=\", encoding: hex, \
             template: \"{id}:{timestamp}:{body}\", id_header: x-meter-reading-id, timestamp_header: x-meter-time }"
            .into(),
        other => format!("{{ scheme: {} }}", other.name()),
    }
}

/// A test's config directory: config file, secret files, logs.
#[derive(Debug)]
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub brokers: String,
    pub topic_prefix: String,
}

impl Setup {
    pub fn topic(&self, source: &str) -> String {
        format!("{}{source}", self.topic_prefix)
    }

    /// Adds `key: value` to source `source` of the config file.
    pub fn set_source_option(&self, source: &str, key: &str, value: &str) {
        let yaml = std::fs::read_to_string(&self.config).expect("config");
        let heading = format!("  {source}:\n");
        assert!(yaml.contains(&heading), "no source {source}");
        let yaml = yaml.replacen(&heading, &format!("{heading}    {key}: {value}\n"), 1);
        std::fs::write(&self.config, yaml).expect("config");
    }

    pub fn spawn(&self, name: &str) -> IngressProcess {
        IngressProcess::spawn(
            Path::new(BIN),
            &self.config,
            &[],
            self.dir.path().join(format!("{name}.log")),
        )
    }
}

/// Writes a config listening on port 0 with the given sources, secrets in files beside it.
/// `ingress_extra` and `kafka_extra` are indented YAML lines added to those sections.
pub fn setup(
    brokers: &str,
    redis: &[String],
    sources: &[TestSource],
    ingress_extra: &str,
    kafka_extra: &str,
) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic_prefix = spillway_testkit::unique("e2e.");
    let topic_prefix = format!("{topic_prefix}.");
    let mut yaml = format!(
        "ingress:\n  listen: 127.0.0.1:0\n{ingress_extra}admin:\n  listen: 127.0.0.1:0\n\
         kafka:\n  brokers: \"{brokers}\"\n  topic_prefix: \"{topic_prefix}\"\n{kafka_extra}\
         redis:\n  nodes: [{}]\n  key_prefix: \"{topic_prefix}\"\nsources:\n",
        redis.join(", ")
    );
    for s in sources {
        let secret_file = dir.path().join(format!("{}.secret", s.name));
        std::fs::write(&secret_file, format!("{}\n", s.secret)).expect("secret file");
        yaml.push_str(&format!(
            "  {}:\n    verify: {}\n    secrets:\n      - {{ id: {}-current, file: \"{}\" }}\n",
            s.name,
            verify_yaml(&s.scheme),
            s.name,
            secret_file.display()
        ));
        if s.name == "acme" {
            let old = dir.path().join("acme-old.secret");
            std::fs::write(&old, ACME_OLD_SECRET).expect("secret file");
            yaml.push_str(&format!(
                "      - {{ id: acme-old, file: \"{}\" }}\n",
                old.display()
            ));
        }
        if s.name == "meters" {
            yaml.push_str("    partition_key: { from: json_pointer, pointer: /device }\n");
        }
        if s.name == "relay" {
            // A source fed by another webhook system: only the hop limit stops a loop.
            yaml.push_str("    dedupe: { from: none }\n");
        }
    }
    let config = dir.path().join("spillway.yaml");
    std::fs::write(&config, &yaml).expect("config");
    Setup {
        dir,
        config,
        brokers: brokers.to_owned(),
        topic_prefix,
    }
}

/// A JSON event body: `/id` for Stripe's dedupe key, `/device` for the meters' partition key.
pub fn event_body(id: &str, n: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","type":"test.event","device":"meter-{}","n":{n},"pad":"{}"}}"#,
        n % 7,
        "x".repeat(n % 300)
    ))
}

/// Creates the topics of every source of a setup.
pub async fn create_topics(setup: &Setup, sources: &[TestSource]) {
    let topics: Vec<String> = sources.iter().map(|s| setup.topic(s.name)).collect();
    spillway_testkit::create_topics(&setup.brokers, &topics).await;
}

/// A setup for ingress and worker processes: one source on the local stack, a worker
/// section (admin port 0, its own group, loopback subscribers allowed) plus what
/// `worker_extra` returns for the setup's directory (indented YAML lines, maybe subscriptions
/// after them; it may write files there), and every topic created.
pub async fn worker_setup(
    source: &TestSource,
    worker_extra: impl FnOnce(&Path) -> String,
) -> Setup {
    let brokers = spillway_testkit::kafka_brokers();
    let setup = setup(
        &brokers,
        &spillway_testkit::redis_nodes(),
        std::slice::from_ref(source),
        "",
        "",
    );
    let mut yaml = std::fs::read_to_string(&setup.config).expect("config");
    yaml.push_str(&format!(
        "worker:\n  admin_listen: 127.0.0.1:0\n  group_id: \"{}workers\"\n  \
         allow_cidrs: [127.0.0.0/8]\n{}",
        setup.topic_prefix,
        worker_extra(setup.dir.path()),
    ));
    std::fs::write(&setup.config, yaml).expect("config");
    let config = spillway_config::load(&setup.config).expect("valid config");
    let mut topics = config.topics();
    topics.extend(spillway_worker::topics::worker_topics(&config));
    spillway_testkit::create_topics(&brokers, &topics).await;
    setup
}

/// The guard against hangs used by every wait: generous, never a speed check.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The YAML of one subscription `inbox` delivering every source to `url`, its secret written
/// into `dir`.
pub fn inbox_subscription(dir: &Path, url: &str) -> String {
    let secret = dir.join("subscriber.secret");
    std::fs::write(&secret, ACME_OLD_SECRET).expect("secret");
    format!(
        "subscriptions:\n  - id: inbox\n    url: \"{url}\"\n    secrets: [{{ id: s, file: \"{}\" }}]\n",
        secret.display()
    )
}
