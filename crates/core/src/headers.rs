//! Kafka record header names: those the ingress writes and, in [`control`], those the workers
//! add to retry and dead-letter records. They are part of Spillway's contract with consumers:
//! rename one only with a migration note.

/// The event id (UUID v4) returned to the sender in the 202 answer.
pub const EVENT_ID: &str = "spillway-event-id";
/// The configured source name, the `{source}` of `/v1/hooks/{source}`.
pub const SOURCE: &str = "spillway-source";
/// Milliseconds since the Unix epoch, decimal.
pub const RECEIVED_AT: &str = "spillway-received-at";
/// The dedupe key the event was claimed under.
pub const DEDUPE_KEY: &str = "spillway-dedupe-key";
/// The verification scheme that accepted the request.
pub const SCHEME: &str = "spillway-verification-scheme";
/// The id of the secret that matched.
pub const KEY_ID: &str = "spillway-key-id";
/// The subject of the client certificate a mutual-TLS source verified: the device id.
pub const DEVICE_ID: &str = "spillway-device-id";
/// The request's Content-Type, verbatim.
pub const CONTENT_TYPE: &str = "content-type";
/// W3C trace context started by the ingress.
pub const TRACEPARENT: &str = "traceparent";

/// How many times Spillway workers have delivered this event already. Workers send it
/// incremented on every delivery; the ingress refuses an event past its hop limit (a
/// subscription that loops back into the cluster) and carries the count into the record.
pub const HOP: &str = "spillway-hop";

/// For a record split from a batch: the id of the request it came in (the `batch_id` of the
/// answer), shared by the batch's records.
pub const BATCH_ID: &str = "spillway-batch-id";
/// For a record split from a batch: its 0-based place in the batch, decimal.
pub const BATCH_INDEX: &str = "spillway-batch-index";

/// For a record in a quarantine topic: the first reason its body failed its source's schema
/// (`type`, `required`, `not_protobuf`...).
pub const INVALID_REASON: &str = "spillway-invalid-reason";
/// For a record in a quarantine topic: every schema failure, a JSON array of
/// `{"reason", "path", "message"}` (cut to 4 KiB, whole entries only).
pub const SCHEMA_ERRORS: &str = "spillway-schema-errors";

/// For a record in a quarantine topic: `quarantined` (the sender was answered as accepted) or
/// `rejected` (the sender was answered 422; a copy for the operators).
pub const INVALID_ACTION: &str = "spillway-invalid-action";

/// For a record whose body is in object storage (over its source's `inline_max_bytes`): the
/// object's URI (`s3://bucket/key`, `gs://`, `az://`, `file:///`). The record's value is empty.
pub const OBJECT_URI: &str = "spillway-object-uri";
/// For a record whose body is in object storage: the body's size in bytes, decimal.
pub const OBJECT_SIZE: &str = "spillway-object-size";
/// For a record whose body is in object storage: the body's SHA-256, lower-case hex. A reader
/// checks the object against it.
pub const OBJECT_SHA256: &str = "spillway-object-sha256";

/// On a test event the console sent to one subscription (`POST /v1/subscriptions/{id}/test`):
/// its value is that subscription's id. Workers deliver such a record to that subscription
/// only, with a `spillway-test-event: true` header, and mark its attempt records as tests.
pub const TEST_EVENT: &str = "spillway-test-event";

/// The prefix reserved for Spillway's own headers; forwarded provider headers may not use it.
pub const RESERVED_PREFIX: &str = "spillway-";

/// Headers the workers add to retry and dead-letter records (and strip again before a redrive
/// or replay writes new ones).
pub mod control {
    /// The subscription a parked delivery is for.
    pub const SUBSCRIPTION: &str = "spillway-subscription";
    /// The attempt a retry record is for (2 is the first retry); in a dead letter, the
    /// attempts made.
    pub const ATTEMPT: &str = "spillway-attempt";
    /// Milliseconds since the epoch before which a retry record is not attempted.
    pub const NOT_BEFORE: &str = "spillway-not-before";
    /// Why the last attempt failed.
    pub const LAST_ERROR: &str = "spillway-last-error";
    /// The last HTTP status, when there was one.
    pub const LAST_STATUS: &str = "spillway-last-status";
    /// Milliseconds since the epoch at which a delivery was first postponed without an
    /// attempt (its circuit open, its subscription slow); kept while it is postponed again.
    pub const POSTPONED_SINCE: &str = "spillway-postponed-since";
    /// Why an event is a dead letter: `attempts_exhausted`, `target_refused`,
    /// `postponed_too_long` or `subscription_unknown`.
    pub const DEAD_REASON: &str = "spillway-dead-reason";
    /// Milliseconds since the epoch at which the event became a dead letter.
    pub const DEAD_AT: &str = "spillway-dead-at";

    /// Every control header, for stripping.
    pub const ALL: &[&str] = &[
        SUBSCRIPTION,
        ATTEMPT,
        NOT_BEFORE,
        POSTPONED_SINCE,
        LAST_ERROR,
        LAST_STATUS,
        DEAD_REASON,
        DEAD_AT,
    ];
}

/// The event type header a worker sends to subscribers; also, in a record whose body is in
/// object storage, the event type the ingress read from that body.
pub const EVENT_TYPE: &str = "spillway-event-type";

/// The text of header `name` in `headers`, when it is present and visible ASCII.
pub fn text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
