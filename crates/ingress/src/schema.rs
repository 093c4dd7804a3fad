//! Stage 6's schema check: a body (or a batch's record) checked against its source's schema,
//! where an event that fails it is written (the quarantine topic), and the answer when the
//! source tells the sender (`on_invalid: reject`).

use http::StatusCode;
use spillway_config::{OnInvalid, ResolvedSource};
use spillway_core::key::Fields;
use spillway_core::{Envelope, Invalid};
use spillway_schema::{Valid, Violation};
use spillway_telemetry::Outcome;

use crate::answer::{self, Answer};
use crate::pipeline::Pipeline;

/// The most bytes of failures a quarantine record's `spillway-schema-errors` header carries:
/// the first ones, whole, within it. The sender's record is what is kept; the errors can be
/// worked out again from it.
const MAX_ERRORS_BYTES: usize = 4096;

/// A body checked against its source's schema.
#[derive(Debug)]
pub(crate) enum Checked {
    /// The source has no schema.
    Unchecked,
    Valid(Valid),
    Invalid(Invalid),
}

// === impl Checked ===

impl Checked {
    /// The decoded Protobuf record, for keys read from its fields.
    pub(crate) fn fields(&self) -> Option<&dyn Fields> {
        match self {
            Self::Valid(valid) => Some(valid),
            Self::Unchecked | Self::Invalid(_) => None,
        }
    }

    pub(crate) fn invalid(self) -> Option<Invalid> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Unchecked | Self::Valid(_) => None,
        }
    }

    pub(crate) fn is_invalid(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

/// Checks `body` against `source`'s schema.
pub(crate) fn check(source: &ResolvedSource, body: &[u8]) -> Checked {
    let Some(schema) = &source.schema else {
        return Checked::Unchecked;
    };
    match schema.schema.check(body) {
        Ok(valid) => Checked::Valid(valid),
        Err(violations) => Checked::Invalid(invalid(&violations)),
    }
}

fn invalid(violations: &[Violation]) -> Invalid {
    let reason = violations
        .first()
        .map_or_else(|| "invalid".to_owned(), |v| v.reason.clone());
    let mut kept: Vec<&Violation> = Vec::new();
    let mut size = 2;
    for v in violations {
        let entry = serde_json::to_string(v).unwrap_or_default().len() + 1;
        if size + entry > MAX_ERRORS_BYTES {
            break;
        }
        size += entry;
        kept.push(v);
    }
    Invalid {
        reason,
        errors: serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into()),
        count: violations.len(),
        refused: false,
    }
}

/// The sender is told its invalid records are refused.
pub(crate) fn rejects(source: &ResolvedSource) -> bool {
    source
        .schema
        .as_ref()
        .is_some_and(|s| s.on_invalid == OnInvalid::Reject)
}

/// The topic `envelope` is written to: the quarantine when its body failed the schema.
pub(crate) fn topic_for<'a>(source: &'a ResolvedSource, envelope: &Envelope) -> &'a str {
    match (&source.schema, &envelope.invalid) {
        (Some(schema), Some(_)) => &schema.quarantine_topic,
        _ => &source.topic,
    }
}

/// A message naming the first failure and how many more there are.
pub(crate) fn summary(invalid: &Invalid) -> String {
    let errors: Vec<Violation> = serde_json::from_str(&invalid.errors).unwrap_or_default();
    let first = errors.first().map_or_else(
        || invalid.reason.clone(),
        |v| {
            let at = if v.path.is_empty() {
                "the record"
            } else {
                &v.path
            };
            format!("{at}: {}", v.message)
        },
    );
    match invalid.count {
        0 | 1 => format!("does not match the source's schema: {first}"),
        n => format!(
            "does not match the source's schema: {first} (and {} more)",
            n - 1
        ),
    }
}

/// 422 `record_invalid`, with the failures that fit the quarantine header (the message
/// counts them all).
pub(crate) fn invalid_answer(invalid: &Invalid) -> Answer {
    let errors: serde_json::Value =
        serde_json::from_str(&invalid.errors).unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "error": "record_invalid",
        "message": summary(invalid),
        "errors": errors,
    });
    Answer {
        outcome: Outcome::BadRequest,
        response: answer::json(StatusCode::UNPROCESSABLE_ENTITY, &body),
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// Counts an invalid record as `action` (`quarantined` or `rejected`).
    pub(crate) fn count_invalid(&self, source: &ResolvedSource, envelope: &Envelope, action: &str) {
        if let Some(invalid) = &envelope.invalid {
            self.metrics
                .invalid_record(&source.name, &invalid.reason, action);
        }
    }

    /// Writes a copy of a record refused to its sender into the quarantine, unclaimed (the
    /// sender was told: a retry is refused again, and copied again), marked as refused. The
    /// copy is written in the background: the 422 does not wait for Kafka. A copy Kafka does
    /// not take is logged, not retried: the sender still has the record.
    pub(crate) fn quarantine_refused(&self, source: &ResolvedSource, envelope: &Envelope) {
        self.count_invalid(source, envelope, "rejected");
        let mut copy = envelope.clone();
        if let Some(invalid) = copy.invalid.as_mut() {
            invalid.refused = true;
        }
        let (producer, topic) = (
            self.producer.clone(),
            topic_for(source, envelope).to_owned(),
        );
        let source = source.name.clone();
        self.tasks.spawn(async move {
            if let Err(e) = producer.send(&topic, &copy).await {
                tracing::warn!(source = %source, event_id = %copy.id, topic, error = %e, "a refused record's copy did not reach the quarantine");
            }
        });
    }
}
