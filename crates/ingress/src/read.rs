//! Stage 3, read: the body, bounded in size, in time and in memory, each byte charged as it
//! arrives.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use spillway_telemetry::Outcome;
use tokio::time::Instant;

use crate::answer::{self, Answer};
use crate::budget::{Charge, ClientPlace, Exhausted};
use crate::encoding::encoding_of;
use crate::intake::Intake;
use crate::pipeline::{BodyError, Pipeline};

// === impl Pipeline ===

impl Pipeline {
    /// Stage 3, read: the body, refused when its coding is unknown, when it announces or
    /// reaches more than the source's cap, when it arrives slower than `min_body_rate` after
    /// the grace period or not within the read timeout, or when the body budget has not got
    /// its bytes. Every byte read is charged to `charge` as it arrives. A body over the
    /// source's `inline_max_bytes` that can be verified as it streams goes on to object
    /// storage ([`crate::offload`]) rather than into memory.
    pub(crate) async fn read<B>(
        &self,
        intake: &mut Intake,
        parts: &http::request::Parts,
        body: B,
        place: &ClientPlace,
        charge: &mut Charge,
    ) -> Result<ReadBody, Answer>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        let headers = &parts.headers;
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
        // Switched to streaming once the bytes are in, not on the length a client announces:
        // an upload's room in the budget is taken as its bytes arrive, as any body's.
        let streamed = self.streams_past(intake);
        let mut frames = Frames::new(self, body.as_mut(), declared);
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let mut chunks = Vec::new();
        while let Some(data) = frames.next().await? {
            if frames.received > cap {
                // What was read is given back (the budget and the client's share) before
                // the rest is read and dropped.
                drop(chunks);
                charge.shrink_to(0);
                return Err(frames.refuse_too_large(intake.source.max_body_bytes).await);
            }
            place
                .hold(charge, data.len())
                .map_err(|Exhausted| client_overloaded(self.retry_after))?;
            self.budget
                .charge(charge, data.len())
                .map_err(|Exhausted| memory_full(self.retry_after))?;
            chunks.push(data);
            if streamed.is_some_and(|inline| frames.received as u64 > inline) {
                // Boxed: a rare path, kept out of every request's future (see `crate::detach`).
                return Box::pin(
                    self.stream_to_store(intake, parts, frames, chunks, place, charge),
                )
                .await;
            }
        }
        let body = self.join(chunks, frames.received, charge)?;
        self.metrics.body_read(&intake.source.name, body.len());
        Ok(ReadBody::Whole(body))
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

    pub(crate) fn body_timeout(&self) -> Answer {
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

/// The body a request brought: in memory, or streamed to object storage.
#[derive(Debug)]
pub(crate) enum ReadBody {
    Whole(Bytes),
    /// Boxed: this one is rare, and large.
    Stored(Box<crate::offload::Streamed>),
}

/// A body's frames as they come, each within the deadlines of the read: the read timeout, and
/// `min_body_rate` after the grace period.
pub(crate) struct Frames<'p, 'b, B> {
    pipeline: &'p Pipeline,
    body: Pin<&'b mut B>,
    declared: Option<u64>,
    /// Bytes received so far.
    pub(crate) received: usize,
    started: Instant,
    hard: Instant,
    last_frame: Instant,
}

impl<'p, 'b, B> Frames<'p, 'b, B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BodyError>,
{
    fn new(pipeline: &'p Pipeline, body: Pin<&'b mut B>, declared: Option<u64>) -> Self {
        let started = Instant::now();
        Self {
            pipeline,
            body,
            declared,
            received: 0,
            started,
            hard: started + pipeline.body_read_timeout,
            last_frame: started,
        }
    }

    /// The next frame's data, None at the end of the body.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, Answer> {
        let p = self.pipeline;
        loop {
            let deadline =
                self.hard
                    .min(p.rate_deadline(self.started, self.last_frame, self.received));
            let frame = match tokio::time::timeout_at(deadline, self.body.as_mut().frame()).await {
                Err(_) if deadline == self.hard => return Err(p.body_timeout()),
                Err(_) => return Err(p.body_too_slow()),
                Ok(None) => return Ok(None),
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
            self.last_frame = Instant::now();
            // Trailers carry nothing Spillway keeps.
            if let Ok(data) = frame.into_data() {
                self.received += data.len();
                return Ok(Some(data));
            }
        }
    }

    /// Time spent waiting on something other than the sender (the object store taking the
    /// parts before it): not counted against the sender's rate.
    pub(crate) fn waited(&mut self, waited: Duration) {
        self.started += waited;
        self.last_frame += waited;
    }

    /// 413 for a body past `cap`, once the rest of it is read and dropped (see
    /// [`crate::drain`]).
    pub(crate) async fn refuse_too_large(&mut self, cap: u64) -> Answer {
        let p = self.pipeline;
        p.drain(self.body.as_mut(), self.received as u64, self.declared)
            .await;
        answer::too_large(cap)
    }
}

/// 503: the client holds as many body bytes as one client may.
pub(crate) fn client_overloaded(retry_after: Duration) -> Answer {
    answer::retry_later(
        Outcome::ClientLimit,
        StatusCode::SERVICE_UNAVAILABLE,
        "client_overloaded",
        "this client address holds too many request bodies; retry later",
        retry_after,
    )
}

/// 503: the body budget has not got the bytes this request needs now.
pub(crate) fn memory_full(retry_after: Duration) -> Answer {
    answer::retry_later(
        Outcome::MemoryFull,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many request bodies in memory; retry later",
        retry_after,
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
