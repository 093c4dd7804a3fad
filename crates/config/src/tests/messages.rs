//! Every validation message and field path, in order, pinned for configs that break nearly
//! every rule at once (recorded before validation was split into sections): no split or new
//! process mode may change a word of them.

use std::path::Path;

use figment::Jail;

use crate::{load, ConfigError};

/// Ingress, admin, Kafka, Redis, sources, subscriptions, worker and telemetry all wrong.
pub(super) const EVERYTHING_WRONG: &str = r#"
ingress:
  listen: 127.0.0.1:8080
  max_in_flight: 0
  max_header_bytes: 100
  block_failing_clients: { failures: 0, window: 0s, duration: 500ms }
  max_headers: 0
  http2_max_concurrent_streams: 0
  http2_window_bytes: 1024
  http2_max_pending_accept_reset_streams: 0
  http2_max_local_error_reset_streams: 0
  max_body_memory: 0
  memory_limit: 0
  max_requests_per_client: 0
  body_rate_grace: 0s
  max_connections: 0
  max_connections_per_peer: 0
  max_connection_age: 500ms
  http2_keep_alive: 0s
  tls: { cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem }
admin:
  listen: 127.0.0.1:8080
kafka:
  brokers: " "
  delivery_timeout: 10ms
  max_queued_messages: 0
  partitions: 0
  replication_factor: 0
  properties:
    acks: "1"
    enable.idempotence: "false"
    request.required.acks: "0"
    delivery.timeout.ms: "120000"
    linger.ms: "5"
    message.max.bytes: lots
    transactional.id: spillway
    message.timeout.ms: "1000"
    queue.buffering.max.ms: "5"
    queue.buffering.max.messages: "10"
    bootstrap.servers: elsewhere:9092
    metadata.broker.list: elsewhere:9092
redis:
  nodes: [127.0.0.1:7000, "redis://ok:7000", "rediss://tls:7000/#insecure"]
  tls: { client_cert_file: /nonexistent/client.crt }
  command_timeout: 0s
  claim_ttl: 500ms
  window: 100ms
  commit_delay: 2s
sources:
  Bad Name:
    verify: { scheme: none }
    secrets: [ { id: x, env: SET_SECRET } ]
  github:
    verify: { scheme: github }
    topic: "bad topic!"
    max_body_bytes: 0
    rate_limit: { requests: 0, window: 10ms }
    forward_headers: ["bad header", spillway-x, Content-Type, traceparent, X-Ok]
  stripe:
    verify: { scheme: stripe }
    secrets:
      - { id: a, env: UNSET_SECRET }
      - { id: a, value: inline }
      - { id: "", env: SET_SECRET }
      - { id: b, env: SET_SECRET, file: /nonexistent/both }
      - { id: c }
      - { id: d, file: /nonexistent/stripe }
      - { id: e, env: EMPTY_SECRET }
  shopify:
    verify: { scheme: shopify }
    secrets: [ { id: s, env: SET_SECRET } ]
    dedupe: { from: signed_id }
    event_type: { from: header, name: "bad name" }
    partition_key: { from: none }
    tolerance: 0s
    require_client_cert: true
  cert:
    verify: { scheme: none }
    dedupe: { from: client_certificate }
    event_type: { from: client_certificate }
    partition_key: { from: json_pointer, pointer: nope }
  hmac:
    verify: { scheme: hmac, header: "bad header", encoding: hex }
    secrets: [ { id: h, env: SET_SECRET } ]
  hmac-template:
    verify: { scheme: hmac, header: x-sig, encoding: hex, template: "{nope}" }
    secrets: [ { id: h, env: SET_SECRET } ]
  hmac-stamp:
    verify: { scheme: hmac, header: x-sig, encoding: base64, template: "{timestamp}.{body}" }
    secrets: [ { id: h, env: SET_SECRET } ]
  topical:
    verify: { scheme: standard-webhooks }
    topic: ""
    secrets: [ { id: w, env: BAD_WHSEC } ]
subscriptions:
  - id: "bad id!"
    url: ftp://x
    sources: [nope, github]
    secrets: []
    headers: { "bad header": v }
    timeout: 0s
    rate_limit: 0
  - id: loop
    url: https://HOOKS.example.com:443/again
    secrets:
      - { id: s, file: /nonexistent/sub }
      - { id: "", env: SUB_SECRET }
      - { id: v, value: whsec_inline }
      - { id: w, env: BAD_WHSEC }
      - { id: u, env: UNSET_SECRET }
  - id: loop
    url: http://fine.example.com
    secrets: [ { id: ok, env: SUB_SECRET } ]
worker:
  max_attempts: 0
  retry_initial: 0s
  ingress_urls: [https://hooks.example.com, nope]
  drain_timeout: 0s
  api_token: {}
  retry_jitter: 1.0
  delivery_concurrency: 0
telemetry:
  otlp_endpoint: otel:4318
  trace_sample_ratio: 1.5
  export_interval: 0s
  export_queue: 0
"#;

/// The environment EVERYTHING_WRONG reads its secrets from.
pub(super) fn set_secret_env(jail: &mut Jail) {
    jail.set_env("SET_SECRET", "It's a Secret to Everybody");
    jail.set_env("EMPTY_SECRET", "");
    jail.set_env("BAD_WHSEC", "whsec_%%%");
    jail.set_env("SUB_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
}

/// What `spillway check-config` prints for EVERYTHING_WRONG, one line per field error.
pub(super) const EVERYTHING_WRONG_MESSAGES: &[&str] = &[
    "ingress.max_in_flight: must be at least 1",
    "ingress.max_header_bytes: must be at least 8192",
    "ingress.max_requests_per_client: must be at least 1",
    "ingress.max_body_memory: must be at least 1",
    "ingress.memory_limit: must be greater than zero (leave it out when the process has no memory limit)",
    "ingress.body_rate_grace: must be greater than zero while min_body_rate is on (0 turns the rate off)",
    "ingress.max_connections: must be at least 1",
    "ingress.max_connections_per_peer: must be at least 1",
    "ingress.max_connection_age: must be at least 1s",
    "ingress.http2_keep_alive: must be at least 1s",
    "ingress.block_failing_clients.failures: must be at least 1",
    "ingress.block_failing_clients.window: must be at least 1s",
    "ingress.block_failing_clients.duration: must be at least 1s",
    "ingress.http2_window_bytes: must be from 65535 to 2147483647 (HTTP/2's bounds)",
    "ingress.max_headers: must be at least 1",
    "ingress.http2_max_concurrent_streams: must be at least 1",
    "ingress.http2_max_pending_accept_reset_streams: must be at least 1",
    "ingress.http2_max_local_error_reset_streams: must be at least 1",
    "ingress.tls.cert_file: /nonexistent/cert.pem: No such file or directory (os error 2)",
    "ingress.tls.key_file: /nonexistent/key.pem: No such file or directory (os error 2)",
    "admin.listen: must differ from ingress.listen",
    "kafka.brokers: must name at least one broker",
    "kafka.delivery_timeout: must be at least 100ms",
    "kafka.max_queued_messages: must be at least 1",
    "kafka.partitions: must be at least 1",
    "kafka.replication_factor: must be -1 (the broker's default) or at least 1",
    "kafka.properties.acks: is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden",
    "kafka.properties.bootstrap.servers: is set by Spillway from kafka.brokers; set that field instead",
    "kafka.properties.delivery.timeout.ms: is set by Spillway from kafka.delivery_timeout; set that field instead",
    "kafka.properties.enable.idempotence: is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden",
    "kafka.properties.linger.ms: is set by Spillway from kafka.linger; set that field instead",
    "kafka.properties.message.timeout.ms: is set by Spillway from kafka.delivery_timeout; set that field instead",
    "kafka.properties.metadata.broker.list: is set by Spillway from kafka.brokers; set that field instead",
    "kafka.properties.queue.buffering.max.messages: is set by Spillway from kafka.max_queued_messages; set that field instead",
    "kafka.properties.queue.buffering.max.ms: is set by Spillway from kafka.linger; set that field instead",
    "kafka.properties.request.required.acks: is fixed by Spillway (acks=all, enable.idempotence=true) and cannot be overridden",
    "kafka.properties.transactional.id: cannot be set: Spillway's producer is idempotent, not transactional, and a transactional.id makes every send fail",
    "kafka.properties.message.max.bytes: must be a number of bytes from 1000 to 1000000000 (librdkafka's range)",
    "redis.nodes[0]: must start with redis:// or rediss:// (TLS)",
    "redis.nodes[2]: #insecure (no certificate check) is not supported: give the cluster's CA in redis.tls.ca_file",
    "redis.nodes: mixes redis:// and rediss:// seeds: the cluster is reached over TLS or not, so use one",
    "redis.tls: client_cert_file and client_key_file go together",
    "redis.tls.client_cert_file: /nonexistent/client.crt is not a readable file",
    "redis.command_timeout: must be greater than zero",
    "redis.claim_ttl: must be at least 1s",
    "redis.window: must be at least redis.claim_ttl",
    "redis.commit_delay: must be at most 1s",
    "sources.Bad Name: source names are 1 to 64 characters of a-z, 0-9, '-' and '_' (they appear in URLs and metric labels)",
    "sources.Bad Name.topic: \"spillway.Bad Name\" is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
    "sources.Bad Name.secrets: scheme none takes no secrets",
    "sources.cert.partition_key: \"nope\" is not a JSON pointer; it must start with '/'",
    "sources.cert.dedupe: from: client_certificate needs require_client_cert: true",
    "sources.cert.event_type: from: client_certificate needs require_client_cert: true",
    "sources.github.topic: \"bad topic!\" is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
    "sources.github.max_body_bytes: must be at least 1",
    "sources.github.rate_limit.requests: must be at least 1",
    "sources.github.rate_limit.window: must be at least 100ms",
    "sources.github.forward_headers[0]: \"bad header\" is not a header name",
    "sources.github.forward_headers[1]: \"spillway-x\" is written by Spillway itself and cannot be forwarded",
    "sources.github.forward_headers[2]: \"Content-Type\" is written by Spillway itself and cannot be forwarded",
    "sources.github.forward_headers[3]: \"traceparent\" is written by Spillway itself and cannot be forwarded",
    "sources.github.secrets: scheme github needs at least one secret",
    "sources.github.event_type: header \"x-github-event\" must be in forward_headers: the workers read it from the Kafka record",
    "sources.hmac.verify: \"bad header\" is not a header name",
    "sources.hmac-stamp.verify: template: template uses {timestamp} but no timestamp_header is configured",
    "sources.hmac-template.verify: template: unknown placeholder {nope}; use {id}, {timestamp}, {body}, {url}, {method} or {form}",
    "sources.shopify.dedupe: from: signed_id needs a scheme that signs an event id; shopify does not",
    "sources.shopify.event_type: \"bad name\" is not a header name",
    "sources.shopify.event_type: header \"bad name\" must be in forward_headers: the workers read it from the Kafka record",
    "sources.shopify.partition_key: omit partition_key instead of from: none",
    "sources.shopify.tolerance: must be at least 1s",
    "sources.shopify.require_client_cert: needs ingress.tls with a client_ca_file to check the certificates against",
    "sources.stripe.secrets[0]: env: environment variable UNSET_SECRET is not set",
    "sources.stripe.secrets[1]: inline secret values are not accepted; put the secret in an environment variable (env:) or a file (file:)",
    "sources.stripe.secrets[2]: id: must not be empty",
    "sources.stripe.secrets[3]: set either env or file, not both",
    "sources.stripe.secrets[4]: set env (an environment variable) or file",
    "sources.stripe.secrets[5]: file: cannot read /nonexistent/stripe: No such file or directory (os error 2)",
    "sources.stripe.secrets[6]: secret is empty",
    "sources.stripe.secrets: secret ids must be unique",
    "sources.topical.topic: \"\" is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
    "sources.topical.secrets[0]: secret is not valid base64: a character outside the base64 alphabet, or one after padding",
    "subscriptions[0].id: 1 to 128 characters of a-z A-Z 0-9 - _",
    "subscriptions[0].url: \"ftp://x\" is not an http(s) URL with a host",
    "subscriptions[0].sources[0]: no source named \"nope\"",
    "subscriptions[0].secrets: at least one signing secret is required",
    "subscriptions[0].headers.bad header: not a valid header",
    "subscriptions[0].timeout: must be greater than zero and at most worker.max_subscription_timeout (1m): a delivery in hand holds retry capacity and its partition's offsets",
    "subscriptions[0].rate_limit: must be at least 1 delivery per second (leave it out for no limit)",
    "subscriptions[1].url: points at this cluster's own ingress (https://hooks.example.com): its events would loop back in",
    "subscriptions[1].secrets[0]: file: cannot read /nonexistent/sub: No such file or directory (os error 2)",
    "subscriptions[1].secrets[1]: id: must not be empty",
    "subscriptions[1].secrets[2]: inline secret values are not accepted; put the secret in an environment variable (env:) or a file (file:)",
    "subscriptions[1].secrets[3]: secret is not valid base64: a character outside the base64 alphabet, or one after padding",
    "subscriptions[1].secrets[4]: env: environment variable UNSET_SECRET is not set",
    "subscriptions[2].id: \"loop\" is used by another subscription",
    "worker.max_attempts: must be at least 1",
    "worker.retry_max_delay: retry_initial must be positive and retry_max_delay at least retry_initial",
    "worker.ingress_urls[1]: \"nope\" is not an http(s) URL with a host",
    "worker.drain_timeout: must be positive and shorter than the consumer session timeout (45000 ms): a longer drain gets the worker thrown out of its group",
    "worker.api_token: set either env or file",
    "worker.retry_jitter: must be in [0, 1)",
    "worker.delivery_concurrency: must be at least 1 (1 delivers a partition strictly in order)",
    "telemetry.otlp_endpoint: must be an http:// or https:// URL such as http://otel-collector:4318",
    "telemetry.trace_sample_ratio: must be in [0, 1]",
    "telemetry.export_interval: must be greater than zero",
    "telemetry.export_queue: must be at least 1",
];

pub(super) fn messages(path: &str) -> Vec<String> {
    match load(Path::new(path)) {
        Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(ConfigError::Parse { source, .. }) => vec![format!("parse: {source}")],
        Ok(_) => Vec::new(),
    }
}

#[test]
fn every_message_and_path_of_a_config_wrong_everywhere() {
    Jail::expect_with(|jail| {
        set_secret_env(jail);
        jail.create_file("spillway.yaml", EVERYTHING_WRONG)?;
        assert_eq!(messages("spillway.yaml"), EVERYTHING_WRONG_MESSAGES);
        Ok(())
    });
}

#[test]
fn the_messages_that_depend_on_the_sources_as_a_whole() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "limited.yaml",
            "kafka: { brokers: k:9092 }\nsources:\n  a:\n    verify: { scheme: none }\n    \
             dedupe: { from: none }\n    rate_limit: { requests: 1, window: 1s }\n",
        )?;
        jail.create_file(
            "deduped.yaml",
            "kafka: { brokers: k:9092 }\nsources:\n  a: { verify: { scheme: none } }\n",
        )?;
        jail.create_file("none.yaml", "kafka: { brokers: k:9092 }\nsources: {}\n")?;
        assert_eq!(
            messages("limited.yaml"),
            ["redis.nodes: a source has a rate_limit, counted in the Redis Cluster: at least one node is required"]
        );
        assert_eq!(
            messages("deduped.yaml"),
            ["redis.nodes: a source deduplicates, so at least one Redis Cluster node is required"]
        );
        assert_eq!(
            messages("none.yaml"),
            ["sources: at least one source is required"]
        );
        Ok(())
    });
}

/// The checks between fields, which EVERYTHING_WRONG cannot reach (their fields are wrong on
/// their own there): bodies against the body budget, the memory limit and Kafka's largest
/// record, and the claim against the produce it guards.
#[test]
fn the_messages_of_limits_that_depend_on_other_fields() {
    Jail::expect_with(|jail| {
        let sources = "sources:\n  big: { verify: { scheme: none }, dedupe: { from: none }, \
                       max_body_bytes: 2097152 }\n  small: { verify: { scheme: none }, \
                       dedupe: { from: none }, max_body_bytes: 1000000 }\n";
        jail.create_file(
            "records.yaml",
            &format!("kafka: {{ brokers: k:9092 }}\n{sources}"),
        )?;
        jail.create_file(
            "budget.yaml",
            &format!(
                "kafka: {{ brokers: k:9092, properties: {{ message.max.bytes: \"2200000\" }} }}\n\
                 ingress: {{ max_body_memory: 1048576 }}\n{sources}"
            ),
        )?;
        jail.create_file(
            "limit.yaml",
            "kafka: { brokers: k:9092 }\ningress: { memory_limit: 268435456, max_connections: 2048 }\n\
             sources:\n  \
             a: { verify: { scheme: none }, dedupe: { from: none } }\n",
        )?;
        jail.create_file(
            "tiny.yaml",
            "kafka: { brokers: k:9092 }\ningress: { memory_limit: 33554432 }\nsources:\n  \
             a: { verify: { scheme: none }, dedupe: { from: none } }\n",
        )?;
        jail.create_file(
            "claim.yaml",
            "kafka: { brokers: k:9092, delivery_timeout: 30s }\nredis: { nodes: [\"redis://r:7000\"] }\n\
             sources:\n  a: { verify: { scheme: none } }\n",
        )?;
        assert_eq!(
            messages("records.yaml"),
            [
                "sources.big.max_body_bytes: 2097152 + 16384 bytes of record headers and key = 2113536 is more than the producer's message.max.bytes (1000000, librdkafka's default): a record that large would be accepted and then refused by Kafka. Lower max_body_bytes to at most 983616, or raise kafka.properties message.max.bytes and the topics' max.message.bytes (and the brokers' message.max.bytes) to at least 2113536",
                "sources.small.max_body_bytes: 1000000 + 16384 bytes of record headers and key = 1016384 is more than the producer's message.max.bytes (1000000, librdkafka's default): a record that large would be accepted and then refused by Kafka. Lower max_body_bytes to at most 983616, or raise kafka.properties message.max.bytes and the topics' max.message.bytes (and the brokers' message.max.bytes) to at least 1016384",
            ]
        );
        assert_eq!(
            messages("budget.yaml"),
            ["ingress.max_body_memory: 1 MiB is less than sources.big.max_body_bytes (2 MiB): a body that large could never be admitted; raise max_body_memory or lower max_body_bytes"]
        );
        assert_eq!(
            messages("limit.yaml"),
            ["ingress.memory_limit: 256 MiB does not hold 2 x 64 MiB (max_body_memory; each body is held twice, as read and as librdkafka's copy of its record) + 2048 connections (max_connections) x 64 KiB + 96 MiB for the rest of the process = 352 MiB; lower max_body_memory to at most 16 MiB, or lower max_connections to at most 512, or raise the memory limit to at least 352 MiB"]
        );
        assert_eq!(
            messages("tiny.yaml"),
            ["ingress.memory_limit: 32 MiB does not hold 2 x 64 MiB (max_body_memory; each body is held twice, as read and as librdkafka's copy of its record) + 4096 connections (max_connections) x 64 KiB + 96 MiB for the rest of the process = 480 MiB; raise the memory limit to at least 480 MiB"]
        );
        assert_eq!(
            messages("claim.yaml"),
            ["redis.claim_ttl: must be longer than kafka.delivery_timeout + redis.commit_delay + redis.command_timeout (30.505s): a claim that ends before its event's commit lands lets a retry claim the key again and produce a duplicate"]
        );
        Ok(())
    });
}
