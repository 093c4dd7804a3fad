//! The ingress metrics catalog.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// What became of one request; the `outcome` label of `spillway_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    InFlight,
    Unauthorized,
    BadRequest,
    UnknownSource,
    MethodNotAllowed,
    TooLarge,
    BodyTimeout,
    Overloaded,
    KafkaUnavailable,
    RedisUnavailable,
    LoopDetected,
    /// A bug: the request's task failed. Never expected; alert on any.
    Internal,
}

// === impl Outcome ===

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::UnknownSource => "unknown_source",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::KafkaUnavailable => "kafka_unavailable",
            Self::RedisUnavailable => "redis_unavailable",
            Self::LoopDetected => "loop_detected",
            Self::Internal => "internal",
        }
    }
}

/// The ingress process's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    fail_open: IntCounterVec,
    verify_failures: IntCounterVec,
    producer_queue: IntGauge,
}

/// The label used for requests to a source that is not configured.
pub const UNKNOWN_SOURCE: &str = "_unknown";

// === impl IngressMetrics ===

impl IngressMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "spillway_http_requests_total",
                "Webhook requests by source and outcome.",
            ),
            &["source", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "spillway_http_request_duration_seconds",
                "Time from request head to answer, by source.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["source"],
        )?;
        let in_flight = IntGauge::new(
            "spillway_http_requests_in_flight",
            "Webhook requests being handled now.",
        )?;
        let fail_open = IntCounterVec::new(
            Opts::new(
                "spillway_dedupe_fail_open_total",
                "Events accepted without a dedupe claim because Redis was unavailable (fail-open sources).",
            ),
            &["source"],
        )?;
        let verify_failures = IntCounterVec::new(
            Opts::new(
                "spillway_verification_failures_total",
                "Requests refused by signature verification, by source and reason.",
            ),
            &["source", "reason"],
        )?;
        let producer_queue = IntGauge::new(
            "spillway_kafka_producer_queue_messages",
            "Records handed to the Kafka producer and not yet acknowledged.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("spillway_build_info", "Always 1; labels carry the build."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(fail_open.clone()))?;
        registry.register(Box::new(verify_failures.clone()))?;
        registry.register(Box::new(producer_queue.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            registry,
            requests,
            duration,
            in_flight,
            fail_open,
            verify_failures,
            producer_queue,
        })
    }

    pub fn record(&self, source: &str, outcome: Outcome, seconds: f64) {
        self.requests
            .with_label_values(&[source, outcome.label()])
            .inc();
        self.duration.with_label_values(&[source]).observe(seconds);
    }

    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    pub fn fail_open(&self, source: &str) {
        self.fail_open.with_label_values(&[source]).inc();
    }

    pub fn verify_failure(&self, source: &str, reason: &str) {
        self.verify_failures
            .with_label_values(&[source, reason])
            .inc();
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
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for I/O reasons; a metric family error would be a
        // bug in this catalog, and an empty answer is the right degradation for a scrape.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_follow_the_template_and_encode() {
        let m = IngressMetrics::new().expect("metrics");
        m.record("github", Outcome::Accepted, 0.003);
        m.fail_open("github");
        m.verify_failure("github", "signature_mismatch");
        let text = String::from_utf8(m.encode()).expect("utf8");
        for name in [
            "spillway_http_requests_total{outcome=\"accepted\",source=\"github\"} 1",
            "spillway_http_request_duration_seconds_bucket",
            "spillway_dedupe_fail_open_total{source=\"github\"} 1",
            "spillway_verification_failures_total{reason=\"signature_mismatch\",source=\"github\"} 1",
            "spillway_build_info{version=",
            "spillway_http_requests_in_flight 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert_eq!(m.count("github", Outcome::Accepted), 1);
    }
}

/// The worker process's metrics.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    deliveries: IntCounterVec,
    duration: HistogramVec,
    parked: IntCounterVec,
    dead_letters: IntCounterVec,
    circuit_open: IntGaugeVec,
    lag: IntGaugeVec,
}

// === impl WorkerMetrics ===

impl WorkerMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let deliveries = IntCounterVec::new(
            Opts::new(
                "spillway_worker_deliveries_total",
                "Delivery attempts by subscription and outcome (delivered, failed, refused, postponed).",
            ),
            &["subscription", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "spillway_worker_delivery_duration_seconds",
                "Time of one delivery attempt, by subscription.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["subscription"],
        )?;
        let parked = IntCounterVec::new(
            Opts::new(
                "spillway_worker_retries_total",
                "Deliveries parked in a retry tier, by subscription.",
            ),
            &["subscription"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "spillway_worker_dead_letters_total",
                "Deliveries dead-lettered, by subscription and reason.",
            ),
            &["subscription", "reason"],
        )?;
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "spillway_worker_circuit_open",
                "1 while a subscription's circuit breaker is open or probing.",
            ),
            &["subscription"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "spillway_consumer_lag_messages",
                "Records not yet consumed, per topic and partition assigned to this worker.",
            ),
            &["topic", "partition"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("spillway_build_info", "Always 1; labels carry the build."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(deliveries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(parked.clone()),
            Box::new(dead_letters.clone()),
            Box::new(circuit_open.clone()),
            Box::new(lag.clone()),
            Box::new(build_info),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            deliveries,
            duration,
            parked,
            dead_letters,
            circuit_open,
            lag,
        })
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
        self.parked.with_label_values(&[subscription]).inc();
    }

    pub fn dead_letter(&self, subscription: &str, reason: &str) {
        self.dead_letters
            .with_label_values(&[subscription, reason])
            .inc();
    }

    pub fn circuit(&self, subscription: &str, open: bool) {
        self.circuit_open
            .with_label_values(&[subscription])
            .set(i64::from(open));
    }

    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
