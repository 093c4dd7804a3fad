//! A durable section run inside its request's own task, handed to a task of its own only if the
//! request's future is dropped (the client hung up) before the section finished.
//!
//! Spawning every section costs a task per request: its allocation, a wake-up of another
//! worker to run it, and a second wake-up back to the connection's task with the answer, which
//! profiles at 2,500 requests/s showed. A client leaves rarely, so the hand-over is paid only then.
//! Either way the section is counted by the pipeline's task tracker, so shutdown waits for it.
//!
//! The section is boxed by the caller, before it is moved anywhere: a request's future is moved
//! by value (into hyper's connection state, into this wrapper), and every move copies the whole
//! future. A durable section inline made a request's future 15 KiB, and those copies were 7% of
//! the ingress's CPU at 3,500 requests/s (perf, 2026-12-04).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::task_tracker::TrackedFuture;
use tokio_util::task::TaskTracker;
use tracing::instrument::Instrumented;
use tracing::Instrument;

/// The section's future, already on the heap: moving it to a task midway copies a pointer.
type Section<F> = TrackedFuture<Instrumented<Pin<Box<F>>>>;

/// Polls `section` in place; dropped before it finished, it spawns the rest on the current
/// runtime (within the current span, so its log lines keep the request's fields). `kept` is
/// held until the section is settled, and dropped with it either way.
pub(crate) struct DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    section: Option<Section<F>>,
    kept: Option<K>,
}

impl<F, K> DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    pub(crate) fn new(tasks: &TaskTracker, section: Pin<Box<F>>, kept: K) -> Self {
        Self {
            section: Some(tasks.track_future(section.instrument(tracing::Span::current()))),
            kept: Some(kept),
        }
    }
}

// Nothing is pinned in place: the section is on the heap and `kept` is only held.
impl<F, K> Unpin for DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
}

impl<F, K> Future for DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    /// The section's output, or `None` if it panicked: the panic is not carried into the
    /// connection's task, which would reset the connection instead of answering, and the
    /// section is dropped then, never polled again in a task of its own.
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(section) = this.section.as_mut() else {
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(section).poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Some(output),
            Err(_) => None,
        };
        // What the section kept goes before its tracker token: shutdown, which waits for the
        // tracker, then finds it released.
        this.kept = None;
        this.section = None;
        Poll::Ready(output)
    }
}

impl<F, K> Drop for DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    fn drop(&mut self) {
        let (Some(section), kept) = (self.section.take(), self.kept.take()) else {
            return;
        };
        // Outside a runtime (it is being torn down) the section cannot go on: it is dropped,
        // as a spawned task would have been.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut section = section;
                (&mut section).await;
                drop(kept);
                drop(section);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_section_runs_in_place_and_answers() {
        let tasks = TaskTracker::new();
        let kept = Arc::new(());
        let section = DetachOnDrop::new(&tasks, Box::pin(async { 7 }), Arc::clone(&kept));
        assert_eq!(tasks.len(), 1, "counted while it runs");
        assert_eq!(section.await, Some(7));
        assert!(tasks.is_empty());
        assert_eq!(Arc::strong_count(&kept), 1, "released with the answer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_section_finishes_in_a_task_of_its_own() {
        let tasks = TaskTracker::new();
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let kept = Arc::new(());
        let section = DetachOnDrop::new(
            &tasks,
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                done.store(true, Ordering::SeqCst);
            }),
            Arc::clone(&kept),
        );
        let waiting = tokio::time::timeout(Duration::from_secs(1), section).await;
        assert!(waiting.is_err(), "the caller gave up first");
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(Arc::strong_count(&kept), 2, "kept by the detached section");
        tasks.close();
        tasks.wait().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the tracker waited for the rest"
        );
        assert_eq!(
            Arc::strong_count(&kept),
            1,
            "released before the tracker let shutdown go on"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_section_gives_no_output() {
        let tasks = TaskTracker::new();
        let kept = Arc::new(());
        let section = DetachOnDrop::new(
            &tasks,
            Box::pin(async {
                if true {
                    panic!("boom")
                }
            }),
            Arc::clone(&kept),
        );
        assert_eq!(section.await, None::<()>);
        assert!(tasks.is_empty());
        assert_eq!(Arc::strong_count(&kept), 1, "released with the section");
    }
}
