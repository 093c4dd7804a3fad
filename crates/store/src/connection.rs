//! The one connection a store shares among its callers: made by one caller at a time, with a
//! backoff between failed attempts, and replaced only when an error says it is unusable.
//!
//! A cluster connection is a full connect (every primary, plus `CLUSTER SLOTS`), so callers
//! that all find it missing at once must not each make one: at thousands of requests a second
//! that is thousands of connections just as the cluster recovers. The first caller connects;
//! the others wait for its result. The connect runs as its own task, so a caller that gives
//! up (its command timeout) does not cancel it: the next caller waits for the same attempt.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::RedisError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long callers get the last connect error, without a new attempt, after one failed
/// connect. The wait doubles with each further failure, up to [`RECONNECT_BACKOFF_MAX`], and
/// starts over once a connect succeeds.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between failed connects: at most this long after a cluster is back, the
/// store still reports it unavailable.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A connection with the generation it was made in, so that a caller whose command failed on
/// an older connection cannot discard a newer one.
#[derive(Debug, Clone)]
pub(crate) struct Lease<C> {
    pub(crate) generation: u64,
    pub(crate) conn: C,
}

#[derive(Debug)]
pub(crate) struct Shared<C> {
    /// The connection callers use; a std mutex held only to clone or replace it.
    current: Mutex<Option<Lease<C>>>,
    /// Held by the one caller that connects (or waits for the connect) while the others queue.
    connector: tokio::sync::Mutex<Connector<C>>,
    connects: AtomicU64,
    /// Commands timed out in a row, with no answer in between.
    unanswered: AtomicU32,
}

/// Commands that time out in a row, none answered in between, after which the connection is
/// replaced: a timeout alone leaves it (redis-rs repairs a slow or lost node itself), but a
/// client that answers nothing at all may be wedged (seen after a network black-hole healed:
/// redis-rs's recovery never finished) and only a new connection gets out.
pub(crate) const WEDGED_AFTER: u32 = 16;

#[derive(Debug)]
struct Connector<C> {
    /// The attempt under way; kept when its caller gives up, for the next caller to await.
    attempt: Option<JoinHandle<Result<C, RedisError>>>,
    generation: u64,
    /// Failed connects in a row.
    failures: u32,
    /// After a failed connect: until when callers get its error instead of a new attempt.
    backoff: Option<(Instant, RedisError)>,
}

// === impl Shared ===

impl<C: Clone + Send + 'static> Shared<C> {
    pub(crate) fn new() -> Self {
        Self {
            current: Mutex::new(None),
            connector: tokio::sync::Mutex::new(Connector {
                attempt: None,
                generation: 0,
                failures: 0,
                backoff: None,
            }),
            connects: AtomicU64::new(0),
            unanswered: AtomicU32::new(0),
        }
    }

    /// A command was answered (whatever the answer): the connection is alive.
    pub(crate) fn answered(&self) {
        self.unanswered.store(0, Ordering::Relaxed);
    }

    /// A command on the connection of `generation` timed out; the [`WEDGED_AFTER`]th in a
    /// row drops it. True when it was dropped.
    pub(crate) fn timed_out(&self, generation: u64) -> bool {
        if self.unanswered.fetch_add(1, Ordering::Relaxed) + 1 < WEDGED_AFTER {
            return false;
        }
        self.unanswered.store(0, Ordering::Relaxed);
        self.discard(generation);
        true
    }

    /// The shared connection, made with `connect` if there is none, unless another caller is
    /// making it (then its result) or a connect failed within the backoff (then its error).
    pub(crate) async fn get<F, Fut>(&self, connect: F) -> Result<Lease<C>, RedisError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, RedisError>> + Send + 'static,
    {
        if let Some(lease) = self.current() {
            return Ok(lease);
        }
        let mut connector = self.connector.lock().await;
        // The caller that held the lock before us may have connected meanwhile.
        if let Some(lease) = self.current() {
            return Ok(lease);
        }
        if let Some((until, error)) = &connector.backoff {
            if Instant::now() < *until {
                return Err(error.clone());
            }
        }
        let attempt = connector.attempt.get_or_insert_with(|| {
            self.connects.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(connect())
        });
        // Cancel-safe: if this caller's timeout drops us here, the attempt stays in the slot.
        let joined = attempt.await;
        connector.attempt = None;
        let connected = joined.unwrap_or_else(|e| {
            Err(RedisError::from(std::io::Error::other(format!(
                "the connect task failed: {e}"
            ))))
        });
        match connected {
            Ok(conn) => {
                connector.generation += 1;
                connector.failures = 0;
                connector.backoff = None;
                let lease = Lease {
                    generation: connector.generation,
                    conn,
                };
                *self.slot() = Some(lease.clone());
                Ok(lease)
            }
            Err(e) => {
                connector.failures = connector.failures.saturating_add(1);
                let until = Instant::now() + backoff(connector.failures);
                connector.backoff = Some((until, e.clone()));
                Err(e)
            }
        }
    }

    /// Drops the connection of `generation`, if it is still the current one; the next caller
    /// connects again.
    pub(crate) fn discard(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|l| l.generation == generation) {
            *slot = None;
        }
    }

    /// How many connects were started.
    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Lease<C>> {
        self.slot().clone()
    }

    fn slot(&self) -> MutexGuard<'_, Option<Lease<C>>> {
        // Poisoned only if a caller panicked while cloning; the slot itself is intact.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wait after `failures` failed connects in a row (at least one).
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RECONNECT_BACKOFF_MIN
        .saturating_mul(1 << doublings)
        .min(RECONNECT_BACKOFF_MAX)
}

/// Whether a failed command shows the shared connection unusable, so it must be replaced.
///
/// redis-rs's cluster connection repairs itself: after a dropped node connection it reconnects
/// that node, after "no connection found" it reconnects from the seed nodes, after MOVED or
/// READONLY it refreshes the slots, and it does all this even when it hands the error back.
/// So a timeout (a slow node), a server error or a redirection keeps the connection. What it
/// calls unrecoverable (a dropped connection, a protocol desync, failed authentication, no
/// node left) is replaced, because a dropped connection looks the same (`BrokenPipe`) when it
/// is the connection's own driver task that is gone, which nothing else would repair.
pub(crate) fn unusable(error: &RedisError) -> bool {
    error.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use redis::ErrorKind;

    use super::*;

    fn refused() -> RedisError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    /// A connect that takes `delay` (of tokio's clock) and yields `result`.
    fn slow(
        delay: Duration,
        result: Result<u32, RedisError>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<u32, RedisError>> + Send>>
    {
        move || {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                result
            })
        }
    }

    fn now(
        result: Result<u32, RedisError>,
    ) -> impl FnOnce() -> std::future::Ready<Result<u32, RedisError>> {
        move || std::future::ready(result)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_answers_nothing_is_replaced_and_one_answer_resets_the_count() {
        let shared: Shared<u32> = Shared::new();
        let first = shared.get(|| async { Ok(1) }).await.expect("connect");
        for _ in 1..WEDGED_AFTER {
            assert!(!shared.timed_out(first.generation));
        }
        shared.answered();
        for _ in 1..WEDGED_AFTER {
            assert!(
                !shared.timed_out(first.generation),
                "the count started again"
            );
        }
        assert!(shared.timed_out(first.generation), "wedged: replaced");
        let second = shared.get(|| async { Ok(2) }).await.expect("connect");
        assert_eq!((second.generation, second.conn), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_wait_for_one_connect() {
        let shared = Arc::new(Shared::<u32>::new());
        let made = Arc::new(AtomicU32::new(0));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let shared = Arc::clone(&shared);
                let made = Arc::clone(&made);
                tokio::spawn(async move {
                    shared
                        .get(move || {
                            made.fetch_add(1, Ordering::SeqCst);
                            slow(Duration::from_secs(1), Ok(7))()
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            let lease = caller.await.expect("join").expect("connected");
            assert_eq!((lease.generation, lease.conn), (1, 7));
        }
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(shared.connects(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_connects_back_off_doubling_until_one_succeeds() {
        let shared = Shared::<u32>::new();
        assert!(shared.get(now(Err(refused()))).await.is_err());
        // Within the backoff: the last error, no attempt.
        let err = shared.get(now(Ok(1))).await.expect_err("backing off");
        assert!(err.is_connection_refusal(), "{err}");
        assert_eq!(shared.connects(), 1);

        tokio::time::advance(RECONNECT_BACKOFF_MIN).await;
        assert!(shared.get(now(Err(refused()))).await.is_err());
        assert_eq!(shared.connects(), 2);
        // Two failures in a row: twice the wait.
        tokio::time::advance(RECONNECT_BACKOFF_MIN).await;
        assert!(shared.get(now(Ok(1))).await.is_err());
        assert_eq!(shared.connects(), 2);
        tokio::time::advance(RECONNECT_BACKOFF_MIN).await;
        assert_eq!(shared.get(now(Ok(1))).await.expect("connected").conn, 1);
        assert_eq!(shared.connects(), 3);

        // A success starts the backoff over.
        shared.discard(1);
        assert!(shared.get(now(Err(refused()))).await.is_err());
        tokio::time::advance(RECONNECT_BACKOFF_MIN).await;
        assert_eq!(shared.get(now(Ok(2))).await.expect("connected").conn, 2);
        assert_eq!(shared.connects(), 5);
    }

    #[test]
    fn the_backoff_is_capped() {
        assert_eq!(backoff(1), RECONNECT_BACKOFF_MIN);
        assert_eq!(backoff(2), RECONNECT_BACKOFF_MIN * 2);
        assert_eq!(backoff(1_000), RECONNECT_BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_discard_keeps_the_newer_connection() {
        let shared = Shared::<u32>::new();
        let first = shared.get(now(Ok(1))).await.expect("connected");
        shared.discard(first.generation);
        let second = shared.get(now(Ok(2))).await.expect("connected");
        assert_eq!((second.generation, second.conn), (2, 2));
        // A caller whose command failed on the first connection reports it late.
        shared.discard(first.generation);
        assert_eq!(shared.get(now(Ok(3))).await.expect("kept").conn, 2);
        assert_eq!(shared.connects(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_outlives_the_caller_that_gave_up() {
        let shared = Shared::<u32>::new();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            shared.get(slow(Duration::from_secs(1), Ok(1))),
        )
        .await;
        assert!(gave_up.is_err(), "the first caller times out");
        // The next caller waits for the same attempt rather than starting another.
        let lease = shared
            .get(slow(Duration::from_secs(1), Ok(2)))
            .await
            .expect("connected");
        assert_eq!(lease.conn, 1);
        assert_eq!(shared.connects(), 1);
    }

    #[test]
    fn only_errors_that_break_the_connection_replace_it() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        // Our own timeout's error and redis-rs's response timeout: a slow node.
        assert!(!unusable(&io(std::io::ErrorKind::TimedOut)));
        // A reply: the connection works.
        assert!(!unusable(&redis::make_extension_error(
            "ERR".into(),
            Some("syntax error".into())
        )));
        assert!(!unusable(&RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "not a string"
        ))));
        // What the cluster connection reports when its driver task is gone.
        assert!(unusable(&io(std::io::ErrorKind::BrokenPipe)));
        assert!(unusable(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(unusable(&RedisError::from((
            ErrorKind::ClusterConnectionNotFound,
            "No connections found"
        ))));
    }
}
