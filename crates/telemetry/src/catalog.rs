//! The metrics catalog: every metric a Spillway process exports, declared once. The processes
//! build their registries from these definitions, docs/metrics.md is generated from them, and
//! the tests hold the names, units and labels to the rules below.
//!
//! Rules: names are `spillway_<name>_<unit>[_total]`, counters and only counters end in
//! `_total`, and every label holds a bounded set of values (configured names or fixed codes),
//! never an event id, a key, a URL or a client address.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

mod markdown;
mod worker;

pub use markdown::markdown;
pub use worker::{
    CONSUMER_LAG, WORKER_ATTEMPT_RECORDS, WORKER_CIRCUIT_STATE, WORKER_DEAD_LETTERS,
    WORKER_DELIVERIES, WORKER_DELIVERY_DURATION, WORKER_RETRIES,
};

/// Which process exports a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Ingress,
    Worker,
    Both,
}

/// The Prometheus type of a metric; histograms carry their bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// A label and the values it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub name: &'static str,
    pub values: &'static str,
}

/// One metric of the catalog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub process: Process,
    pub help: &'static str,
    pub labels: &'static [Label],
}

/// Latency buckets for the answer path: the latency SLO's threshold (100 ms, in the chart's
/// alerts) is a bucket bound.
const ANSWER_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Latency buckets for one call to Kafka or Redis.
const DEPENDENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Body sizes from 256 B to 16 MiB, by factors of four.
const BODY_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

const SOURCE: Label = Label {
    name: "source",
    values: "a configured source name, or `_unknown` for a path that names none",
};
pub(super) const TOPIC: Label = Label {
    name: "topic",
    values: "a configured Kafka topic",
};

pub const HTTP_REQUESTS: MetricDef = MetricDef {
    name: "spillway_http_requests_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Webhook requests answered, by source and outcome.",
    labels: &[
        SOURCE,
        Label {
            name: "outcome",
            values: "`accepted` (202), `duplicate` (200), `in_flight` (503, the same key being accepted now), `unauthorized` (401), `bad_request` (400), `unknown_source` (404), `method_not_allowed` (405), `too_large` (413), `body_timeout` (408, too late or too slow), `overloaded` (503), `memory_full` (503), `client_limit` (503), `kafka_unavailable` (503), `redis_unavailable` (503), `loop_detected` (508), `forbidden` (403), `rate_limited` (429), `blocked` (403), `unsupported_encoding` (415), `robots_txt` (200, `GET /robots.txt`), `handshake` (200, a provider's registration handshake), `provider_unreachable` (503, an SNS certificate or SubscribeURL could not be fetched), `objects_unavailable` (503, object storage did not take a large body), `internal` (500)",
        },
    ],
};
pub const HTTP_REQUEST_DURATION: MetricDef = MetricDef {
    name: "spillway_http_request_duration_seconds",
    kind: Kind::Histogram(ANSWER_BUCKETS),
    process: Process::Ingress,
    help: "Time from request head to answer, by source.",
    labels: &[SOURCE],
};
pub const HTTP_REQUEST_BODY: MetricDef = MetricDef {
    name: "spillway_http_request_body_bytes",
    kind: Kind::Histogram(BODY_BUCKETS),
    process: Process::Ingress,
    help: "Size of the request bodies read in full, by source.",
    labels: &[SOURCE],
};
pub const HTTP_IN_FLIGHT: MetricDef = MetricDef {
    name: "spillway_http_in_flight_requests",
    kind: Kind::Gauge,
    process: Process::Ingress,
    help: "Webhook requests past their body read whose event is not settled yet (the in-flight places taken).",
    labels: &[],
};
pub const HTTP_IN_FLIGHT_LIMIT: MetricDef = MetricDef {
    name: "spillway_http_in_flight_limit_requests",
    kind: Kind::Gauge,
    process: Process::Ingress,
    help: "The in-flight limit now: `ingress.max_in_flight`, or less while Kafka and Redis answer slower than `ingress.latency_target`.",
    labels: &[],
};
pub const HTTP_SHED: MetricDef = MetricDef {
    name: "spillway_http_shed_requests_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Requests refused before any work was done to protect the process, by source and reason.",
    labels: &[
        SOURCE,
        Label {
            name: "reason",
            values: "`max_in_flight` (`ingress.max_in_flight` reached: 503 with Retry-After), `body_memory` (`ingress.max_body_memory` has not got the bytes: 503 with Retry-After), `client_limit` (the client address has `ingress.max_requests_per_client` requests open: 503 with Retry-After), `rate_limited` (the source's `rate_limit` used up: 429 with Retry-After)",
        },
    ],
};
pub const VERIFICATION_FAILURES: MetricDef = MetricDef {
    name: "spillway_verification_failures_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Requests refused by signature verification, by source and reason.",
    labels: &[
        SOURCE,
        Label {
            name: "reason",
            values: "the error code of the answer: `signature_missing`, `malformed_header`, `timestamp_too_old`, `timestamp_in_future`, `signature_mismatch`, `no_active_secret`, `verify_token_mismatch` (Meta's handshake); for SNS also `field_missing`, `malformed_message`, `certificate_invalid`, `certificate_url_refused`, `topic_not_allowed`",
        },
    ],
};
pub const DEDUPE_HITS: MetricDef = MetricDef {
    name: "spillway_dedupe_hits_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Requests (and records of batch requests) refused because their dedupe key was already claimed, once each however many of their keys were, by source and the claim's state.",
    labels: &[
        SOURCE,
        Label {
            name: "state",
            values: "`done` (answered 200 with the original id), `in_flight` (answered 503 with Retry-After)",
        },
    ],
};
pub const DEDUPE_CLAIMS_IN_FLIGHT: MetricDef = MetricDef {
    name: "spillway_dedupe_in_flight_claims",
    kind: Kind::Gauge,
    process: Process::Ingress,
    help: "Dedupe claims this process holds and has not yet committed or released, the commits queued after their 202 (`redis.commit_delay`) and those being retried included.",
    labels: &[],
};
pub const DEDUPE_FAIL_OPEN: MetricDef = MetricDef {
    name: "spillway_dedupe_fail_open_events_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help:
        "Events accepted without a dedupe claim because Redis was unavailable (fail-open sources).",
    labels: &[SOURCE],
};
pub const DEDUPE_FALLBACK: MetricDef = MetricDef {
    name: "spillway_dedupe_fallback_events_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Authentic events keyed by the SHA-256 of their body because the preset's own delivery or event id was absent (a provider changed its headers or body shape); accepted, not refused.",
    labels: &[SOURCE],
};
pub const INVALID_RECORDS: MetricDef = MetricDef {
    name: "spillway_invalid_records_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Records (each of a batch, or a whole body) that did not match their source's schema, by the first failure's reason and by what was done: `quarantined` (written to the quarantine topic and answered as accepted) or `rejected` (answered 422, a copy sent to the quarantine).",
    labels: &[
        SOURCE,
        Label {
            name: "reason",
            values: "the JSON Schema keyword in snake case (`type`, `required`, `pattern`...), `not_json`, `not_protobuf`, `unknown_field`, `missing_required_field`",
        },
        Label {
            name: "action",
            values: "`quarantined`, `rejected`",
        },
    ],
};
pub const BATCH_RECORDS: MetricDef = MetricDef {
    name: "spillway_batch_records_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Records of batch requests (sources with `batch:`) by what became of each: written, a duplicate, rejected for what it is (not JSON, too large, no key), or failed (not made durable; the sender is told to retry the batch).",
    labels: &[
        SOURCE,
        Label {
            name: "result",
            values: "`accepted`, `duplicate`, `rejected`, `failed`",
        },
    ],
};
pub const VERIFICATIONS: MetricDef = MetricDef {
    name: "spillway_signature_verified_requests_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Requests whose signature (or token) matched, by the id of the secret that matched: when an old secret's count stops growing, senders have switched and it can be removed.",
    labels: &[
        SOURCE,
        Label {
            name: "key_id",
            values: "the `id` of one of the source's configured secrets",
        },
    ],
};
pub const HANDSHAKES: MetricDef = MetricDef {
    name: "spillway_handshake_requests_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Provider registration handshakes (Slack url_verification, Meta hub.challenge, Zoom endpoint.url_validation...) answered at the edge or refused; none is written to Kafka unless the source sets `store_handshakes`.",
    labels: &[
        SOURCE,
        Label {
            name: "kind",
            values: "the handshake, as docs/providers.md names it (`slack_url_verification`, `meta_hub_challenge`, ...)",
        },
        Label {
            name: "result",
            values: "`answered`, `refused` (a wrong verify token, an invalid challenge, a failed signature on Okta's)",
        },
    ],
};
pub const CONFIG_RELOADS: MetricDef = MetricDef {
    name: "spillway_config_reloads_total",
    kind: Kind::Counter,
    process: Process::Both,
    help: "Reloads of the sources (the config file or a source's secret file changed, or SIGHUP): `ok` swapped them in (a worker also consumes a new source's topic), `failed` kept the running ones (every bad field is logged).",
    labels: &[Label {
        name: "result",
        values: "`ok`, `failed`",
    }],
};
pub const BLOCKED_CLIENTS: MetricDef = MetricDef {
    name: "spillway_blocked_clients_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Client addresses blocked for failing verification too often (`ingress.block_failing_clients`), by the source of the failure that tipped it.",
    labels: &[SOURCE],
};
pub const REDIS_COMMAND_DURATION: MetricDef = MetricDef {
    name: "spillway_redis_command_duration_seconds",
    kind: Kind::Histogram(DEPENDENCY_BUCKETS),
    process: Process::Ingress,
    help: "Time of one Redis command (dedupe claims, rate-limit counts, client blocks), successful or not, by command. Commands sent together, one pipeline per primary (the commits of each redis.commit_delay, the claims of a batch request's records, the two claims of a scheme that signs neither an id nor a timestamp), are each timed as their whole call.",
    labels: &[Label {
        name: "command",
        values: "`claim`, `commit`, `release`, `rate_limit`, `block_check`, `block_count`",
    }],
};
pub const REDIS_ERRORS: MetricDef = MetricDef {
    name: "spillway_redis_errors_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Redis commands that failed (timeout, connection, cluster error), by command.",
    labels: &[Label {
        name: "command",
        values: "`claim`, `commit`, `release`, `rate_limit`, `block_check`, `block_count`",
    }],
};
pub const REDIS_DIRECT_COMMANDS: MetricDef = MetricDef {
    name: "spillway_redis_direct_commands_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Dedupe claims, commits and releases answered on a direct connection to their key's primary, past redis-rs's cluster connection, which the others take (compare with the `claim`, `commit` and `release` counts of `spillway_redis_command_duration_seconds`; a command of a pipeline counts once, where it is answered). The cheaper way. A share near zero means the routes cannot be built (the addresses the cluster announces do not reach the nodes from the pod); a share below one that stays, that a primary could not be reached when they were.",
    labels: &[],
};
pub const REDIS_DIRECT_FALLBACKS: MetricDef = MetricDef {
    name: "spillway_redis_direct_fallbacks_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Commands (a pipeline once) that a direct connection to a primary refused as misrouted or unavailable, or that broke on it, and that went through the cluster connection instead; the connection is left out, and the routes are built again on a command at least a second later (timeouts count not here but in `spillway_redis_errors_total`). A few follow a failover or a resharding; a steady rate means routes are built and then refused again (an announced address that reaches another node).",
    labels: &[],
};
pub const KAFKA_PRODUCE_DURATION: MetricDef = MetricDef {
    name: "spillway_kafka_produce_duration_seconds",
    kind: Kind::Histogram(DEPENDENCY_BUCKETS),
    process: Process::Ingress,
    help: "Time from handing an event to the producer to its delivery report, by topic.",
    labels: &[TOPIC],
};
pub const KAFKA_PRODUCE_ERRORS: MetricDef = MetricDef {
    name: "spillway_kafka_produce_errors_total",
    kind: Kind::Counter,
    process: Process::Ingress,
    help: "Events Kafka did not take, by topic and reason.",
    labels: &[
        TOPIC,
        Label {
            name: "reason",
            values: "`queue_full`, `not_acknowledged` (timeout or broker error), `canceled`, `too_large` (over `message.max.bytes` or the topic's `max.message.bytes`: answered 413), `unreachable` (no broker reachable: answered 503 at once)",
        },
    ],
};
pub const KAFKA_PRODUCER_QUEUE: MetricDef = MetricDef {
    name: "spillway_kafka_producer_queue_messages",
    kind: Kind::Gauge,
    process: Process::Ingress,
    help: "Records in librdkafka's producer queue (handed over, not yet acknowledged).",
    labels: &[],
};
pub const BUILD_INFO: MetricDef = MetricDef {
    name: "spillway_build_info",
    kind: Kind::Gauge,
    process: Process::Both,
    help: "Always 1; the labels carry the build and the process.",
    labels: &[
        Label {
            name: "version",
            values: "the crate version",
        },
        Label {
            name: "process",
            values: "`ingress`, `worker`",
        },
    ],
};

/// Every metric, in the order of docs/metrics.md.
pub const CATALOG: &[MetricDef] = &[
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    HTTP_REQUEST_BODY,
    HTTP_IN_FLIGHT,
    HTTP_IN_FLIGHT_LIMIT,
    HTTP_SHED,
    VERIFICATION_FAILURES,
    DEDUPE_HITS,
    DEDUPE_CLAIMS_IN_FLIGHT,
    DEDUPE_FAIL_OPEN,
    DEDUPE_FALLBACK,
    BATCH_RECORDS,
    INVALID_RECORDS,
    VERIFICATIONS,
    HANDSHAKES,
    CONFIG_RELOADS,
    BLOCKED_CLIENTS,
    REDIS_COMMAND_DURATION,
    REDIS_ERRORS,
    REDIS_DIRECT_COMMANDS,
    REDIS_DIRECT_FALLBACKS,
    KAFKA_PRODUCE_DURATION,
    KAFKA_PRODUCE_ERRORS,
    KAFKA_PRODUCER_QUEUE,
    WORKER_DELIVERIES,
    WORKER_DELIVERY_DURATION,
    WORKER_RETRIES,
    WORKER_DEAD_LETTERS,
    WORKER_ATTEMPT_RECORDS,
    WORKER_CIRCUIT_STATE,
    CONSUMER_LAG,
    BUILD_INFO,
];

// === impl MetricDef ===

impl MetricDef {
    fn label_names(&self) -> Vec<&'static str> {
        self.labels.iter().map(|l| l.name).collect()
    }

    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    /// Creates this counter in `registry`.
    pub(crate) fn counter(&self, registry: &Registry) -> prometheus::Result<IntCounterVec> {
        debug_assert_eq!(self.kind, Kind::Counter, "{}", self.name);
        let c = IntCounterVec::new(self.opts(), &self.label_names())?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// Creates this counter, which has no labels, in `registry`.
    pub(crate) fn single_counter(&self, registry: &Registry) -> prometheus::Result<IntCounter> {
        Ok(self.counter(registry)?.with_label_values::<&str>(&[]))
    }

    /// Creates this gauge in `registry`.
    pub(crate) fn gauge(&self, registry: &Registry) -> prometheus::Result<IntGaugeVec> {
        debug_assert_eq!(self.kind, Kind::Gauge, "{}", self.name);
        let g = IntGaugeVec::new(self.opts(), &self.label_names())?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// Creates this gauge, which has no labels, in `registry`.
    pub(crate) fn single_gauge(&self, registry: &Registry) -> prometheus::Result<IntGauge> {
        Ok(self.gauge(registry)?.with_label_values::<&str>(&[]))
    }

    /// Creates this histogram in `registry`.
    pub(crate) fn histogram(&self, registry: &Registry) -> prometheus::Result<HistogramVec> {
        let Kind::Histogram(buckets) = self.kind else {
            return Err(prometheus::Error::Msg(format!(
                "{} is not a histogram",
                self.name
            )));
        };
        let h = HistogramVec::new(
            HistogramOpts::new(self.name, self.help).buckets(buckets.to_vec()),
            &self.label_names(),
        )?;
        registry.register(Box::new(h.clone()))?;
        Ok(h)
    }
}

/// Registers `spillway_build_info` for `process` and sets it.
pub(crate) fn build_info(registry: &Registry, process: &str) -> prometheus::Result<()> {
    BUILD_INFO
        .gauge(registry)?
        .with_label_values(&[env!("CARGO_PKG_VERSION"), process])
        .set(1);
    Ok(())
}

#[cfg(test)]
mod tests;
