//! Observability for Spillway processes: the metrics catalog, log setup, and the admin
//! listener that serves `/healthz`, `/readyz` and `/metrics`.
//!
//! Metric names follow `spillway_<name>_<unit>[_total]`. Labels are bounded: a source label only
//! ever holds a configured source name (or `_unknown`), never a client-chosen string.

mod admin;
pub mod catalog;
mod metrics;

pub use admin::{serve_admin, AdminRoutes, Encode, Readiness, ReadinessFuture, RouteFuture};
pub use metrics::{
    CircuitState, IngressMetrics, Outcome, RedisCommand, WorkerMetrics, UNKNOWN_SOURCE,
};

/// Structured logs on stderr: JSON lines when `json`, else human-readable. `RUST_LOG` filters
/// (default `info`).
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests starting several servers) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
