//! Stage 3, read: the body, bounded in size, in time and in memory, each byte charged as it
//! arrives.

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
