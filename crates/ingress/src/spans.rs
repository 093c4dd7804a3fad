//! Tracing and access-log plumbing of the request path, kept out of the stages: the request's
//! span (OpenTelemetry HTTP server conventions only while exporting), its outcome in metrics
//! and the access log, and the `verify` and `send` child spans.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::{header, Method, Request};
use spillway_core::{headers, EventId};
use spillway_kafka::{Delivered, ProduceError};
use spillway_signature::{Verified, Verifier, VerifyError};
use spillway_telemetry::traces;

use crate::answer::{self, Answer};
use crate::pipeline::Pipeline;
use crate::route::Route;

/// One request from its arrival to its answer: what its metrics, span and access log line
/// need.
#[derive(Debug)]
pub(crate) struct RequestRecord {
    started: Instant,
    span: tracing::Span,
    label: String,
    method: Method,
    version: http::Version,
    peer: SocketAddr,
    client: IpAddr,
    /// Only the access log and the traces need these; neither should cost when it is off.
    path: Option<String>,
    user_agent: Option<String>,
}

// === impl RequestRecord ===

impl RequestRecord {
    /// Opens the request's span, carrying its source and the id its event gets if accepted.
    pub(crate) fn start<B>(
        pipeline: &Pipeline,
        req: &Request<B>,
        route: &Route,
        id: EventId,
        peer: SocketAddr,
        client: IpAddr,
    ) -> Self {
        let exporting = traces::exporting();
        let described = pipeline.access_log || exporting;
        let label = route.label().to_owned();
        let span = if exporting {
            tracing::info_span!(
                "request",
                otel.name = "POST /v1/hooks/{source}",
                otel.kind = "server",
                source = %label,
                event_id = %id,
            )
        } else {
            tracing::info_span!("request", source = %label, event_id = %id)
        };
        let record = Self {
            started: Instant::now(),
            span,
            label,
            method: req.method().clone(),
            version: req.version(),
            peer,
            client,
            path: described.then(|| req.uri().path().to_owned()),
            user_agent: described
                .then(|| headers::text(req.headers(), header::USER_AGENT.as_str()))
                .flatten(),
        };
        if exporting {
            record.describe(req);
        }
        record
    }

    /// The HTTP server conventions, as OpenTelemetry attributes only.
    fn describe<B>(&self, req: &Request<B>) {
        let span = &self.span;
        traces::set_attributes(
            span,
            &[
                ("http.request.method", self.method.to_string().into()),
                ("http.route", "/v1/hooks/{source}".into()),
                ("url.path", self.path.clone().unwrap_or_default().into()),
                (
                    "network.protocol.version",
                    protocol_version(self.version).into(),
                ),
                ("client.address", self.client.to_string().into()),
                (
                    "user_agent.original",
                    self.user_agent.clone().unwrap_or_default().into(),
                ),
            ],
        );
        if self.method != Method::POST {
            span.record("otel.name", format!("{} /v1/hooks/{{source}}", self.method));
        }
        // A sender's own trace is linked, never adopted as the parent.
        traces::link_remote(
            span,
            req.headers()
                .get(headers::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
    }

    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the answer (metrics, span status, access log) and hands back its response.
    pub(crate) fn finish(
        self,
        pipeline: &Pipeline,
        answer: Answer,
    ) -> http::Response<answer::Body> {
        let seconds = self.started.elapsed().as_secs_f64();
        pipeline
            .metrics
            .record(&self.label, answer.outcome, seconds);
        pipeline
            .metrics
            .set_producer_queue(i64::from(pipeline.producer.queued()));
        let status = answer.response.status();
        traces::set_attributes(
            &self.span,
            &[(
                "http.response.status_code",
                i64::from(status.as_u16()).into(),
            )],
        );
        if status.is_server_error() {
            traces::set_error(&self.span, answer.outcome.label());
        }
        if pipeline.access_log {
            tracing::info!(
                target: "spillway::access",
                parent: &self.span,
                method = %self.method,
                path = self.path.as_deref().unwrap_or_default(),
                status = status.as_u16(),
                outcome = answer.outcome.label(),
                duration_ms = seconds * 1000.0,
                peer = %self.peer,
                client = %self.client,
                protocol = protocol_version(self.version),
                user_agent = self.user_agent.as_deref(),
                "request"
            );
        }
        answer.response
    }
}

/// Runs `check` in a `verify` span (while exporting), marking the span with a failure's code.
pub(crate) fn verify(
    verifier: &Verifier,
    check: impl FnOnce() -> Result<Verified, VerifyError>,
) -> Result<Verified, VerifyError> {
    let span = traces::traced(|| {
        tracing::info_span!("verify", signature.scheme = verifier.scheme().name())
    });
    span.in_scope(|| {
        let result = check();
        if let Err(e) = &result {
            traces::set_error(&span, e.code());
        }
        result
    })
}

/// The messaging `send` span of one produce (while exporting).
pub(crate) fn produce(topic: &str, event_id: &str) -> tracing::Span {
    traces::traced(|| {
        let span = tracing::info_span!(
            "send",
            otel.name = %format_args!("send {topic}"),
            otel.kind = "producer",
        );
        traces::set_attributes(
            &span,
            &[
                ("messaging.system", "kafka".into()),
                ("messaging.operation.type", "send".into()),
                ("messaging.destination.name", topic.to_owned().into()),
                ("messaging.message.id", event_id.to_owned().into()),
            ],
        );
        span
    })
}

/// Marks the `send` span with where the record landed, or why it did not.
pub(crate) fn produced(span: &tracing::Span, produced: &Result<Delivered, ProduceError>) {
    match produced {
        Ok(d) => traces::set_attributes(
            span,
            &[
                (
                    "messaging.destination.partition.id",
                    d.partition.to_string().into(),
                ),
                ("messaging.kafka.offset", d.offset.into()),
            ],
        ),
        Err(e) => traces::set_error(span, e.code()),
    }
}

/// The `network.protocol.version` of a request.
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
