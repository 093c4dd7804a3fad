//! The record a worker writes to the attempts topic for every delivery attempt: what the
//! console's indexer reads to show each attempt of an event, and its delivery status.
//!
//! JSON, keyed by the event id, so every attempt of an event lands in one partition, in order.
//! Part of Spillway's contract with the console: a field is added, never renamed.

use serde::{Deserialize, Serialize};

/// At most this many bytes of a subscriber's answer are kept in an attempt record.
pub const RESPONSE_HEAD_BYTES: usize = 1024;

/// At most this many characters of an error are kept in an attempt record.
pub const ERROR_CHARS: usize = 512;

/// One delivery attempt of one event to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The ingress's event id (`spillway-event-id`).
    pub event_id: String,
    /// The source the event came in through.
    pub source: String,
    pub subscription: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the request started, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long the request took, milliseconds.
    pub latency_ms: u64,
    pub outcome: AttemptOutcome,
    /// The subscriber's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why the attempt failed or was refused, cut to [`ERROR_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first [`RESPONSE_HEAD_BYTES`] of the subscriber's answer body, as text (invalid
    /// UTF-8 replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_head: Option<String>,
    /// What became of the delivery after this attempt.
    pub next: AttemptNext,
    /// A test event sent from the console, not one a provider sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A 2xx within the timeout.
    Delivered,
    /// Anything else: another attempt follows unless the attempts are spent.
    Failed,
    /// The target is forbidden (the SSRF guard, a loop, no signing secret): not retried.
    Refused,
    /// No request was made: the delivery was parked without spending an attempt (its circuit
    /// open, its subscription slow, its first attempt past the budget).
    Postponed,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttemptNext {
    /// Delivered: nothing more to do.
    Done,
    /// Parked in a retry tier, due at `due_ms` (milliseconds since the epoch).
    Retry { due_ms: u64 },
    /// Written to the dead-letter topic, with its `spillway-dead-reason`.
    DeadLetter { reason: String },
    /// The worker stopped before the delivery was settled: the next owner attempts it again.
    Abandoned,
}

impl AttemptRecord {
    /// The record's Kafka value.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A record read back from the attempts topic.
    pub fn from_json(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

/// The first `max` characters of `text`.
pub fn cut_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_leaves_out_what_it_lacks() {
        let record = AttemptRecord {
            event_id: "e-1".into(),
            source: "github".into(),
            subscription: "billing".into(),
            attempt: 2,
            at_ms: 1_700_000_000_000,
            latency_ms: 12,
            outcome: AttemptOutcome::Failed,
            http_status: Some(503),
            error: Some("answered 503".into()),
            response_head: None,
            next: AttemptNext::Retry {
                due_ms: 1_700_000_002_000,
            },
            test: false,
        };
        let json = record.to_json();
        let text = String::from_utf8(json.clone()).expect("utf-8");
        assert!(
            text.contains(r#""next":{"kind":"retry","due_ms":1700000002000}"#),
            "{text}"
        );
        assert!(text.contains(r#""outcome":"failed""#), "{text}");
        assert!(
            !text.contains("response_head") && !text.contains("test"),
            "{text}"
        );
        assert_eq!(AttemptRecord::from_json(&json).expect("reads"), record);
    }
}
