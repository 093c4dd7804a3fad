//! The `telemetry` section: the access log and the export of OpenTelemetry traces.

use std::time::Duration;

use serde::Deserialize;

/// Access log and trace export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// One log line per webhook request (target `spillway::access`).
    pub access_log: bool,
    /// Base URL of an OTLP/HTTP collector (`http://otel-collector:4318`); spans are POSTed to
    /// `{otlp_endpoint}/v1/traces` as protobuf. No endpoint: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, 0 to 1. Traces the ingress starts are sampled here;
    /// the worker follows the ingress's decision carried in the record's traceparent.
    pub trace_sample_ratio: f64,
    /// How often finished spans are sent to the collector.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Spans waiting for export at most; more are dropped (and never block a request).
    pub export_queue: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            access_log: true,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
            export_interval: Duration::from_secs(5),
            export_queue: 8192,
        }
    }
}
