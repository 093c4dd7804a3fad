//! Large bodies by reference (the claim check): a body over its source's `inline_max_bytes` is
//! written to object storage and its Kafka record carries a reference to it. A body whose
//! scheme can be verified piece by piece is streamed to the store as it arrives, holding a
//! few parts of memory, never the body; any other (a compressed body, a public-key scheme) is
//! read whole as usual and stored once it has passed its checks. Sources with a schema or a
//! batch keep their bodies in their records (see `SourceConfig::offloads`).
//!
//! An object belongs to the request until its record may be in Kafka: a request refused,
//! answered as a duplicate or not written gives its object back (deleted), and an upload cut
//! short is aborted. Only a record Kafka may hold keeps its object.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::StatusCode;
use hyper::body::Body;
use spillway_core::key::{KeyInput, KeySource};
use spillway_core::{headers, Envelope, EventId, ObjectRef};
use spillway_objects::{ObjectWriter, Objects, ObjectsError};
use spillway_signature::{Request, Verified, VerifyError};
use spillway_telemetry::Outcome;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::answer::{self, Answer};
use crate::budget::{Charge, ClientPlace, Exhausted};
use crate::encoding::Encoding;
use crate::intake::Intake;
use crate::pipeline::{BodyError, Pipeline};
use crate::read::{client_overloaded, memory_full, Frames, ReadBody};

/// A body streamed to object storage, and what its verification came to.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub(crate) stored: StoredObject,
    pub(crate) verified: Result<Verified, VerifyError>,
}

/// An object written for a request: deleted when dropped, unless its record may be in Kafka
/// ([`Keeper::keep`]).
#[derive(Debug)]
pub(crate) struct StoredObject {
    objects: Objects,
    reference: ObjectRef,
    tasks: TaskTracker,
    keep: Arc<AtomicBool>,
}

/// Marks a [`StoredObject`] as referred to by a record, from the task that writes it.
#[derive(Debug, Clone)]
pub(crate) struct Keeper(Arc<AtomicBool>);

/// The body budget an upload is charged: its bytes as they arrive, up to `limit`, the most
/// its parts hold at once.
struct Room {
    limit: usize,
    charged: usize,
}

impl Room {
    /// Bytes to charge for `n` more of the body.
    fn more(&mut self, n: usize) -> usize {
        let more = n.min(self.limit.saturating_sub(self.charged));
        self.charged += more;
        more
    }
}

/// An upload in progress: aborted when dropped unfinished (the request refused for its size,
/// too slow, or its client gone), so that no parts are left behind.
struct Upload {
    writer: Option<ObjectWriter>,
    tasks: TaskTracker,
}

// === impl Pipeline ===

impl Pipeline {
    /// The size past which `intake`'s body is streamed to object storage, if it is: a store
    /// is configured, the source keeps large bodies there, the body is not compressed (it is
    /// decoded whole), the source's scheme verifies a body piece by piece, and nothing is read
    /// from inside the body (a dedupe or partition key, the event type), which a body never
    /// held whole could not give.
    pub(crate) fn streams_past(&self, intake: &Intake) -> Option<u64> {
        let source = &intake.source;
        self.objects.as_ref()?;
        let reads_body = source.dedupe.reads_body()
            || source
                .partition_key
                .as_ref()
                .is_some_and(KeySource::reads_body)
            || source
                .event_type
                .as_ref()
                .is_some_and(KeySource::reads_body);
        let streams =
            intake.encoding == Encoding::Identity && source.verifier.streams() && !reads_body;
        source.inline_max_bytes.filter(|_| streams)
    }

    /// Stage 3 past `inline_max_bytes`: the body, `held` read so far and the rest as it comes,
    /// into a new object and through the source's scheme. From here the request holds one
    /// upload's parts of the body budget, not the body.
    pub(crate) async fn stream_to_store<B>(
        &self,
        intake: &mut Intake,
        parts: &http::request::Parts,
        mut frames: Frames<'_, '_, B>,
        held: Vec<Bytes>,
        place: &ClientPlace,
        charge: &mut Charge,
    ) -> Result<ReadBody, Answer>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        let Some(objects) = self.objects.clone() else {
            return Err(answer::internal());
        };
        let source = intake.source.clone();
        let url = crate::signed_url::signed_url(&source, parts);
        let request = Request {
            method: parts.method.as_str(),
            url: &url,
            headers: &parts.headers,
            body: &[],
        };
        let mut check = match source.verifier.begin_streamed(&request, SystemTime::now()) {
            Some(Ok(check)) => check,
            Some(Err(e)) => {
                return Err(self.verification_failed(&source, intake.client(), &e).await)
            }
            None => return Err(answer::internal()),
        };
        // What the upload holds in memory grows with the body up to its parts' room, and is
        // charged as it grows: the bytes read so far are already.
        let mut room = Room {
            limit: usize::try_from(objects.upload_bytes()).unwrap_or(usize::MAX),
            charged: frames.received,
        };
        let content_type = headers::text(&parts.headers, http::header::CONTENT_TYPE.as_str());
        let name = object_name(&source.name, intake.id(), SystemTime::now());
        let writer = objects.writer(&name, content_type).await;
        let mut upload = Upload {
            writer: Some(writer.map_err(|e| self.store_failed(&source.name, &e))?),
            tasks: self.tasks.clone(),
        };
        for chunk in held {
            check.update(&chunk);
            self.put(&mut upload, &mut frames, chunk, &source.name)
                .await?;
        }
        let cap = usize::try_from(source.max_body_bytes).unwrap_or(usize::MAX);
        while let Some(chunk) = frames.next().await? {
            if frames.received > cap {
                drop(upload);
                charge.shrink_to(0);
                return Err(frames.refuse_too_large(source.max_body_bytes).await);
            }
            let more = room.more(chunk.len());
            place
                .hold(charge, more)
                .map_err(|Exhausted| client_overloaded(self.retry_after))?;
            self.budget
                .charge(charge, more)
                .map_err(|Exhausted| memory_full(self.retry_after))?;
            check.update(&chunk);
            self.put(&mut upload, &mut frames, chunk, &source.name)
                .await?;
        }
        let Some(writer) = upload.writer.take() else {
            return Err(answer::internal());
        };
        let reference = writer
            .finish()
            .await
            .map_err(|e| self.store_failed(&source.name, &e))?;
        // The body is out of memory: its room goes back to the others now, not when the
        // event is settled.
        charge.shrink_to(0);
        let stored = self.stored(objects, reference);
        intake.body_in();
        self.metrics.body_read(&source.name, frames.received);
        let verified = check.finish(&source.verifier);
        Ok(ReadBody::Stored(Box::new(Streamed { stored, verified })))
    }

    /// One piece into the upload; the time the store takes to make room is not the sender's.
    async fn put<B>(
        &self,
        upload: &mut Upload,
        frames: &mut Frames<'_, '_, B>,
        chunk: Bytes,
        source: &str,
    ) -> Result<(), Answer>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        let Some(writer) = upload.writer.as_mut() else {
            return Err(answer::internal());
        };
        let started = Instant::now();
        let written = writer.write(chunk).await;
        frames.waited(started.elapsed());
        written.map_err(|e| self.store_failed(source, &e))
    }

    /// For a body read whole that is larger than its source's `inline_max_bytes`: the body
    /// written to object storage, and the envelope carrying its reference in its place.
    pub(crate) async fn store_whole(
        &self,
        intake: &Intake,
        envelope: &mut Envelope,
    ) -> Result<Option<StoredObject>, Answer> {
        let (Some(objects), Some(inline)) = (&self.objects, intake.source.inline_max_bytes) else {
            return Ok(None);
        };
        if envelope.body.len() as u64 <= inline {
            return Ok(None);
        }
        let source = &intake.source.name;
        let name = object_name(source, envelope.id, SystemTime::now());
        let body = std::mem::take(&mut envelope.body);
        let stored_body = body.clone();
        // Boxed: only large bodies take this path, and inline it would add 2 KiB to every
        // request's future, which is copied whole at each move (see `crate::detach`).
        let written = Box::pin(async {
            let writer = objects.writer(&name, envelope.content_type.clone()).await?;
            // Aborted if the write fails or the request is dropped meanwhile.
            let mut upload = Upload {
                writer: Some(writer),
                tasks: self.tasks.clone(),
            };
            if let Some(writer) = upload.writer.as_mut() {
                writer.write(body).await?;
            }
            match upload.writer.take() {
                Some(writer) => writer.finish().await.map(Some),
                None => Ok(None),
            }
        });
        let reference = match written.await {
            Ok(Some(reference)) => reference,
            Ok(None) => return Err(answer::internal()),
            Err(e) => return Err(self.store_failed(source, &e)),
        };
        envelope.stored = Some(reference.clone());
        // The workers read the event type of a record from its body, which the record no
        // longer has: it is read now and carried in a header.
        if let Some(key) = intake.source.event_type.as_ref().filter(|k| k.reads_body()) {
            let no_headers = http::HeaderMap::new();
            envelope.event_type = key
                .extract(&KeyInput::new(&no_headers, &stored_body, None))
                .ok()
                .flatten();
        }
        Ok(Some(self.stored(objects.clone(), reference)))
    }

    fn stored(&self, objects: Objects, reference: ObjectRef) -> StoredObject {
        StoredObject {
            objects,
            reference,
            tasks: self.tasks.clone(),
            keep: Arc::new(AtomicBool::new(false)),
        }
    }

    /// 503 `objects_unavailable`: the store did not take the body; the sender retries.
    fn store_failed(&self, source: &str, e: &ObjectsError) -> Answer {
        tracing::warn!(source, error = %e, "object storage did not take a body");
        answer::retry_later(
            Outcome::ObjectsUnavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "objects_unavailable",
            "the body could not be written to object storage; retry later",
            self.retry_after,
        )
    }
}

// === impl StoredObject ===

impl StoredObject {
    pub(crate) fn reference(&self) -> &ObjectRef {
        &self.reference
    }

    pub(crate) fn keeper(&self) -> Keeper {
        Keeper(self.keep.clone())
    }
}

impl Drop for StoredObject {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Acquire) {
            return;
        }
        let (objects, reference) = (self.objects.clone(), self.reference.clone());
        spawn_on(&self.tasks, async move {
            match objects.delete(&reference).await {
                Ok(()) => {
                    tracing::debug!(uri = %reference.uri, "object of an unwritten event deleted")
                }
                Err(e) => {
                    tracing::warn!(uri = %reference.uri, error = %e, "the object of an unwritten event could not be deleted; `spillway objects sweep` removes it")
                }
            }
        });
    }
}

// === impl Keeper ===

impl Keeper {
    /// The object stays: a record that may be in Kafka refers to it.
    pub(crate) fn keep(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            spawn_on(&self.tasks, async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "an unfinished upload could not be aborted; the store's cleanup of incomplete uploads removes it");
                }
            });
        }
    }
}

/// Runs `cleanup` on `tasks` (which shutdown waits for), if a runtime is there to run it.
fn spawn_on<F>(tasks: &TaskTracker, cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        tasks.spawn_on(cleanup, &runtime);
    }
}

/// `<source>/<yyyy-mm-dd>/<event id>`: by source and day, so that a store's lifecycle rules
/// can expire objects by prefix and age, and an operator can find a day's bodies.
fn object_name(source: &str, id: EventId, at: SystemTime) -> String {
    let day = time::OffsetDateTime::from(at).date();
    format!("{source}/{day}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_by_source_day_and_event() {
        let id = EventId::parse("4a1f0c52-7d3e-4b8a-9c61-2f5e8d7a9b30").expect("id");
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_169_600);
        assert_eq!(
            object_name("meters", id, at),
            "meters/2026-12-02/4a1f0c52-7d3e-4b8a-9c61-2f5e8d7a9b30"
        );
    }
}
