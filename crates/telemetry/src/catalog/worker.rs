//! The worker's metrics: deliveries and their time, retries, dead letters, attempt records,
//! circuit breakers and consumer lag.

use super::{Kind, Label, MetricDef, Process, TOPIC};

/// Latency buckets for one outbound delivery: from a subscriber next door (1 ms) to one at
/// the end of its timeout.
const DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const SUBSCRIPTION: Label = Label {
    name: "subscription",
    values: "a subscription id (from the config file or the registry)",
};

pub const WORKER_DELIVERIES: MetricDef = MetricDef {
    name: "spillway_worker_deliveries_total",
    kind: Kind::Counter,
    process: Process::Worker,
    help: "Delivery attempts by subscription and outcome.",
    labels: &[
        SUBSCRIPTION,
        Label {
            name: "outcome",
            values: "`delivered` (2xx), `failed` (error, timeout or retryable status), `refused` (SSRF guard, 508, every secret expired), `postponed` (circuit open, or a first attempt past `worker.first_attempt_budget`), `dropped` (a retry for a subscription the registry removed)",
        },
    ],
};
pub const WORKER_DELIVERY_DURATION: MetricDef = MetricDef {
    name: "spillway_worker_delivery_duration_seconds",
    kind: Kind::Histogram(DELIVERY_BUCKETS),
    process: Process::Worker,
    help: "Time of one delivery attempt, by subscription.",
    labels: &[SUBSCRIPTION],
};
pub const WORKER_RETRIES: MetricDef = MetricDef {
    name: "spillway_worker_retries_total",
    kind: Kind::Counter,
    process: Process::Worker,
    help: "Deliveries parked in a retry tier (failed, deferred or postponed), by subscription.",
    labels: &[SUBSCRIPTION],
};
pub const WORKER_ATTEMPT_RECORDS: MetricDef = MetricDef {
    name: "spillway_worker_attempt_records_total",
    kind: Kind::Counter,
    process: Process::Worker,
    help: "Records of delivery attempts written to the attempts topic for the console, by result.",
    labels: &[Label {
        name: "result",
        values: "`written`, `lost` (Kafka did not take it: the console will not show that attempt; the delivery is unaffected)",
    }],
};
pub const WORKER_DEAD_LETTERS: MetricDef = MetricDef {
    name: "spillway_worker_dead_letters_total",
    kind: Kind::Counter,
    process: Process::Worker,
    help: "Deliveries dead-lettered, by subscription and reason.",
    labels: &[
        SUBSCRIPTION,
        Label {
            name: "reason",
            values: "`attempts_exhausted`, `target_refused`, `postponed_too_long` (postponed past `worker.max_postponement`), `subscription_unknown` (a retry for a subscription the worker does not know)",
        },
    ],
};
pub const WORKER_CIRCUIT_STATE: MetricDef = MetricDef {
    name: "spillway_worker_circuit_state",
    kind: Kind::Gauge,
    process: Process::Worker,
    help: "A subscription's circuit breaker: 0 closed, 1 half-open (one probe), 2 open.",
    labels: &[SUBSCRIPTION],
};
pub const CONSUMER_LAG: MetricDef = MetricDef {
    name: "spillway_consumer_lag_messages",
    kind: Kind::Gauge,
    process: Process::Worker,
    help: "Records not yet consumed, per topic and partition assigned to this worker (sampled every 5 s).",
    labels: &[
        TOPIC,
        Label {
            name: "partition",
            values: "a partition number of that topic",
        },
    ],
};
