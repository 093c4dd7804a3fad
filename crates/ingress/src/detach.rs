//! A durable section run inside its request's own task, handed to a task of its own only if the
//! request's future is dropped (the client hung up) before the section finished.
//!
//! Spawning every section costs a task per request: its allocation, a wake-up of another
//! worker to run it, and a second wake-up back to the connection's task with the answer, which
//! profiles at 2,500 requests/s showed. A client leaves rarely, so the hand-over is paid only then.
//! Either way the section is counted by the pipeline's task tracker, so shutdown waits for it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::task_tracker::TrackedFuture;
use tokio_util::task::TaskTracker;
use tracing::instrument::Instrumented;
use tracing::Instrument;

/// The section's future, boxed so that it can move to a task midway.
type Section<F> = Pin<Box<TrackedFuture<Instrumented<F>>>>;

/// Polls `section` in place; dropped before it finished, it spawns the rest on the current
/// runtime (within the current span, so its log lines keep the request's fields).
pub(crate) struct DetachOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    section: Option<Section<F>>,
}

impl<F> DetachOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    pub(crate) fn new(tasks: &TaskTracker, section: F) -> Self {
        let section = tasks.track_future(section.instrument(tracing::Span::current()));
        Self {
            section: Some(Box::pin(section)),
        }
    }
}

impl<F> Future for DetachOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    /// The section's output, or `None` if it panicked: the panic is not carried into the
    /// connection's task, which would reset the connection instead of answering, and the
    /// section is dropped then, never polled again in a task of its own.
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(section) = self.section.as_mut() else {
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| section.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Some(output),
            Err(_) => None,
        };
        self.section = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for DetachOnDrop<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    fn drop(&mut self) {
        let Some(section) = self.section.take() else {
            return;
        };
        // Outside a runtime (it is being torn down) the section cannot go on: it is dropped,
        // as a spawned task would have been.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(section);
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
        let section = DetachOnDrop::new(&tasks, async { 7 });
        assert_eq!(tasks.len(), 1, "counted while it runs");
        assert_eq!(section.await, Some(7));
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_section_finishes_in_a_task_of_its_own() {
        let tasks = TaskTracker::new();
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let section = DetachOnDrop::new(&tasks, async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            done.store(true, Ordering::SeqCst);
        });
        let waiting = tokio::time::timeout(Duration::from_secs(1), section).await;
        assert!(waiting.is_err(), "the caller gave up first");
        assert!(!finished.load(Ordering::SeqCst));
        tasks.close();
        tasks.wait().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the tracker waited for the rest"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_section_gives_no_output() {
        let tasks = TaskTracker::new();
        let section = DetachOnDrop::new(&tasks, async {
            if true {
                panic!("boom")
            }
        });
        assert_eq!(section.await, None::<()>);
        assert!(tasks.is_empty());
    }
}
