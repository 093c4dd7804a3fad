//! Unit tests of the request path without any server: a [`Pipeline`] on the in-memory Kafka
//! producer and the in-memory shared store, fed requests built in memory, with tokio's paused
//! clock for timeouts. The answers asserted are the ones senders see (status, code, headers).

mod answers;
mod batches;
mod claims;
mod commits;
mod durability;
mod handshakes;
mod hostile;
mod large;
mod schemas;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use spillway_kafka::{EventProducer, MemoryProducer};
use spillway_store::{MemoryStore, SharedStore};
use spillway_telemetry::IngressMetrics;

use crate::pipeline::Pipeline;

/// GitHub's published example: this secret signs `Hello, World!` as below
/// (docs.github.com, "Validating webhook deliveries", testing the webhook payload validation).
pub(crate) const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub(crate) const GITHUB_BODY: &str = "Hello, World!";
pub(crate) const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// The sources the tests send to; `{secret}` is the GitHub secret's file.
const SOURCES: &str = r#"
ingress:
  max_in_flight: 32
  max_body_memory: 4096
  max_requests_per_client: 4
  min_body_rate: 100
  body_rate_grace: 2s
  retry_after: 3s
  body_read_timeout: 5s
  max_hops: 2
  block_failing_clients: { failures: 2, window: 1h, duration: 10m }
  # Named for the mutual-TLS source; the pipeline never opens them (the server does).
  tls: { cert_file: /unused/cert.pem, key_file: /unused/key.pem, client_ca_file: /unused/ca.pem }
kafka:
  brokers: 127.0.0.1:1
  delivery_timeout: 5s
redis:
  nodes: [redis://127.0.0.1:1]
  key_prefix: "t:"
sources:
  github:
    verify: { scheme: github }
    secrets:
      - { id: gh-1, file: "{secret}" }
  github-lenient:
    verify: { scheme: github }
    secrets:
      - { id: gh-1, file: "{secret}" }
    on_redis_unavailable: fail_open
  open:
    verify: { scheme: none }
    dedupe: { from: header, name: x-id }
    forward_headers: [x-trace-me]
    max_body_bytes: 64
  meters:
    verify: { scheme: none }
    dedupe: { from: json_pointer, pointer: /id }
    partition_key: { from: json_pointer, pointer: /device }
  lenient:
    verify: { scheme: none }
    dedupe: { from: header, name: x-id }
    on_redis_unavailable: fail_open
  nodedupe:
    verify: { scheme: none }
    dedupe: { from: none }
  guarded:
    verify: { scheme: github }
    secrets:
      - { id: gh-1, file: "{secret}" }
    rate_limit: { requests: 1, window: 1m }
  limited:
    verify: { scheme: none }
    dedupe: { from: none }
    rate_limit: { requests: 2, window: 1m }
  fleet:
    verify: { scheme: none }
    batch: { format: ndjson, max_records: 4, max_record_bytes: 48 }
    dedupe: { from: json_pointer, pointer: /id }
    partition_key: { from: json_pointer, pointer: /device }
  fleet-array:
    verify: { scheme: none }
    batch: { format: json_array }
    dedupe: { from: json_pointer, pointer: /id }
  fleet-proto:
    verify: { scheme: none }
    batch: { format: protobuf_delimited }
  fleet-signed:
    verify: { scheme: hmac, header: x-sig, encoding: hex, template: "{id}.{body}", id_header: x-batch }
    secrets:
      - { id: fs-1, file: "{secret}" }
    batch: { format: ndjson }
    dedupe: { from: json_pointer, pointer: /id }
    partition_key: { from: signed_id }
  readings:
    verify: { scheme: none }
    dedupe: { from: json_pointer, pointer: /id }
    schema: { json_schema: "{schemas}/reading.schema.json" }
  readings-strict:
    verify: { scheme: none }
    dedupe: { from: json_pointer, pointer: /id }
    schema: { json_schema: "{schemas}/reading.schema.json", on_invalid: reject }
  readings-batch:
    verify: { scheme: none }
    batch: { format: ndjson }
    dedupe: { from: json_pointer, pointer: /id }
    schema: { json_schema: "{schemas}/reading.schema.json", on_invalid: reject }
  readings-proto:
    verify: { scheme: none }
    batch: { format: protobuf_delimited }
    dedupe: { from: protobuf_field, field: id }
    partition_key: { from: protobuf_field, field: meter.id }
    schema:
      protobuf: { descriptor_set: "{schemas}/fleet.desc", message: fleet.v1.Reading }
      quarantine_topic: fleet-quarantine
  fenced:
    verify: { scheme: none }
    dedupe: { from: none }
    allow_cidrs: [10.0.0.0/8]
  devices:
    verify: { scheme: none }
    dedupe: { from: none }
    require_client_cert: true
  stripe:
    verify: { scheme: stripe }
    secrets: [{ id: st-1, file: "{dir}/stripe" }]
  slack:
    verify: { scheme: slack }
    secrets: [{ id: sl-1, file: "{dir}/slack" }]
  slack-stored:
    verify: { scheme: slack }
    secrets: [{ id: sl-1, file: "{dir}/slack" }]
    store_handshakes: true
    dedupe: { from: json_pointer, pointer: /event_id }
    partition_key: { from: json_pointer, pointer: /team_id }
    rate_limit: { requests: 1, window: 1h }
  zoom:
    verify: { scheme: zoom }
    secrets: [{ id: zm-1, file: "{dir}/zoom" }]
  twitch:
    verify: { scheme: twitch }
    secrets: [{ id: tw-1, file: "{dir}/twitch" }]
  discord:
    verify: { scheme: discord }
    secrets: [{ id: dc-1, file: "{dir}/discord" }]
  meta:
    verify: { scheme: meta }
    secrets: [{ id: fb-1, file: "{dir}/meta" }]
    verify_token: { file: "{dir}/meta-verify-token" }
  whatsapp:
    verify: { scheme: whatsapp }
    secrets: [{ id: wa-1, file: "{dir}/meta" }]
  dropbox:
    verify: { scheme: dropbox }
    secrets: [{ id: db-1, file: "{dir}/dropbox" }]
  graph:
    verify: { scheme: microsoft-graph }
    secrets: [{ id: ms-1, file: "{dir}/graph" }]
  okta:
    verify: { scheme: okta }
    secrets: [{ id: ok-1, file: "{dir}/okta" }]
  asana:
    verify: { scheme: asana }
    secrets: [{ id: as-1, file: "{dir}/asana" }]
  trello:
    verify: { scheme: trello }
    secrets: [{ id: tr-1, file: "{dir}/trello" }]
  xero:
    verify: { scheme: xero }
    secrets: [{ id: xe-1, file: "{dir}/xero" }]
"#;

/// The secrets of the provider sources, by file name under the harness's directory.
pub(crate) const PROVIDER_SECRETS: &[(&str, &str)] = &[
    ("stripe", "whsec_unit_test"),
    ("slack", "slack-signing-secret"),
    ("zoom", "zoom-secret-token"),
    ("twitch", "twitch-eventsub-secret"),
    // The public key of the Ed25519 key pair whose seed is 32 bytes of 7 (handshakes.rs).
    ("discord", DISCORD_PUBLIC_KEY),
    ("meta", "meta-app-secret"),
    ("meta-verify-token", "meta-verify-token"),
    ("dropbox", "dropbox-app-secret"),
    ("graph", "graph-client-state"),
    ("okta", "Bearer okta-hook-token"),
    ("asana", "asana-hook-secret"),
    ("trello", "trello-app-secret"),
    ("xero", "xero-webhooks-key"),
];

/// See [`PROVIDER_SECRETS`].
pub(crate) const DISCORD_PUBLIC_KEY: &str =
    "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

/// The fleet schemas and the records Google's tools wrote for them.
pub(crate) const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/fleet-schemas");

/// A pipeline on memory, and handles on its memory.
pub(crate) struct Harness {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) kafka: MemoryProducer,
    pub(crate) store: MemoryStore,
    _secrets: tempfile::TempDir,
}

/// What a sender sees.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: serde_json::Value,
}

impl Seen {
    /// The `error` code of an error answer.
    pub(crate) fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    /// The event id of a 202 or 200 answer.
    pub(crate) fn id(&self) -> &str {
        self.body["id"].as_str().unwrap_or_default()
    }

    pub(crate) fn retry_after(&self) -> Option<&str> {
        self.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
    }
}

/// The harness's `ingress.max_in_flight`.
pub(crate) const MAX_IN_FLIGHT: usize = 32;

/// The Kafka cluster id the harness's pipeline writes to.
pub(crate) const CLUSTER: &str = "cluster-a";

pub(crate) fn harness() -> Harness {
    harness_on(None, CLUSTER)
}

/// A harness on `store` (a fresh one when None) whose Kafka cluster is `cluster`.
pub(crate) fn harness_on(store: Option<MemoryStore>, cluster: &str) -> Harness {
    harness_of(SOURCES, store, cluster)
}

/// A harness of the config `yaml`, in which `{secret}` (GitHub's secret's file), `{dir}`
/// (the directory of the other secrets) and `{schemas}` are replaced.
pub(crate) fn harness_of(yaml: &str, store: Option<MemoryStore>, cluster: &str) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("github.secret");
    std::fs::write(&secret, GITHUB_SECRET).expect("secret");
    for (file, text) in PROVIDER_SECRETS {
        std::fs::write(dir.path().join(file), text).expect("secret");
    }
    let yaml = yaml
        .replace("{secret}", &secret.display().to_string())
        .replace("{dir}", &dir.path().display().to_string())
        .replace("{schemas}", SCHEMAS);
    let config = spillway_config::parse_str(&yaml).expect("config");
    // Not `validate()`: it would want the TLS files a mutual-TLS source needs; the sources
    // resolve on their own.
    let sources = config.resolve_sources().expect("sources");
    let kafka = MemoryProducer::new();
    let store =
        store.unwrap_or_else(|| MemoryStore::new(config.redis.claim_ttl, config.redis.window));
    let objects = config
        .objects
        .as_ref()
        .map(|o| spillway_objects::Objects::open(o).expect("objects"));
    let pipeline = Pipeline::new(
        &config,
        sources,
        EventProducer::memory(kafka.clone()),
        Some(SharedStore::Memory(store.clone())),
        IngressMetrics::new().expect("metrics"),
        crate::sns_fetch::SnsFetcher::new(&config.ingress.sns).expect("sns fetcher"),
    )
    .with_objects(objects);
    pipeline
        .cluster
        .set(cluster.to_owned())
        .expect("cluster id");
    Harness {
        pipeline: Arc::new(pipeline),
        kafka,
        store,
        _secrets: dir,
    }
}

pub(crate) const PEER: &str = "192.0.2.10:40000";

/// A POST of `body` to `/v1/hooks/{source}` with `headers`.
pub(crate) fn post(source: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(format!("/v1/hooks/{source}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

impl Harness {
    /// The pipeline's shutdown after its drain, with time enough for anything a test waits for.
    pub(crate) async fn settle(&self) {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        self.pipeline.settle(far, far).await;
    }

    /// Waits (on the paused clock) until the commits queued by accepted events are sent.
    pub(crate) async fn committed(&self) {
        tokio::time::sleep(self.pipeline.commits.delay() * 2).await;
        settle().await;
    }

    /// Sends `req` from [`PEER`] and reads the answer.
    pub(crate) async fn send<B>(&self, req: Request<B>) -> Seen
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<crate::BodyError>,
    {
        self.send_from(req, PEER).await
    }

    pub(crate) async fn send_from<B>(&self, req: Request<B>, peer: &str) -> Seen
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<crate::BodyError>,
    {
        let peer: SocketAddr = peer.parse().expect("peer");
        let response = self.pipeline.clone().handle(req, peer).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        Seen {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            }),
        }
    }

    /// The Redis key of `source`'s dedupe key `key`.
    pub(crate) fn dedupe_key(&self, source: &str, key: &str) -> String {
        let topic = self.pipeline.sources.load()[source].topic.clone();
        self.pipeline.keys.dedupe(CLUSTER, &topic, key)
    }

    /// The ingress's metrics as Prometheus text.
    pub(crate) fn metrics(&self) -> String {
        String::from_utf8(self.pipeline.metrics.encode()).expect("utf8")
    }
}

/// A body whose bytes never come: a sender that stalls after its headers.
pub(crate) struct Stalled;

impl Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

/// A body that sends its chunks, then stalls: an upload that stops midway.
pub(crate) struct Trickle(pub(crate) Vec<Bytes>);

impl Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.0.is_empty() {
            return Poll::Pending;
        }
        let chunk = self.0.remove(0);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// A body that sends this many bytes a second, from its start, for ever: it never ends.
pub(crate) struct Paced(usize, Pin<Box<tokio::time::Sleep>>);

impl Paced {
    pub(crate) fn new(bytes_per_second: usize) -> Self {
        Self(
            bytes_per_second,
            Box::pin(tokio::time::sleep(Duration::ZERO)),
        )
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.1.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + secs(1);
        self.1.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; self.0])))))
    }
}

/// Lets spawned tasks run until they wait on something (the paused clock, a channel).
pub(crate) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
