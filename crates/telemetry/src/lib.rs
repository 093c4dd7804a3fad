//! Observability for Spillway processes: the metrics catalog, logs and traces, and the admin
//! listener that serves `/healthz`, `/readyz` and `/metrics`.
//!
//! Metric names follow `spillway_<name>_<unit>[_total]`. Labels are bounded: a source label only
//! ever holds a configured source name (or `_unknown`), never a client-chosen string.

mod admin;
pub mod catalog;
mod labels;
mod log_writer;
mod metrics;
pub mod traces;

pub use admin::{serve_admin, AdminRoutes, Encode, Readiness, ReadinessFuture, RouteFuture};
pub use labels::{Outcome, RedisCommand};
pub use metrics::{CircuitState, IngressMetrics, WorkerMetrics, UNKNOWN_SOURCE};
pub use traces::{init, TelemetryError, TelemetryGuard, TraceExport};
