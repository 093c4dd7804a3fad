//! Validation of the `telemetry` section: the collector's URL and the span export bounds.

use crate::field::{err, FieldError};
use crate::model::TelemetryConfig;

pub(super) fn validate(telemetry: &TelemetryConfig, errors: &mut Vec<FieldError>) {
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !scheme_ok || endpoint.parse::<http::Uri>().is_err() {
            errors.push(err(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL such as http://otel-collector:4318",
            ));
        }
    }
    if !(0.0..=1.0).contains(&telemetry.trace_sample_ratio) {
        errors.push(err("telemetry.trace_sample_ratio", "must be in [0, 1]"));
    }
    if telemetry.export_interval.is_zero() {
        errors.push(err(
            "telemetry.export_interval",
            "must be greater than zero",
        ));
    }
    if telemetry.export_queue == 0 {
        errors.push(err("telemetry.export_queue", "must be at least 1"));
    }
}
