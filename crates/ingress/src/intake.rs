//! Stages 3, 4 and 6, the request's content: read the body (bounded in size and time), decode a
//! compressed one, and extract the dedupe and partition keys into the envelope that is written
//! to Kafka. Stage 5, verifying the decoded bytes, is [`crate::verify`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use spillway_config::ResolvedSource;
use spillway_core::key::{KeyError, KeyInput, KeySource};
use spillway_core::time::millis_since_epoch;
use spillway_core::{headers, trace, BatchPlace, Envelope, EventId};
use spillway_signature::Verified;
use spillway_telemetry::{IngressMetrics, Outcome};
use tokio::time::Instant;

use crate::answer::{self, Answer};
use crate::budget::{BodyBudget, Charge, ClientPlace, Exhausted};
use crate::encoding::{decode, encoding_of, DecodeError, Encoding};
use crate::pipeline::{BodyError, Pipeline};
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
    encoding: Encoding,
    /// When the body was in, decoded: the event's `received_at`, and the time its signature's
    /// timestamp is checked against.
    received_at: SystemTime,
}

// === impl Intake ===

impl Intake {
    pub(crate) fn new<B>(
        source: Arc<ResolvedSource>,
        req: &Request<B>,
        id: EventId,
        hops: u32,
    ) -> Self {
        Self {
            source,
            id,
            hops,
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
            .read_keys(&key_input, lenient)
            .map_err(|(what, e)| bad_key(what, &e))?;
        if fell_back && !lenient {
            metrics.dedupe_fallback(&self.source.name);
        }
        let forwarded = forwarded(headers, &self.source.forward_headers);
        let mut envelope = self.envelope(headers, body, verified.key_id, keys, forwarded);
        envelope.invalid = checked.invalid();
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
            .read_keys(&key_input, checked.is_invalid())
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
    fn read_keys(
        &self,
        input: &KeyInput<'_>,
        lenient: bool,
    ) -> Result<(RecordKeys, bool), (&'static str, KeyError)> {
        let source = &self.source;
        let (dedupe_key, fell_back) = match source.dedupe.extract(input) {
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
            body,
        }
    }
}

/// The keys of one event.
struct RecordKeys {
    dedupe_key: Option<String>,
    partition_key: Option<String>,
}

// === impl Pipeline ===

impl Pipeline {
    /// Stage 3, read: the body, refused when its coding is unknown, when it announces or
    /// reaches more than the source's cap, when it arrives slower than `min_body_rate` after
    /// the grace period or not within the read timeout, or when the body budget has not got
    /// its bytes. Every byte read is charged to `charge` as it arrives.
    pub(crate) async fn read<B>(
        &self,
        intake: &mut Intake,
        headers: &HeaderMap,
        body: B,
        place: &ClientPlace,
        charge: &mut Charge,
    ) -> Result<Bytes, Answer>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        intake.encoding = encoding_of(headers).map_err(|e| {
            answer::error(
                Outcome::UnsupportedEncoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                e.to_string(),
            )
        })?;
        let cap = intake.source.max_body_bytes;
        let declared = content_length(headers);
        let mut body = std::pin::pin!(body);
        if declared.is_some_and(|length| length > cap) {
            // A client that asked `Expect: 100-continue` waits for this answer before sending
            // its body: nothing to read, and reading would invite the upload.
            if !headers.contains_key(header::EXPECT) {
                self.drain(body.as_mut(), 0, declared).await;
            }
            return Err(answer::too_large(cap));
        }
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let mut chunks = Vec::new();
        let mut received = 0usize;
        let started = Instant::now();
        let hard = started + self.body_read_timeout;
        let mut last_frame = started;
        loop {
            let deadline = hard.min(self.rate_deadline(started, last_frame, received));
            let frame = match tokio::time::timeout_at(deadline, body.as_mut().frame()).await {
                Err(_) if deadline == hard => return Err(self.body_timeout()),
                Err(_) => return Err(self.body_too_slow()),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let e: BodyError = e.into();
                    return Err(answer::error(
                        Outcome::BadRequest,
                        StatusCode::BAD_REQUEST,
                        "body_unreadable",
                        format!("the body could not be read: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            last_frame = Instant::now();
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing Spillway keeps
            };
            received += data.len();
            if received > cap {
                // What was read is given back (the budget and the client's share) before
                // the rest is read and dropped.
                drop(chunks);
                charge.shrink_to(0);
                self.drain(body.as_mut(), received as u64, declared).await;
                return Err(answer::too_large(intake.source.max_body_bytes));
            }
            place
                .hold(charge, data.len())
                .map_err(|Exhausted| client_overloaded(self.retry_after))?;
            self.budget
                .charge(charge, data.len())
                .map_err(|Exhausted| memory_full(self.retry_after))?;
            chunks.push(data);
        }
        let body = self.join(chunks, received, charge)?;
        self.metrics.body_read(&intake.source.name, body.len());
        Ok(body)
    }

    /// When a body that has `received` bytes so far must have sent more: `min_body_rate`
    /// bytes per second after the grace period, on average, and never a pause between frames
    /// longer than the grace period (a client that sends most of a body at once and then
    /// stalls would otherwise hold its bytes on the credit of its average).
    fn rate_deadline(&self, started: Instant, last_frame: Instant, received: usize) -> Instant {
        if self.min_body_rate == 0 {
            return started + self.body_read_timeout;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_body_rate as f64);
        (started + self.body_rate_grace + earned).min(last_frame + self.body_rate_grace)
    }

    /// One contiguous body: the single frame as it is, or the frames copied once into one
    /// buffer (charged while both exist, then the frames' bytes are given back).
    // An `Answer` is the request's whole reply, built once on the way out; boxing it would
    // only add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    fn join(&self, chunks: Vec<Bytes>, len: usize, charge: &mut Charge) -> Result<Bytes, Answer> {
        if chunks.len() <= 1 {
            return Ok(chunks.into_iter().next().unwrap_or_default());
        }
        self.budget
            .charge(charge, len)
            .map_err(|Exhausted| memory_full(self.retry_after))?;
        let mut joined = BytesMut::with_capacity(len);
        for chunk in chunks {
            joined.extend_from_slice(&chunk);
        }
        charge.shrink_to(len);
        Ok(joined.freeze())
    }

    fn body_timeout(&self) -> Answer {
        answer::error(
            Outcome::BodyTimeout,
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body was not received within {:?}",
                self.body_read_timeout
            ),
        )
    }

    fn body_too_slow(&self) -> Answer {
        answer::error(
            Outcome::BodyTimeout,
            StatusCode::REQUEST_TIMEOUT,
            "body_too_slow",
            format!(
                "the body arrived slower than {} bytes per second",
                self.min_body_rate
            ),
        )
    }
}

/// 503: the client holds as many body bytes as one client may.
fn client_overloaded(retry_after: Duration) -> Answer {
    answer::retry_later(
        Outcome::ClientLimit,
        StatusCode::SERVICE_UNAVAILABLE,
        "client_overloaded",
        "this client address holds too many request bodies; retry later",
        retry_after,
    )
}

/// 503: the body budget has not got the bytes this request needs now.
fn memory_full(retry_after: Duration) -> Answer {
    answer::retry_later(
        Outcome::MemoryFull,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many request bodies in memory; retry later",
        retry_after,
    )
}

fn bad_key(what: &str, e: &KeyError) -> Answer {
    answer::error(
        Outcome::BadRequest,
        StatusCode::BAD_REQUEST,
        e.code(),
        format!("no {what}: {e}"),
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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
