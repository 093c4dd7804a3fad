//! Logs and traces: one `tracing` subscriber writes JSON (or text) logs and, when a collector is
//! configured, turns the same spans into OpenTelemetry spans exported over OTLP/HTTP.
//!
//! Spans are `tracing` spans, so a log line written inside a request's span carries the span's
//! fields (the source and the event id) and the same span is the exported server span.
//! [`traceparent`], [`link_remote`] and [`continue_remote`] move W3C trace context in and out;
//! without an exporter they do nothing and the callers fall back to a fresh random traceparent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::log_writer::{BatchedLog, LogWriterGuard};

/// Whether spans are exported; set once by [`init`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported. Spans and attributes that only traces need are made only then:
/// for the logs, a request's span carries its source and event id and nothing else.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// `make()`'s span when spans are exported, else a disabled span that costs nothing.
pub fn traced(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Sets OpenTelemetry attributes on `span` (not `tracing` fields, so the logs never format
/// them); does nothing unless spans are exported.
pub fn set_attributes(span: &tracing::Span, attributes: &[(&'static str, opentelemetry::Value)]) {
    if exporting() {
        for (key, value) in attributes {
            span.set_attribute(*key, value.clone());
        }
    }
}

/// Marks `span` as failed with `error_type` (OpenTelemetry `error.type` and status ERROR).
pub fn set_error(span: &tracing::Span, error_type: &'static str) {
    if exporting() {
        span.set_attribute("error.type", error_type);
        span.set_status(opentelemetry::trace::Status::error(error_type));
    }
}

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct TraceExport {
    /// Base URL of an OTLP/HTTP collector; spans go to `{endpoint}/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the resource: `spillway-ingress` or `spillway-worker`.
    pub service_name: String,
    /// Share of new traces recorded; a remote parent's decision is followed.
    pub sample_ratio: f64,
    pub export_interval: Duration,
    pub export_queue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("cannot start the log writer's thread: {0}")]
    LogWriter(#[source] std::io::Error),
}

/// Keeps the log writer and the trace exporter alive; dropping it flushes both, so hold it
/// until the process is done.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    _log_writer: LogWriterGuard,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Spans still queued are sent now; a collector that is down must not hold up exit.
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "trace exporter shutdown");
            }
        }
    }
}

/// Installs the process's subscriber: logs on stderr (JSON lines when `json`, filtered by
/// `RUST_LOG`, default `info`) and, with `export`, spans to an OTLP collector.
///
/// Log lines are written by a background thread every few milliseconds
/// ([`crate::log_writer`]), so a slow stderr never blocks a request; if it falls 16 MiB behind,
/// further lines are dropped (and counted) rather than held without bound.
pub fn init(json: bool, export: Option<&TraceExport>) -> Result<TelemetryGuard, TelemetryError> {
    let (writer, log_writer) =
        BatchedLog::start(std::io::stderr()).map_err(TelemetryError::LogWriter)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into files and log collectors.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    let provider = export.map(tracer_provider).transpose()?;
    // Spans are exported at INFO whatever RUST_LOG says: quieter logs must not cut traces.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("spillway"))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(TelemetryGuard {
        provider,
        _log_writer: log_writer,
    })
}

fn tracer_provider(export: &TraceExport) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
    let failed = |reason: String| TelemetryError::Exporter {
        endpoint: export.endpoint.clone(),
        reason,
    };
    // reqwest is built without a crypto provider of its own: the process uses ring for every
    // TLS connection. Installing it fails only when one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let endpoint = format!("{}/v1/traces", export.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(endpoint)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(export.export_interval)
                .with_max_queue_size(export.export_queue)
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            export.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(export.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// The W3C `traceparent` of `span`, or `None` when spans are not exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Parses a W3C `traceparent`; `None` when it is malformed.
pub fn remote_context(traceparent: &str) -> Option<SpanContext> {
    // The propagator accepts ids shorter than the spec's 32 and 16 hex digits; a sender's
    // header must have the exact shape.
    let mut parts = traceparent.trim().split('-');
    let widths = [2, 32, 16, 2];
    let shaped = widths.iter().all(|w| {
        parts
            .next()
            .is_some_and(|p| p.len() == *w && p.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !shaped || parts.next().is_some() {
        return None;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let sc = context.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Links `span` to an untrusted outside trace: the sender's trace stays findable, but it does
/// not become the parent (a sender could otherwise choose our trace ids and sampling).
pub fn link_remote(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(remote_context) {
        span.add_link(sc);
    }
}

/// Continues a trace Spillway started (the traceparent of a Kafka record): `span` becomes a
/// child of the producing span and also links to it, as the messaging conventions ask of a
/// consumer's processing span.
pub fn continue_remote(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(remote_context) {
        let parent = opentelemetry::Context::new().with_remote_span_context(sc.clone());
        // Fails only without the OpenTelemetry layer, when there is nothing to continue.
        let _ = span.set_parent(parent);
        span.add_link(sc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_malformed_ones_do_not() {
        let sc = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(remote_context(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn without_an_exporter_spans_have_no_traceparent() {
        let span = tracing::info_span!("request");
        assert_eq!(traceparent(&span), None);
        // And the helpers are harmless no-ops.
        link_remote(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        continue_remote(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
    }
}
