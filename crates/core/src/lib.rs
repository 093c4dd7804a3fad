//! The shapes every Spillway component agrees on: the event envelope that the ingress writes to
//! Kafka, the header names of a record, and the JSON body of an answer.
//!
//! Nothing here performs I/O, so the record layout can be tested and reused (workers, replay,
//! the load generator's reconciliation) without a broker.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod attempt;
pub mod headers;
pub mod key;
pub mod time;
pub mod trace;

/// The identity Spillway gives an accepted event: a random UUID v4, returned in the 202 answer
/// and written into the Kafka record's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(Uuid);

// === impl EventId ===

impl EventId {
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One accepted request, as it is written to Kafka.
///
/// The value is the exact request body: never parsed and re-serialised, so a consumer can check
/// the provider's signature again over the same bytes.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: EventId,
    pub source: String,
    /// Milliseconds since the Unix epoch at which the ingress finished reading the request.
    pub received_at_ms: u64,
    /// The dedupe key this event was claimed under, when the source deduplicates.
    pub dedupe_key: Option<String>,
    /// The verification scheme that accepted the request (`none` when the source opted out).
    pub scheme: String,
    /// The id of the secret that matched, for schemes with secrets.
    pub key_id: Option<String>,
    /// The subject of the verified client certificate, for mutual-TLS sources.
    pub device_id: Option<String>,
    pub content_type: Option<String>,
    /// A W3C traceparent started by the ingress for this event.
    pub traceparent: String,
    /// The provider's own headers that the source allows through, lower-cased names.
    pub forwarded: Vec<(String, Bytes)>,
    /// The Kafka record key: the partition key when configured, else the dedupe key.
    pub record_key: Option<String>,
    /// Deliveries by Spillway workers this event has been through (0 from an outside sender).
    pub hops: u32,
    /// Where the event was in the batch it was split from; None for a request of one event.
    pub batch: Option<BatchPlace>,
    /// Why the body does not match its source's schema: the event goes to the source's
    /// quarantine topic, not to subscribers. None: it matched, or the source has no schema.
    pub invalid: Option<Invalid>,
    /// Where the body is when it was too large to travel in the record (the claim check):
    /// the record's value is then empty and its headers carry this reference.
    pub stored: Option<ObjectRef>,
    /// The event type read from a stored body (the workers read it from the body, which such
    /// a record does not carry); None otherwise.
    pub event_type: Option<String>,
    pub body: Bytes,
}

/// Where a body was put in object storage, and what it must be when read back: what a Kafka
/// record carries in place of a body over its source's `inline_max_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `<scheme>://<bucket>/<key>`, e.g. `s3://spillway-bodies/prod/meters/2026-12-02/<id>`.
    pub uri: String,
    pub size: u64,
    /// Hex SHA-256 of the body.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

// === impl ObjectRef ===

impl ObjectRef {
    /// The reference a record's headers carry, if they carry one (`header` looks a header's
    /// text up by name).
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        Some(Self {
            uri: header(headers::OBJECT_URI)?.to_owned(),
            size: header(headers::OBJECT_SIZE)?.parse().ok()?,
            sha256: header(headers::OBJECT_SHA256)?.to_owned(),
            content_type: header(headers::CONTENT_TYPE).map(str::to_owned),
        })
    }
}

/// How an event failed its source's schema, written into its quarantine record's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The first failure's reason (`type`, `required`, `not_protobuf`...).
    pub reason: String,
    /// The failures, as a JSON array of `{reason, path, message}`, the first ones that fit
    /// a header.
    pub errors: String,
    /// How many failures there were, listed or not.
    pub count: usize,
    /// The sender was answered 422 (`on_invalid: reject`): this record is a copy for the
    /// operators, not an event the sender was told was taken, and is not redriven by default.
    pub refused: bool,
}

/// A record's place in the batch request it was split from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlace {
    /// The request's id: the answer's `batch_id`.
    pub id: EventId,
    /// 0-based, among the batch's records.
    pub index: u32,
}

// === impl Envelope ===

impl Envelope {
    /// The record headers in the order they are written. Spillway's own names all start with
    /// `spillway-`; forwarded provider headers keep their own (lower-cased) names, and the config
    /// refuses to forward a name in Spillway's namespace, so the two never collide.
    pub fn record_headers(&self) -> Vec<(&str, Cow<'_, [u8]>)> {
        // Borrowed where the envelope has the bytes: this runs for every record produced. Room
        // for the headers a webhook's record carries; a batch's or an object's grows once.
        let mut out: Vec<(&str, Cow<'_, [u8]>)> = Vec::with_capacity(12 + self.forwarded.len());
        out.extend([
            (headers::EVENT_ID, self.id.to_string().into_bytes().into()),
            (headers::SOURCE, self.source.as_bytes().into()),
            (
                headers::RECEIVED_AT,
                self.received_at_ms.to_string().into_bytes().into(),
            ),
            (headers::SCHEME, self.scheme.as_bytes().into()),
            (headers::TRACEPARENT, self.traceparent.as_bytes().into()),
        ]);
        if let Some(key) = &self.dedupe_key {
            out.push((headers::DEDUPE_KEY, key.as_bytes().into()));
        }
        if let Some(key_id) = &self.key_id {
            out.push((headers::KEY_ID, key_id.as_bytes().into()));
        }
        if let Some(device_id) = &self.device_id {
            out.push((headers::DEVICE_ID, device_id.as_bytes().into()));
        }
        if let Some(content_type) = &self.content_type {
            out.push((headers::CONTENT_TYPE, content_type.as_bytes().into()));
        }
        if self.hops > 0 {
            out.push((headers::HOP, self.hops.to_string().into_bytes().into()));
        }
        if let Some(place) = &self.batch {
            out.push((headers::BATCH_ID, place.id.to_string().into_bytes().into()));
            out.push((
                headers::BATCH_INDEX,
                place.index.to_string().into_bytes().into(),
            ));
        }
        if let Some(invalid) = &self.invalid {
            out.push((headers::INVALID_REASON, invalid.reason.as_bytes().into()));
            out.push((headers::SCHEMA_ERRORS, invalid.errors.as_bytes().into()));
            let action: &[u8] = if invalid.refused {
                b"rejected"
            } else {
                b"quarantined"
            };
            out.push((headers::INVALID_ACTION, action.into()));
        }
        if let Some(event_type) = &self.event_type {
            out.push((headers::EVENT_TYPE, event_type.as_bytes().into()));
        }
        if let Some(stored) = &self.stored {
            out.push((headers::OBJECT_URI, stored.uri.as_bytes().into()));
            out.push((
                headers::OBJECT_SIZE,
                stored.size.to_string().into_bytes().into(),
            ));
            out.push((headers::OBJECT_SHA256, stored.sha256.as_bytes().into()));
        }
        for (name, value) in &self.forwarded {
            out.push((name.as_str(), value.as_ref().into()));
        }
        out
    }
}

/// The JSON body of every non-2xx answer: a stable machine-readable code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// The JSON body of a 202 (`status: accepted`) or a 200 (`status: duplicate`) answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcceptedBody {
    pub id: String,
    pub status: String,
}

/// The JSON body of the answer to a batch: what happened to each record. `status` on a 202
/// (`accepted`) or a 200 (`duplicate`, every record was one); `error` and `message` otherwise,
/// as in [`ErrorBody`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The request's id, in every record's `spillway-batch-id` header.
    pub batch_id: String,
    /// Records in the batch.
    pub records: usize,
    /// Written to Kafka by this request.
    pub accepted: usize,
    /// Written before (by an earlier request, or earlier in this batch).
    pub duplicate: usize,
    /// Refused for what they are (not JSON, too large, no key): a retry is refused again.
    pub rejected: usize,
    /// Not made durable this time (Kafka or the dedupe store unavailable, the key being
    /// accepted elsewhere): a retry of the whole batch writes only these.
    pub failed: usize,
    /// Each record's event id by index: its own when accepted, the original's when a
    /// duplicate, null when rejected or failed.
    pub event_ids: Vec<Option<String>>,
    /// Every rejected and failed record, by index, with its code.
    pub errors: Vec<RecordErrorBody>,
}

/// Why one record of a batch was not written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordErrorBody {
    pub index: usize,
    pub error: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_v4_and_round_trip() {
        let id = EventId::new_v4();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "version nibble of a v4 uuid");
        assert_eq!(EventId::parse(&text), Some(id));
    }

    #[test]
    fn record_headers_carry_the_envelope() {
        let envelope = Envelope {
            id: EventId::new_v4(),
            source: "github".into(),
            received_at_ms: 1_700_000_000_000,
            dedupe_key: Some("abc".into()),
            scheme: "github".into(),
            key_id: Some("k1".into()),
            device_id: None,
            content_type: Some("application/json".into()),
            traceparent: trace::new_traceparent(),
            forwarded: vec![("x-github-event".into(), Bytes::from_static(b"push"))],
            record_key: Some("abc".into()),
            hops: 1,
            invalid: None,
            stored: None,
            event_type: None,
            batch: Some(BatchPlace {
                id: EventId::new_v4(),
                index: 7,
            }),
            body: Bytes::from_static(b"{}"),
        };
        let headers = envelope.record_headers();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| String::from_utf8_lossy(v.as_ref()).into_owned())
        };
        assert_eq!(find(headers::SOURCE).as_deref(), Some("github"));
        assert_eq!(find(headers::DEDUPE_KEY).as_deref(), Some("abc"));
        assert_eq!(find(headers::KEY_ID).as_deref(), Some("k1"));
        assert_eq!(find("x-github-event").as_deref(), Some("push"));
        assert_eq!(find(headers::RECEIVED_AT).as_deref(), Some("1700000000000"));
        assert_eq!(find(headers::HOP).as_deref(), Some("1"));
        assert_eq!(find(headers::BATCH_INDEX).as_deref(), Some("7"));
    }
}
