//! Unit-test support: records built in memory, a worker's handling over the memory producer and
//! the memory deliverer, and a recorder of stored offsets.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use spillway_config::{Config, ResolvedSubscription, SourceRoute};
use spillway_core::headers;
use spillway_kafka::{EventProducer, MemoryProducer, ProducedRecord};
use spillway_telemetry::WorkerMetrics;

use crate::attempts::AttemptLog;
use crate::breaker::Breakers;
use crate::control;
use crate::delivery::{Deliverer, DeliveryOutcome, MemoryDeliverer};
use crate::handling::Handling;
use crate::ledger::OffsetStore;
use crate::registry::LiveSubscriptions;
use crate::topics::tiers_for;
use crate::RetryPolicy;

/// The prefix of the test topics.
pub(crate) const PREFIX: &str = "t.";
/// The source topic records are read from.
pub(crate) const SOURCE_TOPIC: &str = "t.github";
/// The dead-letter topic.
pub(crate) const DEAD_LETTER: &str = "t.worker.dead-letter";
pub(crate) const ATTEMPTS: &str = "t.worker.attempts";
/// The retry policy's attempts: the fourth failure is a dead letter.
pub(crate) const MAX_ATTEMPTS: u32 = 4;

/// The kit's `worker.first_attempt_budget`.
pub(crate) const FIRST_ATTEMPT_BUDGET: Duration = Duration::from_secs(15);

/// The kit's `worker.max_postponement`.
pub(crate) const MAX_POSTPONEMENT: Duration = Duration::from_secs(3600);

/// The retry tier topic that waits `secs` (tiers: 1 s, 2 s, 4 s, 8 s).
pub(crate) fn tier(secs: u64) -> String {
    format!("{PREFIX}worker.retry.{secs}s")
}

fn config() -> Config {
    // No secrets: resolving a source reads them, and inline values are refused.
    let yaml = "kafka: { brokers: \"127.0.0.1:9\" }\n\
                sources:\n  github:\n    verify: { scheme: none }\n    \
                event_type: { from: header, name: x-github-event }\n    \
                forward_headers: [x-github-event]\n";
    spillway_config::parse_str(yaml).expect("test config")
}

/// The `github` source, whose event type is the X-GitHub-Event header.
pub(crate) fn github_source() -> SourceRoute {
    config()
        .resolve_source_routes()
        .expect("sources resolve")
        .into_iter()
        .find(|s| s.name == "github")
        .expect("github")
}

/// A subscription to everything, without secrets, rate limit or extra headers.
pub(crate) fn subscription(id: &str) -> ResolvedSubscription {
    ResolvedSubscription {
        id: id.into(),
        url: format!("http://subscriber.test/{id}").parse().expect("uri"),
        sources: Vec::new(),
        event_types: Vec::new(),
        secrets: Vec::new(),
        headers: Vec::new(),
        timeout: Duration::from_secs(1),
        rate_limit: None,
        protobuf_json: false,
        reference_expiry: None,
    }
}

/// What a subscriber's HTTP status comes to.
pub(crate) fn failed(status: u16) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        reason: format!("answered {status}"),
        status: Some(status),
        retry_after: None,
    }
}

/// A record as a consumer reads it.
pub(crate) fn record(
    topic: &str,
    offset: i64,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> OwnedMessage {
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(*value),
        });
    }
    OwnedMessage::new(
        Some(body.to_vec()),
        Some(b"key-1".to_vec()),
        topic.into(),
        rdkafka::Timestamp::NotAvailable,
        0,
        offset,
        Some(owned),
    )
}

/// A produced record (a parked retry) as the retry consumer reads it back.
pub(crate) fn record_of(produced: &ProducedRecord) -> OwnedMessage {
    let headers: Vec<(&str, &[u8])> = produced
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    record(
        &produced.topic,
        produced.offset,
        &headers,
        produced.value.as_deref().unwrap_or_default(),
    )
}

/// A `push` event of the github source as the ingress writes it, its event id `e-<offset>`.
pub(crate) fn source_record(offset: i64) -> OwnedMessage {
    let id = format!("e-{offset}");
    record(
        SOURCE_TOPIC,
        offset,
        &[
            (headers::EVENT_ID, id.as_bytes()),
            (headers::SOURCE, b"github"),
            (
                headers::TRACEPARENT,
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (headers::CONTENT_TYPE, b"application/json"),
            ("x-github-event", b"push"),
        ],
        format!(r#"{{"seq":{offset}}}"#).as_bytes(),
    )
}

/// A parked record of a `push` event for `subscription`, its attempt and due time as given.
pub(crate) fn retry_record(
    offset: i64,
    subscription: &str,
    attempt: u32,
    not_before_ms: u64,
) -> OwnedMessage {
    let (attempt, not_before) = (attempt.to_string(), not_before_ms.to_string());
    record(
        &tier(1),
        offset,
        &[
            (headers::EVENT_ID, format!("e-{offset}").as_bytes()),
            (headers::SOURCE, b"github"),
            ("x-github-event", b"push"),
            (control::SUBSCRIPTION, subscription.as_bytes()),
            (control::ATTEMPT, attempt.as_bytes()),
            (control::NOT_BEFORE, not_before.as_bytes()),
            (control::LAST_ERROR, b"answered 500"),
            (control::LAST_STATUS, b"500"),
        ],
        format!(r#"{{"seq":{offset}}}"#).as_bytes(),
    )
}

/// A worker's handling whose Kafka and subscribers are in memory.
pub(crate) struct Kit {
    pub(crate) handling: Arc<Handling>,
    pub(crate) kafka: MemoryProducer,
    /// Where the attempt records go.
    pub(crate) attempts: MemoryProducer,
    pub(crate) subscribers: MemoryDeliverer,
}

/// A kit delivering to `subscriptions`, retrying after 1, 2, 4 then 8 s for
/// [`MAX_ATTEMPTS`], its breakers opening after `breaker_failures` failures (0: never) for
/// 30 s.
pub(crate) fn kit_with(subscriptions: Vec<ResolvedSubscription>, breaker_failures: u32) -> Kit {
    let kafka = MemoryProducer::new();
    let attempts = MemoryProducer::new();
    let subscribers = MemoryDeliverer::new();
    let policy = RetryPolicy {
        initial: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        max_attempts: MAX_ATTEMPTS,
    };
    let source = github_source();
    let metrics = WorkerMetrics::new().expect("metrics");
    let handling = Handling {
        sources: arc_swap::ArcSwap::from_pointee(
            [(source.name.clone(), source)].into_iter().collect(),
        ),
        subscriptions: Arc::new(LiveSubscriptions::new(Arc::new(config()), subscriptions)),
        limiters: Mutex::default(),
        deliverer: Deliverer::memory(subscribers.clone()),
        tiers: tiers_for(&policy, PREFIX),
        policy,
        dead_letter: DEAD_LETTER.into(),
        producer: EventProducer::memory(kafka.clone()),
        attempts: AttemptLog::new(
            Some(ATTEMPTS.into()),
            EventProducer::memory(attempts.clone()),
            metrics.clone(),
        ),
        breakers: Breakers::new(breaker_failures, Duration::from_secs(30)),
        metrics,
        first_attempt_budget: FIRST_ATTEMPT_BUDGET,
        max_postponement: MAX_POSTPONEMENT,
    };
    Kit {
        handling: Arc::new(handling),
        kafka,
        attempts,
        subscribers,
    }
}

/// A kit delivering to `subscriptions`, without circuit breakers.
pub(crate) fn kit(subscriptions: Vec<ResolvedSubscription>) -> Kit {
    kit_with(subscriptions, 0)
}

/// The text of every header of a produced record named `name`.
pub(crate) fn all_headers<'r>(record: &'r ProducedRecord, name: &str) -> Vec<&'r str> {
    record
        .headers
        .iter()
        .filter(|(k, _)| k == name)
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect()
}

/// A number header of a produced record.
pub(crate) fn number(record: &ProducedRecord, name: &str) -> u64 {
    record
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {name} of {record:?}"))
}

/// Remembers the offsets a ledger stores, in order; refuses the ones it is told to, as a
/// consumer refuses offsets of a partition it no longer owns.
#[derive(Debug, Default)]
pub(crate) struct OffsetRecorder {
    attempted: Mutex<Vec<(String, i32, i64)>>,
    refused: Mutex<HashSet<i64>>,
}

impl OffsetRecorder {
    /// Refuse to store `offset`.
    pub(crate) fn refuse(&self, offset: i64) {
        self.refused.lock().expect("lock").insert(offset);
    }

    /// Every store asked for, refused or not.
    pub(crate) fn attempted(&self) -> Vec<i64> {
        self.attempted
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, o)| *o)
            .collect()
    }

    /// The offsets stored, in order, with their topic and partition.
    pub(crate) fn stored(&self) -> Vec<(String, i32, i64)> {
        let refused = self.refused.lock().expect("lock").clone();
        self.attempted
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, _, o)| !refused.contains(o))
            .cloned()
            .collect()
    }

    /// The offsets stored, in order.
    pub(crate) fn offsets(&self) -> Vec<i64> {
        self.stored().into_iter().map(|(_, _, o)| o).collect()
    }
}

impl OffsetStore for OffsetRecorder {
    fn store(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.attempted
            .lock()
            .expect("lock")
            .push((topic.to_owned(), partition, offset));
        if self.refused.lock().expect("lock").contains(&offset) {
            return Err(KafkaError::StoreOffset(RDKafkaErrorCode::UnknownPartition));
        }
        Ok(())
    }
}
