//! The dedupe claims a process holds, and their commits off the response path: once Kafka has
//! an event, its claims are queued and the 202 goes out; one task sends what gathered within
//! `redis.commit_delay` together. A request then waits for one Redis round trip (its claim),
//! not two, and a burst of commits reaches each Redis node as one pipeline
//! ([`SharedStore::commit_all`]) rather than one command per event. Until its
//! commit lands, a retry of the event that reaches this process is answered as the duplicate
//! it is; one reaching another pod gets 503 `in_flight` meanwhile, which a sender retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use spillway_store::{ClaimToken, SharedStore, StoreError};
use spillway_telemetry::{traces, IngressMetrics, RedisCommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::store::{timed, CommandTiming};

/// Pauses between the tries of a commit that failed: the commit is an idempotent
/// compare-and-set, and each one lost means a duplicate once the sender retries after
/// `claim_ttl`.
const COMMIT_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Commits sent together at most: a bound on one burst of concurrent commands, so that a
/// backlog (Redis slow for a while) goes out in slices rather than all at once.
const MAX_BATCH: usize = 1024;

/// Keys of accepted events whose commit has not landed, with their event ids.
type Accepted = Arc<Mutex<HashMap<String, String>>>;

/// The commit queue of one process (see the module documentation).
pub(crate) struct Commits {
    delay: Duration,
    /// Made by the first commit, as the sending task needs a runtime.
    queue: OnceLock<mpsc::UnboundedSender<Queued>>,
    accepted: Accepted,
    /// Tells the sending task to send what is left at once and stop.
    closing: CancellationToken,
    /// The sending task and the retries of failed commits; shutdown waits for them.
    tasks: TaskTracker,
}

/// A claim waiting for its commit.
struct Queued {
    claim: HeldClaim,
    source: String,
    event_id: String,
    /// Where the commit's `dedupe.commit` span goes when spans are exported.
    span: tracing::Span,
}

// === impl Commits ===

impl std::fmt::Debug for Commits {
    /// Not the keys: a debug line should not list every event in flight.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commits")
            .field("delay", &self.delay)
            .field("accepted", &lock(&self.accepted).len())
            .field("closing", &self.closing.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Commits {
    pub(crate) fn new(delay: Duration) -> Self {
        Self {
            delay,
            queue: OnceLock::new(),
            accepted: Accepted::default(),
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }

    /// The id of the accepted event whose commit on `key` is still to land, if any.
    pub(crate) fn accepted(&self, key: &str) -> Option<String> {
        lock(&self.accepted).get(key).cloned()
    }

    /// Commits `claim` in the background: its event (`event_id`) is in Kafka. Once
    /// [`Commits::finish`] began, the commit and its retries are made before this returns.
    pub(crate) async fn commit(&self, mut claim: HeldClaim, source: &str, event_id: &str) {
        if self.closing.is_cancelled() {
            claim.commit_now(source, event_id).await;
            return;
        }
        let key = claim.token.key().to_owned();
        lock(&self.accepted).insert(key.clone(), event_id.to_owned());
        claim.remembered = Some(Remembered {
            accepted: Arc::clone(&self.accepted),
            key,
            event_id: event_id.to_owned(),
        });
        let queued = Queued {
            claim,
            source: source.to_owned(),
            event_id: event_id.to_owned(),
            span: traces::traced(|| {
                // Not a child of the request's span, which ends with the answer: linked to it.
                let span =
                    tracing::info_span!(parent: None, "commit", otel.name = "dedupe.commit.queued");
                span.follows_from(tracing::Span::current());
                span
            }),
        };
        let queue = self.queue.get_or_init(|| self.start(&queued.claim.store));
        if let Err(mpsc::error::SendError(late)) = queue.send(queued) {
            // The sending task has stopped (shutdown).
            late.claim.commit_now(&late.source, &late.event_id).await;
        }
    }

    /// Starts the sending task, which commits on `store`: every claim of a pipeline is made on
    /// the pipeline's one store, so the first claim's is every claim's.
    fn start(&self, store: &SharedStore) -> mpsc::UnboundedSender<Queued> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = Sender {
            store: store.clone(),
            delay: self.delay,
            closing: self.closing.clone(),
            tasks: self.tasks.clone(),
        };
        self.tasks.spawn(sender.run(rx));
        tx
    }

    /// Sends the queued commits at once and waits for them, their retries included; later
    /// commits are made by their callers. Shutdown calls it once no durable section is left
    /// (or none is waited for any longer).
    pub(crate) async fn finish(&self) {
        // A queue not started yet never will be: a commit that comes later finds it closed and
        // is made by its caller, not by a task started after this returned.
        let _ = self.queue.get_or_init(|| mpsc::unbounded_channel().0);
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The sending task's side of the queue.
struct Sender {
    store: SharedStore,
    delay: Duration,
    closing: CancellationToken,
    tasks: TaskTracker,
}

// === impl Sender ===

impl Sender {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let mut batch = Vec::new();
        loop {
            let first = tokio::select! {
                biased;
                () = self.closing.cancelled() => break,
                queued = rx.recv() => match queued {
                    Some(queued) => queued,
                    None => return,
                },
            };
            batch.push(first);
            // A full batch waiting already (Redis was slow) goes out without the pause.
            if !self.delay.is_zero() && batch.len() + rx.len() < MAX_BATCH {
                tokio::select! {
                    () = self.closing.cancelled() => {}
                    () = tokio::time::sleep(self.delay) => {}
                }
            }
            self.send(&mut rx, &mut batch);
        }
        // Closing: what is queued now goes out; what comes later is sent by its caller.
        rx.close();
        while !rx.is_empty() {
            self.send(&mut rx, &mut batch);
        }
    }

    /// Sends `batch` with what else is queued, up to [`MAX_BATCH`], in a task of its own: a
    /// slow batch does not hold back the next, as a slow commit held back no other request
    /// when each request made its own.
    fn send(&self, rx: &mut mpsc::UnboundedReceiver<Queued>, batch: &mut Vec<Queued>) {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let batch = std::mem::take(batch);
        self.tasks
            .spawn(send_batch(self.store.clone(), batch, self.tasks.clone()));
    }
}

/// One try for each commit of `batch`, all in one call to the store; the retries of those
/// that failed go on in tasks of `tasks`, one each. Each commit's time (metric and span) is
/// that of the whole call: the commits of a batch are sent and answered together.
async fn send_batch(store: SharedStore, batch: Vec<Queued>, tasks: TaskTracker) {
    let timings: Vec<CommandTiming> = batch
        .iter()
        .map(|queued| CommandTiming::start(&queued.span, RedisCommand::Commit))
        .collect();
    let tokens: Vec<&ClaimToken> = batch.iter().map(|queued| &queued.claim.token).collect();
    let results = store.commit_all(&tokens).await;
    // A claim left out of the zip below would never be committed.
    debug_assert_eq!(results.len(), batch.len(), "one result per commit");
    for ((queued, timing), result) in batch.into_iter().zip(timings).zip(results) {
        timing.finish(&queued.claim.metrics, result.is_ok());
        let Queued {
            claim,
            source,
            event_id,
            span,
        } = queued;
        if !span.in_scope(|| settled(&source, &event_id, result)) {
            tasks.spawn(claim.retry(source, event_id).instrument(span));
        }
    }
}

/// A claim's entry among the accepted keys of [`Commits`], removed with the claim once its
/// commit is settled or given up.
struct Remembered {
    accepted: Accepted,
    key: String,
    event_id: String,
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered")
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Remembered {
    fn drop(&mut self) {
        let mut accepted = lock(&self.accepted);
        // A later event may have taken the key since (this claim expired first).
        if accepted.get(&self.key) == Some(&self.event_id) {
            accepted.remove(&self.key);
        }
    }
}

fn lock(accepted: &Accepted) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    accepted.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A dedupe claim this process holds; keeps `spillway_dedupe_in_flight_claims` true until it
/// is committed or released (or its task ends any other way).
pub(crate) struct HeldClaim {
    store: SharedStore,
    token: ClaimToken,
    metrics: Arc<IngressMetrics>,
    /// Set once its event is accepted and the commit queued.
    remembered: Option<Remembered>,
}

// === impl HeldClaim ===

impl std::fmt::Debug for HeldClaim {
    /// The event, not the key: a key can carry a sender's own ids, and [`Commits`] lists no
    /// keys either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldClaim")
            .field("event_id", &self.token.event_id())
            .field("accepted", &self.remembered.is_some())
            .finish_non_exhaustive()
    }
}

impl HeldClaim {
    pub(crate) fn new(
        store: &SharedStore,
        token: ClaimToken,
        metrics: &Arc<IngressMetrics>,
    ) -> Self {
        metrics.claims_in_flight().inc();
        Self {
            store: store.clone(),
            token,
            metrics: Arc::clone(metrics),
            remembered: None,
        }
    }

    /// The event is in Kafka: later requests with its key are duplicates. Commits now,
    /// retries included (the queue has stopped). Boxed, as [`HeldClaim::release`] is: it
    /// runs only at shutdown, and inline its Redis commands would add almost 4 KiB to every
    /// request's durable section.
    fn commit_now<'a>(self, source: &'a str, event_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !self.try_commit(source, event_id).await {
                self.retry(source.to_owned(), event_id.to_owned()).await;
            }
        })
    }

    /// The tries after a failed commit.
    async fn retry(self, source: String, event_id: String) {
        for pause in COMMIT_RETRIES {
            tokio::time::sleep(pause).await;
            if self.try_commit(&source, &event_id).await {
                return;
            }
        }
        tracing::warn!(
            source,
            event_id,
            "commit failed after retries; the key stays claimed until claim_ttl"
        );
    }

    /// One commit: true when settled (written, or taken over by another request).
    async fn try_commit(&self, source: &str, event_id: &str) -> bool {
        let committed = timed(
            &self.metrics,
            RedisCommand::Commit,
            self.store.commit(&self.token),
        )
        .await;
        settled(source, event_id, committed)
    }

    /// The event is not in Kafka: the sender's retry must be processed. Boxed: a release
    /// follows a failure, and inline its Redis command would add 3 KiB to every request's
    /// durable section, allocated and copied per request (see [`crate::detach`]).
    pub(crate) fn release(self, source: &str) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let released = timed(
                &self.metrics,
                RedisCommand::Release,
                self.store.release(&self.token),
            )
            .await;
            if let Err(e) = released {
                tracing::warn!(source, error = %e, "release failed; the key stays claimed until claim_ttl");
            }
        })
    }
}

/// Whether a commit's result settles it (written, or taken over by another request); logs
/// what is not plain success.
fn settled(source: &str, event_id: &str, committed: Result<bool, StoreError>) -> bool {
    match committed {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                source,
                event_id,
                "claim expired before commit; another request took the key"
            );
            true
        }
        Err(e) => {
            tracing::warn!(source, event_id, error = %e, "commit failed");
            false
        }
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        self.metrics.claims_in_flight().dec();
    }
}
