//! What a Kafka record becomes in the index: a source or quarantine record an event row, an
//! attempt record an attempt row, a dead letter a dead-letter row. Pure: no I/O.

use std::collections::HashMap;

use spillway_config::SourceRoute;
use spillway_core::attempt::{AttemptNext, AttemptRecord};
use spillway_core::headers::{self, control};
use spillway_kafka::reader::ReadRecord;

/// What a followed topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// A source's events.
    Source,
    /// The records a source's schema refused.
    Quarantine,
    /// The workers' attempt records.
    Attempts,
    /// The workers' dead letters.
    DeadLetter,
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: String,
    pub source: String,
    pub event_type: Option<String>,
    pub dedupe_key: Option<String>,
    pub received_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub content_type: Option<String>,
    pub body_bytes: i64,
    pub object_uri: Option<String>,
    pub batch_id: Option<String>,
    pub test_for: Option<String>,
    pub quarantine_reason: Option<String>,
    /// Every header of the record, in order, as `[name, value]` pairs.
    pub headers: serde_json::Value,
}

/// One attempt record and where it is in the attempts topic.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub partition: i32,
    pub offset: i64,
    pub record: AttemptRecord,
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    pub event_id: String,
    pub subscription: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub dead_ms: i64,
    pub reason: String,
}

/// A record, as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Event(Box<EventRow>),
    Attempt(Box<AttemptRow>),
    DeadLetter(DeadLetterRow),
}

/// The row of `record` from a topic of `kind`; None for a record that is not Spillway's (no
/// event id, an attempt record that does not parse), which the index skips.
pub fn row_of(
    kind: TopicKind,
    record: &ReadRecord,
    routes: &HashMap<String, SourceRoute>,
) -> Option<Row> {
    match kind {
        TopicKind::Source | TopicKind::Quarantine => {
            event_row(kind, record, routes).map(|e| Row::Event(Box::new(e)))
        }
        TopicKind::Attempts => {
            let mut parsed = AttemptRecord::from_json(&record.value).ok()?;
            for text in [
                &mut parsed.event_id,
                &mut parsed.source,
                &mut parsed.subscription,
            ] {
                *text = pg_text(text);
            }
            for text in [&mut parsed.error, &mut parsed.response_head]
                .into_iter()
                .flatten()
            {
                *text = pg_text(text);
            }
            if let AttemptNext::DeadLetter { reason } = &mut parsed.next {
                *reason = pg_text(reason);
            }
            Some(Row::Attempt(Box::new(AttemptRow {
                partition: record.partition,
                offset: record.offset,
                record: parsed,
            })))
        }
        TopicKind::DeadLetter => dead_letter_row(record).map(Row::DeadLetter),
    }
}

fn event_row(
    kind: TopicKind,
    record: &ReadRecord,
    routes: &HashMap<String, SourceRoute>,
) -> Option<EventRow> {
    let text = |name: &str| record.header(name).map(pg_text);
    let event_id = text(headers::EVENT_ID)?;
    let source = text(headers::SOURCE).unwrap_or_default();
    let event_type = routes.get(&source).and_then(|route| {
        let pairs = record
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()));
        spillway_worker::control::event_type(route, pairs, &record.value).map(|t| pg_text(&t))
    });
    let stored_size = record
        .header(headers::OBJECT_SIZE)
        .and_then(|s| s.parse::<i64>().ok());
    let quarantine_reason = (kind == TopicKind::Quarantine).then(|| {
        let reason = pg_text(record.header(headers::INVALID_REASON).unwrap_or("invalid"));
        match record.header(headers::INVALID_ACTION) {
            Some("rejected") => format!("{reason} (rejected)"),
            _ => reason,
        }
    });
    Some(EventRow {
        event_id,
        event_type,
        dedupe_key: text(headers::DEDUPE_KEY),
        received_ms: record
            .header(headers::RECEIVED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or_default(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        content_type: text(headers::CONTENT_TYPE),
        body_bytes: stored_size.unwrap_or(record.value.len() as i64),
        object_uri: text(headers::OBJECT_URI),
        batch_id: text(headers::BATCH_ID),
        test_for: text(headers::TEST_EVENT),
        quarantine_reason,
        headers: header_pairs(record),
        source,
    })
}

/// Every header as a `[name, value]` pair (invalid UTF-8 replaced).
fn header_pairs(record: &ReadRecord) -> serde_json::Value {
    record
        .headers
        .iter()
        .map(|(name, value)| {
            serde_json::json!([pg_text(name), pg_text(&String::from_utf8_lossy(value))])
        })
        .collect()
}

fn dead_letter_row(record: &ReadRecord) -> Option<DeadLetterRow> {
    let number = |name: &str| record.header(name).and_then(|t| t.parse::<i64>().ok());
    Some(DeadLetterRow {
        event_id: pg_text(record.header(headers::EVENT_ID)?),
        subscription: pg_text(record.header(control::SUBSCRIPTION)?),
        attempts: number(control::ATTEMPT).unwrap_or(0) as i32,
        last_status: number(control::LAST_STATUS).map(|s| s as i32),
        last_error: record.header(control::LAST_ERROR).map(pg_text),
        dead_ms: number(control::DEAD_AT).unwrap_or_default(),
        reason: pg_text(record.header(control::DEAD_REASON).unwrap_or("unknown")),
    })
}

/// `text` as PostgreSQL can store it: its `text` and `jsonb` refuse NUL, which a sender's body
/// (an event type, a dedupe key) or a subscriber's answer may hold; a batch holding one could
/// never be written, and the index would stop at it.
pub fn pg_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A delivery's status after an attempt that went on to `next`.
pub fn delivery_status(next: &AttemptNext) -> &'static str {
    match next {
        AttemptNext::Done => "delivered",
        AttemptNext::DeadLetter { .. } => "dead_lettered",
        AttemptNext::Retry { .. } | AttemptNext::Abandoned => "retrying",
    }
}

#[cfg(test)]
mod tests;
