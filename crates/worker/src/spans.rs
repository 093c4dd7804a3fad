//! Tracing around a delivery attempt: the messaging "process" span that continues the trace the
//! ingress wrote into the record, the HTTP client span of the delivery, and the log line of its
//! outcome. Kept apart so the handling reads as what happens to a delivery, not how it is traced.

use std::borrow::Cow;

use rdkafka::message::{Message, OwnedMessage};
use spillway_config::ResolvedSubscription;
use spillway_telemetry::traces;

use crate::delivery::{DeliveryOutcome, OutboundEvent};

/// The messaging "process" span of one attempt. It continues the trace the ingress wrote into
/// the record; its fields put the event id, source and subscription on every log line inside.
pub(crate) fn process_span(
    message: &OwnedMessage,
    subscription: &ResolvedSubscription,
    event: &OutboundEvent,
    attempt: u32,
) -> tracing::Span {
    let process = if traces::exporting() {
        tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", message.topic()),
            otel.kind = "consumer",
            source = %event.source,
            event_id = %event.event_id,
            subscription = %subscription.id,
            attempt,
        )
    } else {
        tracing::info_span!(
            "process",
            source = %event.source,
            event_id = %event.event_id,
            subscription = %subscription.id,
            attempt,
        )
    };
    if traces::exporting() {
        traces::set_attributes(
            &process,
            &[
                ("messaging.system", "kafka".into()),
                ("messaging.operation.type", "process".into()),
                (
                    "messaging.destination.name",
                    message.topic().to_owned().into(),
                ),
                (
                    "messaging.destination.partition.id",
                    message.partition().to_string().into(),
                ),
                ("messaging.kafka.offset", message.offset().into()),
                ("messaging.message.id", event.event_id.clone().into()),
            ],
        );
        traces::continue_remote(&process, event.traceparent.as_deref());
    }
    process
}

/// The HTTP client span of one delivery attempt, when spans are exported.
pub(crate) fn delivery_span(subscription: &ResolvedSubscription) -> tracing::Span {
    traces::traced(|| {
        let span = tracing::info_span!("deliver", otel.name = "POST", otel.kind = "client");
        let url = &subscription.url;
        let port = url.port_u16().unwrap_or(match url.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        traces::set_attributes(
            &span,
            &[
                ("http.request.method", "POST".into()),
                (
                    "server.address",
                    url.host().unwrap_or_default().to_owned().into(),
                ),
                ("server.port", i64::from(port).into()),
            ],
        );
        span
    })
}

/// The event as it is sent under the client span `client`: the subscriber gets this delivery's
/// own span as its parent; without trace export it gets the record's traceparent.
pub(crate) fn with_span_parent<'a>(
    client: &tracing::Span,
    event: &'a OutboundEvent,
) -> Cow<'a, OutboundEvent> {
    match traces::traceparent(client) {
        Some(tp) => Cow::Owned(OutboundEvent {
            traceparent: Some(tp),
            ..event.clone()
        }),
        None => Cow::Borrowed(event),
    }
}

/// Puts the outcome of a delivery on its client span.
pub(crate) fn record_delivery(span: &tracing::Span, outcome: &DeliveryOutcome) {
    let (status, error) = match outcome {
        DeliveryOutcome::Delivered { status } => (Some(*status), None),
        DeliveryOutcome::Failed {
            status: Some(s), ..
        } => (Some(*s), Some("http_status")),
        DeliveryOutcome::Failed { status: None, .. } => (None, Some("no_answer")),
        DeliveryOutcome::Refused { .. } => (None, Some("refused")),
    };
    if let Some(status) = status {
        traces::set_attributes(
            span,
            &[("http.response.status_code", i64::from(status).into())],
        );
    }
    if let Some(error) = error {
        traces::set_error(span, error);
    }
}

/// One log line per attempt: debug when delivered, info when not.
pub(crate) fn log_outcome(
    subscription: &ResolvedSubscription,
    event: &OutboundEvent,
    attempt: u32,
    outcome: &DeliveryOutcome,
) {
    match outcome {
        DeliveryOutcome::Delivered { status } => {
            tracing::debug!(subscription = %subscription.id, event_id = %event.event_id, source = %event.source, attempt, status, "delivered")
        }
        DeliveryOutcome::Failed { reason, .. } | DeliveryOutcome::Refused { reason } => {
            tracing::info!(subscription = %subscription.id, event_id = %event.event_id, source = %event.source, attempt, reason = %reason, "delivery failed")
        }
    }
}
