//! A durable section run inside its request's own task, handed to a task of its own only if the
//! request's future is dropped (the client hung up) before the section finished.
//!
//! Spawning every section costs a task per request: its allocation, a wake-up of another
//! worker to run it, and a second wake-up back to the connection's task with the answer, which
//! profiles at 2,500 requests/s showed. A client leaves rarely, so the hand-over is paid only then.
//! Either way the section is counted by the pipeline's task tracker, so shutdown waits for it.
//!
//! The section is boxed by the caller, before it is moved anywhere. A request's future is moved
//! by value (into hyper's connection state), as the section was (into this wrapper), and every
//! move copies the whole future: the request's future was 15 KiB and its section 16 KiB, and
//! copying them was about 7% of the ingress's CPU at 3,500 requests/s (perf, 2026-12-04).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;
use tracing::instrument::Instrumented;
use tracing::Instrument;

/// A section with what it keeps and its tracker token. The fields drop in the order they are
/// declared, whether the section finished, panicked or was dropped: what it kept first, the
/// token last, so that shutdown (which waits for the tracker) finds everything released.
struct Section<F, K> {
    _kept: K,
    /// Already on the heap: moving the section to a task midway copies a pointer.
    future: Instrumented<Pin<Box<F>>>,
    _token: TaskTrackerToken,
}

// Nothing is pinned in place: the future is on the heap and `kept` is only held.
impl<F, K> Unpin for Section<F, K> {}

impl<F: Future, K> Future for Section<F, K> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.get_mut().future).poll(cx)
    }
}

/// Polls `section` in place; dropped before it finished, it spawns the rest on the current
/// runtime (within the span current at [`DetachOnDrop::new`], so its log lines keep the
/// request's fields). `kept` is held until the section is settled, and dropped with it.
pub(crate) struct DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    section: Option<Section<F, K>>,
}

impl<F, K> DetachOnDrop<F, K>
where
    F: Future + Send + 'static,
    F::Output: Send,
    K: Send + 'static,
{
    /// Counts the section in `tasks` and takes the current span, both from now on.
    pub(crate) fn new(tasks: &TaskTracker, section: Pin<Box<F>>, kept: K) -> Self {
        Self {
            section: Some(Section {
                _kept: kept,
                future: section.instrument(tracing::Span::current()),
                _token: tasks.token(),
            }),
        }
    }
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
        // Settled: taken out before it is dropped, so that nothing is spawned even if
        // dropping what it kept panicked.
        drop(this.section.take());
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
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Kept by a section; dropped, it notes whether the tracker still counted the section
    /// then, as it must: what a section keeps goes before its tracker token.
    struct Witness {
        tasks: TaskTracker,
        counted: Arc<Mutex<Option<bool>>>,
    }

    impl Drop for Witness {
        fn drop(&mut self) {
            *self.counted.lock().expect("lock") = Some(!self.tasks.is_empty());
        }
    }

    fn witness(tasks: &TaskTracker) -> (Witness, Arc<Mutex<Option<bool>>>) {
        let counted = Arc::new(Mutex::new(None));
        let witness = Witness {
            tasks: tasks.clone(),
            counted: Arc::clone(&counted),
        };
        (witness, counted)
    }

    async fn panics_after(pause: Duration) {
        tokio::time::sleep(pause).await;
        panic!("boom")
    }

    fn released(counted: &Mutex<Option<bool>>) -> Option<bool> {
        *counted.lock().expect("lock")
    }

    #[tokio::test(start_paused = true)]
    async fn a_section_runs_in_place_and_answers() {
        let tasks = TaskTracker::new();
        let (kept, counted) = witness(&tasks);
        let section = DetachOnDrop::new(&tasks, Box::pin(async { 7 }), kept);
        assert_eq!(tasks.len(), 1, "counted while it runs");
        assert_eq!(section.await, Some(7));
        assert!(tasks.is_empty());
        assert_eq!(released(&counted), Some(true), "released before the token");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_section_finishes_in_a_task_of_its_own() {
        let tasks = TaskTracker::new();
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let (kept, counted) = witness(&tasks);
        let section = DetachOnDrop::new(
            &tasks,
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                done.store(true, Ordering::SeqCst);
            }),
            kept,
        );
        let waiting = tokio::time::timeout(Duration::from_secs(1), section).await;
        assert!(waiting.is_err(), "the caller gave up first");
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(released(&counted), None, "kept by the detached section");
        tasks.close();
        tasks.wait().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the tracker waited for the rest"
        );
        assert_eq!(released(&counted), Some(true), "released before the token");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_section_gives_no_output() {
        let tasks = TaskTracker::new();
        let (kept, counted) = witness(&tasks);
        let section = DetachOnDrop::new(&tasks, Box::pin(panics_after(Duration::ZERO)), kept);
        assert_eq!(section.await, None::<()>);
        assert!(tasks.is_empty());
        assert_eq!(released(&counted), Some(true), "released before the token");
    }

    #[test]
    fn a_section_dropped_outside_a_runtime_releases_what_it_kept_first() {
        let tasks = TaskTracker::new();
        let (kept, counted) = witness(&tasks);
        drop(DetachOnDrop::new(&tasks, Box::pin(async {}), kept));
        assert!(tasks.is_empty());
        assert_eq!(released(&counted), Some(true), "released before the token");
    }

    #[tokio::test(start_paused = true)]
    async fn a_detached_section_that_panics_releases_what_it_kept_first() {
        let tasks = TaskTracker::new();
        let (kept, counted) = witness(&tasks);
        let section =
            DetachOnDrop::new(&tasks, Box::pin(panics_after(Duration::from_secs(2))), kept);
        let waiting = tokio::time::timeout(Duration::from_secs(1), section).await;
        assert!(waiting.is_err(), "the caller gave up first");
        tasks.close();
        tasks.wait().await;
        assert_eq!(released(&counted), Some(true), "released before the token");
    }
}
