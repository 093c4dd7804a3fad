//! Stages 4 and 6, the request's content: decode a compressed body, check it against the
//! source's schema and extract the dedupe and partition keys into the envelope that is written
//! to Kafka. Stage 3, reading the body, is [`crate::read`]; stage 5, verifying the decoded
//! bytes, is [`crate::verify`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, Request, StatusCode};
use spillway_config::ResolvedSource;
use spillway_core::key::{KeyError, KeyInput, KeySource};
use spillway_core::time::millis_since_epoch;
use spillway_core::{headers, trace, BatchPlace, Envelope, EventId, ObjectRef};
use spillway_signature::Verified;
use spillway_telemetry::{IngressMetrics, Outcome};

use crate::answer::{self, Answer};
use crate::budget::{BodyBudget, Charge};
use crate::encoding::{decode, DecodeError, Encoding};
use crate::read::memory_full;
use crate::schema::{self, Checked};
use crate::tls::ClientSubject;

/// What is known of an admitted request as its content is taken in.
#[derive(Debug, Clone)]
pub(crate) struct Intake {
    pub(crate) source: Arc<ResolvedSource>,
    id: EventId,
    hops: u32,
    /// The verified client certificate's subject: the device id of a mutual-TLS source.
    device_id: Option<String>,
    pub(crate) encoding: Encoding,
    /// When the body was in, decoded: the event's `received_at`, and the time its signature's
    /// timestamp is checked against.
    received_at: SystemTime,
    /// The client's address (the peer's, or the one a trusted proxy names).
    client: IpAddr,
}

// === impl Intake ===

impl Intake {
    pub(crate) fn new<B>(
        source: Arc<ResolvedSource>,
        req: &Request<B>,
        id: EventId,
        hops: u32,
        client: IpAddr,
    ) -> Self {
        Self {
            source,
            id,
            hops,
            client,
            device_id: req
                .extensions()
                .get::<ClientSubject>()
                .map(|s| s.0.to_string()),
            encoding: Encoding::Identity,
            received_at: SystemTime::now(),
        }
    }

    /// The id of the request's event; a batch's id.
    pub(crate) fn id(&self) -> EventId {
        self.id
    }

    /// The client's address (the peer's, or the one a trusted proxy names).
    pub(crate) fn client(&self) -> IpAddr {
        self.client
    }

    /// The body is in (a body streamed to object storage, which is not decoded).
    pub(crate) fn body_in(&mut self) {
        self.received_at = SystemTime::now();
    }

    /// When the body was in: the time a signature's timestamp is checked against.
    pub(crate) fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// Stage 4, decode: a gzip or zstd body is decompressed, within the source's size cap, on
    /// a blocking thread (decompression would hold an async worker). The decoded bytes are
    /// charged to the body budget as the output grows, and the compressed bytes are given
    /// back once it is done.
    pub(crate) async fn decode(
        &mut self,
        budget: &BodyBudget,
        charge: &mut Charge,
        body: Bytes,
        retry_after: Duration,
    ) -> Result<Bytes, Answer> {
        if self.encoding == Encoding::Identity {
            self.received_at = SystemTime::now();
            return Ok(body);
        }
        let cap = self.source.max_body_bytes;
        let (encoding, budget, mut held) = (self.encoding, budget.clone(), std::mem::take(charge));
        let decoding = move || {
            let mut room = 0usize;
            let grow = |n: usize| {
                let granted = budget.charge(&mut held, n).is_ok();
                room += if granted { n } else { 0 };
                granted
            };
            let decoded = decode(encoding, body, cap, grow);
            // The compressed body is gone; what is held is the decoded one's room.
            held.shrink_to(room);
            (decoded, held)
        };
        let decoded = match tokio::task::spawn_blocking(decoding).await {
            Ok((decoded, held)) => {
                *charge = held;
                decoded
            }
            Err(e) => {
                tracing::error!(error = %e, "the decoding task failed");
                return Err(answer::internal());
            }
        };
        let decoded = match decoded {
            Ok(b) => b,
            Err(DecodeError::TooLarge(_)) => return Err(answer::too_large(cap)),
            Err(DecodeError::NoRoom) => return Err(memory_full(retry_after)),
            Err(e) => {
                return Err(answer::error(
                    Outcome::BadRequest,
                    StatusCode::BAD_REQUEST,
                    "body_undecodable",
                    e.to_string(),
                ))
            }
        };
        self.received_at = SystemTime::now();
        Ok(decoded)
    }

    /// Stage 6, keys: the body checked against the source's schema, the dedupe and partition
    /// keys, and the envelope written to Kafka (marked invalid for the quarantine when the
    /// body failed the schema).
    // An `Answer` is the request's whole reply, built once on the way out; boxing it would
    // only add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    /// `handshake`: the body is a stored handshake's, shaped by the provider's protocol rather
    /// than as its events are, so it is not checked against the schema, and keys it lacks do
    /// not refuse it (without its dedupe key its body's hash is used, without its partition
    /// key it has none) and it is not counted as a fallback.
    pub(crate) fn keys(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        verified: Verified,
        metrics: &IngressMetrics,
        handshake: bool,
    ) -> Result<Envelope, Answer> {
        let checked = if handshake {
            Checked::Unchecked
        } else {
            schema::check(&self.source, &body)
        };
        let key_input = KeyInput::new(headers, &body, verified.signed_id.as_deref())
            .with_client_subject(self.device_id.as_deref())
            .with_fields(checked.fields());
        let lenient = handshake || checked.is_invalid();
        let (keys, fell_back) = self
            .read_keys(&key_input, lenient, checked.is_invalid())
            .map_err(|(what, e)| bad_key(what, &e))?;
        if fell_back && !lenient {
            metrics.dedupe_fallback(&self.source.name);
        }
        let forwarded = forwarded(headers, &self.source.forward_headers);
        let mut envelope = self.envelope(headers, body, verified.key_id, keys, forwarded);
        envelope.invalid = checked.invalid();
        Ok(envelope)
    }

    // An `Answer` is the request's whole reply, built once on the way out; boxing it would
    // only add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    /// Stage 6 for a body streamed to object storage ([`crate::offload`]), whose source reads
    /// no key from inside its bodies: the keys its headers, signed id or client certificate
    /// give, read as for any request, the body's hash being the SHA-256 taken as it was
    /// stored.
    pub(crate) fn stored_keys(
        &self,
        headers: &HeaderMap,
        stored: &ObjectRef,
        verified: Verified,
        metrics: &IngressMetrics,
    ) -> Result<Envelope, Answer> {
        let key_input = KeyInput::new(headers, &[], verified.signed_id.as_deref())
            .with_client_subject(self.device_id.as_deref())
            .with_body_sha256(Some(&stored.sha256));
        let (keys, fell_back) = self
            .read_keys(&key_input, false, false)
            .map_err(|(what, e)| bad_key(what, &e))?;
        if fell_back {
            metrics.dedupe_fallback(&self.source.name);
        }
        let forwarded = forwarded(headers, &self.source.forward_headers);
        let mut envelope = self.envelope(headers, Bytes::new(), verified.key_id, keys, forwarded);
        envelope.stored = Some(stored.clone());
        Ok(envelope)
    }

    /// Stage 6 for one record of a batch: checked against the source's schema, its keys read
    /// from the record itself (a header key is the request's), in the envelope of the
    /// record's own event `id`. A valid record without its keys is refused alone.
    pub(crate) fn record(
        &self,
        headers: &HeaderMap,
        record: Bytes,
        verified: &Verified,
        forwarded: Vec<(String, Bytes)>,
        place: BatchPlace,
    ) -> Result<Envelope, KeyError> {
        let checked = schema::check(&self.source, &record);
        let key_input = KeyInput::new(headers, &record, verified.signed_id.as_deref())
            .with_client_subject(self.device_id.as_deref())
            .with_fields(checked.fields());
        let (keys, _) = self
            .read_keys(&key_input, checked.is_invalid(), checked.is_invalid())
            .map_err(|(_, e)| e)?;
        let key_id = verified.key_id.clone();
        let mut envelope = self.envelope(headers, record, key_id, keys, forwarded);
        envelope.id = EventId::new_v4();
        envelope.batch = Some(place);
        envelope.invalid = checked.invalid();
        Ok(envelope)
    }

    /// The dedupe and partition keys, and whether the dedupe key fell back to the body's
    /// hash. `lenient` (a stored handshake, a body failing the schema, which is quarantined
    /// whatever its keys): a key the body lacks is no error, the dedupe key falls back to the
    /// body's hash and the partition key is none. Without it only the preset's default
    /// dedupe key falls back (a provider changing its headers must not lose events).
    /// `invalid` (a body failing the schema): deduplicated by its hash, whatever the source's
    /// key, so that the sender's corrected record under the same id is not a duplicate of it.
    fn read_keys(
        &self,
        input: &KeyInput<'_>,
        lenient: bool,
        invalid: bool,
    ) -> Result<(RecordKeys, bool), (&'static str, KeyError)> {
        let source = &self.source;
        let by_hash = (invalid && source.dedupe != KeySource::None).then_some(&KeySource::BodyHash);
        let dedupe = by_hash.unwrap_or(&source.dedupe);
        let (dedupe_key, fell_back) = match dedupe.extract(input) {
            Ok(key) => (key, false),
            Err(e) if source.dedupe_fallback || lenient => {
                tracing::debug!(error = %e, "no dedupe key; keyed by the body's hash");
                let key = KeySource::BodyHash.extract(input);
                (key.map_err(|e| ("dedupe key", e))?, true)
            }
            Err(e) => return Err(("dedupe key", e)),
        };
        let partition_key = match source.partition_key.as_ref().map(|p| p.extract(input)) {
            None => None,
            Some(Ok(k)) => k,
            Some(Err(_)) if lenient => None,
            Some(Err(e)) => return Err(("partition key", e)),
        };
        let keys = RecordKeys {
            dedupe_key,
            partition_key,
        };
        Ok((keys, fell_back))
    }

    /// The provider headers this source lets through into its records.
    pub(crate) fn forwarded(&self, headers: &HeaderMap) -> Vec<(String, Bytes)> {
        forwarded(headers, &self.source.forward_headers)
    }

    fn envelope(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        key_id: Option<String>,
        keys: RecordKeys,
        forwarded: Vec<(String, Bytes)>,
    ) -> Envelope {
        let RecordKeys {
            dedupe_key,
            partition_key,
        } = keys;
        Envelope {
            id: self.id,
            source: self.source.name.clone(),
            received_at_ms: millis_since_epoch(self.received_at),
            record_key: partition_key.or_else(|| dedupe_key.clone()),
            hops: self.hops,
            dedupe_key,
            scheme: self.source.verifier.scheme().name().to_owned(),
            key_id,
            device_id: self.device_id.clone(),
            content_type: headers::text(headers, header::CONTENT_TYPE.as_str()),
            traceparent: trace::new_traceparent(),
            forwarded,
            batch: None,
            invalid: None,
            stored: None,
            event_type: None,
            body,
        }
    }
}

/// The keys of one event.
struct RecordKeys {
    dedupe_key: Option<String>,
    partition_key: Option<String>,
}

fn bad_key(what: &str, e: &KeyError) -> Answer {
    answer::error(
        Outcome::BadRequest,
        StatusCode::BAD_REQUEST,
        e.code(),
        format!("no {what}: {e}"),
    )
}

/// The provider headers the source lets through into the record.
fn forwarded(headers: &HeaderMap, names: &[String]) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for name in names {
        for value in headers.get_all(name.as_str()) {
            out.push((name.clone(), Bytes::copy_from_slice(value.as_bytes())));
        }
    }
    out
}
