//! The ingress and worker metrics, built from the catalog.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{
    Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

use crate::catalog;
use crate::labels::{Outcome, RedisCommand};

/// The ingress process's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    body: HistogramVec,
    in_flight: IntGauge,
    in_flight_limit: IntGauge,
    shed: IntCounterVec,
    verify_failures: IntCounterVec,
    dedupe_hits: IntCounterVec,
    claims_in_flight: IntGauge,
    fail_open: IntCounterVec,
    dedupe_fallback: IntCounterVec,
    batch_records: IntCounterVec,
    invalid_records: IntCounterVec,
    verifications: IntCounterVec,
    handshakes: IntCounterVec,
    reloads: IntCounterVec,
    blocked: IntCounterVec,
    redis_duration: HistogramVec,
    redis_errors: IntCounterVec,
    redis_direct: IntCounter,
    redis_direct_fallbacks: IntCounter,
    /// Held while the two above are brought up to the store's counts, so that two scrapes at
    /// once do not both add the same difference.
    direct_sync: Arc<Mutex<()>>,
    produce_duration: HistogramVec,
    produce_errors: IntCounterVec,
    producer_queue: IntGauge,
}

/// The label used for requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

// === impl IngressMetrics ===

impl IngressMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        use catalog::*;
        let r = Registry::new();
        build_info(&r, "ingress")?;
        let metrics = Self {
            requests: HTTP_REQUESTS.counter(&r)?,
            duration: HTTP_REQUEST_DURATION.histogram(&r)?,
            body: HTTP_REQUEST_BODY.histogram(&r)?,
            in_flight: HTTP_IN_FLIGHT.single_gauge(&r)?,
            in_flight_limit: HTTP_IN_FLIGHT_LIMIT.single_gauge(&r)?,
            shed: HTTP_SHED.counter(&r)?,
            verify_failures: VERIFICATION_FAILURES.counter(&r)?,
            dedupe_hits: DEDUPE_HITS.counter(&r)?,
            claims_in_flight: DEDUPE_CLAIMS_IN_FLIGHT.single_gauge(&r)?,
            fail_open: DEDUPE_FAIL_OPEN.counter(&r)?,
            dedupe_fallback: DEDUPE_FALLBACK.counter(&r)?,
            batch_records: BATCH_RECORDS.counter(&r)?,
            invalid_records: INVALID_RECORDS.counter(&r)?,
            verifications: VERIFICATIONS.counter(&r)?,
            handshakes: HANDSHAKES.counter(&r)?,
            reloads: CONFIG_RELOADS.counter(&r)?,
            blocked: BLOCKED_CLIENTS.counter(&r)?,
            redis_duration: REDIS_COMMAND_DURATION.histogram(&r)?,
            redis_errors: REDIS_ERRORS.counter(&r)?,
            redis_direct: REDIS_DIRECT_COMMANDS.single_counter(&r)?,
            redis_direct_fallbacks: REDIS_DIRECT_FALLBACKS.single_counter(&r)?,
            direct_sync: Arc::default(),
            produce_duration: KAFKA_PRODUCE_DURATION.histogram(&r)?,
            produce_errors: KAFKA_PRODUCE_ERRORS.counter(&r)?,
            producer_queue: KAFKA_PRODUCER_QUEUE.single_gauge(&r)?,
            registry: r,
        };
        for command in RedisCommand::ALL {
            metrics.redis_errors.with_label_values(&[command.label()]);
        }
        for result in ["ok", "failed"] {
            metrics.reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Creates the series of a configured source and its topic at 0, so that dashboards and
    /// alerts see a flat line rather than no data until the first event of each kind.
    /// `produce_errors` are the reasons a produce can fail (the Kafka crate's codes).
    pub fn init_source(&self, source: &str, topic: &str, produce_errors: &[&str]) {
        for outcome in Outcome::ALL {
            self.requests.with_label_values(&[source, outcome.label()]);
        }
        for reason in [
            "max_in_flight",
            "body_memory",
            "client_limit",
            "rate_limited",
        ] {
            self.shed.with_label_values(&[source, reason]);
        }
        for state in ["done", "in_flight"] {
            self.dedupe_hits.with_label_values(&[source, state]);
        }
        self.fail_open.with_label_values(&[source]);
        self.dedupe_fallback.with_label_values(&[source]);
        self.blocked.with_label_values(&[source]);
        for reason in produce_errors {
            self.produce_errors.with_label_values(&[topic, reason]);
        }
    }

    /// Records a request's answer; a shed request (`Overloaded`) is counted as shed too.
    pub fn record(&self, source: &str, outcome: Outcome, seconds: f64) {
        self.requests
            .with_label_values(&[source, outcome.label()])
            .inc();
        self.duration.with_label_values(&[source]).observe(seconds);
        let shed = match outcome {
            Outcome::Overloaded => Some("max_in_flight"),
            Outcome::MemoryFull => Some("body_memory"),
            Outcome::ClientLimit => Some("client_limit"),
            Outcome::RateLimited => Some("rate_limited"),
            _ => None,
        };
        if let Some(reason) = shed {
            self.shed.with_label_values(&[source, reason]).inc();
        }
    }

    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// The adaptive in-flight limit now.
    pub fn in_flight_limit(&self) -> &IntGauge {
        &self.in_flight_limit
    }

    pub fn body_read(&self, source: &str, bytes: usize) {
        self.body.with_label_values(&[source]).observe(bytes as f64);
    }

    pub fn verify_failure(&self, source: &str, reason: &str) {
        self.verify_failures
            .with_label_values(&[source, reason])
            .inc();
    }

    /// A key already claimed: `done` (answered as a duplicate) or `in_flight`.
    pub fn dedupe_hit(&self, source: &str, done: bool) {
        let state = if done { "done" } else { "in_flight" };
        self.dedupe_hits.with_label_values(&[source, state]).inc();
    }

    /// Claims held: incremented on a claim, decremented on its commit or release.
    pub fn claims_in_flight(&self) -> &IntGauge {
        &self.claims_in_flight
    }

    pub fn fail_open(&self, source: &str) {
        self.fail_open.with_label_values(&[source]).inc();
    }

    /// An authentic event without its preset's id, keyed by its body's hash.
    pub fn dedupe_fallback(&self, source: &str) {
        self.dedupe_fallback.with_label_values(&[source]).inc();
    }

    /// Creates a batch source's record series at 0 (see [`IngressMetrics::init_source`]).
    pub fn init_batch_source(&self, source: &str) {
        for result in ["accepted", "duplicate", "rejected", "failed"] {
            self.batch_records.with_label_values(&[source, result]);
        }
    }

    /// `count` records of a batch request for `source` ended as `result`.
    pub fn batch_records(&self, source: &str, result: &str, count: usize) {
        self.batch_records
            .with_label_values(&[source, result])
            .inc_by(count as u64);
    }

    /// A record of `source` did not match its schema, first for `reason`, and was
    /// `quarantined` or `rejected`.
    pub fn invalid_record(&self, source: &str, reason: &str, action: &str) {
        self.invalid_records
            .with_label_values(&[source, reason, action])
            .inc();
    }

    /// A signature matched the secret `key_id`.
    pub fn verified(&self, source: &str, key_id: &str) {
        self.verifications
            .with_label_values(&[source, key_id])
            .inc();
    }

    /// A registration handshake of `kind` was `answered` or `refused`.
    pub fn handshake(&self, source: &str, kind: &str, result: &str) {
        self.handshakes
            .with_label_values(&[source, kind, result])
            .inc();
    }

    /// A reload of the sources ended `ok` or `failed`.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Creates a source's verification series at 0 for each of its secrets.
    pub fn init_key(&self, source: &str, key_id: &str) {
        self.verifications.with_label_values(&[source, key_id]);
    }

    /// A client address was blocked after failing verification on `source` too often.
    pub fn client_blocked(&self, source: &str) {
        self.blocked.with_label_values(&[source]).inc();
    }

    pub fn redis_command(&self, command: RedisCommand, seconds: f64, ok: bool) {
        self.redis_duration
            .with_label_values(&[command.label()])
            .observe(seconds);
        if !ok {
            self.redis_errors
                .with_label_values(&[command.label()])
                .inc();
        }
    }

    /// Brings the direct-route counters up to the shared store's own counts since the process
    /// started: the commands `answered` on direct connections and the `fallbacks` from them.
    /// The store keeps those counts on its hot path as plain atomics; they are read here, before
    /// a scrape, rather than counted twice.
    pub fn sync_direct_routes(&self, answered: u64, fallbacks: u64) {
        let _one_at_a_time = self
            .direct_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (counter, total) in [
            (&self.redis_direct, answered),
            (&self.redis_direct_fallbacks, fallbacks),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// One produce: its time to the delivery report, and `Err(reason)` when Kafka refused it.
    pub fn produce(&self, topic: &str, seconds: f64, error: Option<&str>) {
        self.produce_duration
            .with_label_values(&[topic])
            .observe(seconds);
        if let Some(reason) = error {
            self.produce_errors
                .with_label_values(&[topic, reason])
                .inc();
        }
    }

    pub fn set_producer_queue(&self, n: i64) {
        self.producer_queue.set(n);
    }

    /// How many requests of `source` ended with `outcome` so far.
    pub fn count(&self, source: &str, outcome: Outcome) -> u64 {
        self.requests
            .with_label_values(&[source, outcome.label()])
            .get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.registry)
    }
}

/// The worker process's metrics.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    /// Subscriptions whose series exist (see [`WorkerMetrics::init_subscription`]).
    initialized: Arc<Mutex<HashSet<String>>>,
    deliveries: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    attempt_records: IntCounterVec,
    circuit_state: IntGaugeVec,
    lag: IntGaugeVec,
    reloads: IntCounterVec,
}

/// A circuit breaker's state, the value of `spillway_worker_circuit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

// === impl WorkerMetrics ===

impl WorkerMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        use catalog::*;
        let r = Registry::new();
        build_info(&r, "worker")?;
        Ok(Self {
            deliveries: WORKER_DELIVERIES.counter(&r)?,
            duration: WORKER_DELIVERY_DURATION.histogram(&r)?,
            retries: WORKER_RETRIES.counter(&r)?,
            dead_letters: WORKER_DEAD_LETTERS.counter(&r)?,
            attempt_records: WORKER_ATTEMPT_RECORDS.counter(&r)?,
            circuit_state: WORKER_CIRCUIT_STATE.gauge(&r)?,
            lag: CONSUMER_LAG.gauge(&r)?,
            reloads: CONFIG_RELOADS.counter(&r)?,
            initialized: Arc::default(),
            registry: r,
        })
    }

    /// A reload of the sources: swapped in (`ok`) or refused.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Creates a subscription's series at 0 the first time it is seen, so that its dead
    /// letters and retries show as a flat line, not as no data, until something fails.
    pub fn init_subscription(&self, subscription: &str) {
        let mut seen = self
            .initialized
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(subscription) {
            return;
        }
        for outcome in ["delivered", "failed", "refused", "postponed", "dropped"] {
            self.deliveries.with_label_values(&[subscription, outcome]);
        }
        self.retries.with_label_values(&[subscription]);
        for reason in [
            "attempts_exhausted",
            "target_refused",
            "postponed_too_long",
            "subscription_unknown",
        ] {
            self.dead_letters.with_label_values(&[subscription, reason]);
        }
        self.circuit_state.with_label_values(&[subscription]);
        seen.insert(subscription.to_owned());
    }

    pub fn delivery(&self, subscription: &str, outcome: &str, seconds: Option<f64>) {
        self.deliveries
            .with_label_values(&[subscription, outcome])
            .inc();
        if let Some(s) = seconds {
            self.duration.with_label_values(&[subscription]).observe(s);
        }
    }

    pub fn parked(&self, subscription: &str) {
        self.retries.with_label_values(&[subscription]).inc();
    }

    pub fn dead_letter(&self, subscription: &str, reason: &str) {
        self.dead_letters
            .with_label_values(&[subscription, reason])
            .inc();
    }

    /// An attempt record written to the attempts topic (`true`) or not taken by Kafka.
    pub fn attempt_record(&self, written: bool) {
        let result = if written { "written" } else { "lost" };
        self.attempt_records.with_label_values(&[result]).inc();
    }

    pub fn circuit(&self, subscription: &str, state: CircuitState) {
        self.circuit_state
            .with_label_values(&[subscription])
            .set(state as i64);
    }

    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Drops the lag series of a partition this worker no longer owns: its last value would go
    /// on firing (or hiding) alerts for a partition another worker now reads.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        let _ = self
            .lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// The subscriptions whose series exist.
    pub fn subscriptions_seen(&self) -> Vec<String> {
        self.initialized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Drops the circuit series of a subscription that no longer exists (its counters stay:
    /// they are totals, and a rate over them falls to zero by itself).
    pub fn forget_subscription(&self, subscription: &str) {
        let _ = self.circuit_state.remove_label_values(&[subscription]);
        self.initialized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(subscription);
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(&self.registry)
    }
}

fn encode(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for I/O reasons; a metric family error would be a bug in
    // the catalog, and an empty answer is the right degradation for a scrape.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    out
}

#[cfg(test)]
mod tests;
