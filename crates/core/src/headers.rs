//! Kafka record header names written by the ingress. They are part of Spillway's contract with
//! consumers: rename one only with a migration note.

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

/// The prefix reserved for Spillway's own headers; forwarded provider headers may not use it.
pub const RESERVED_PREFIX: &str = "spillway-";
