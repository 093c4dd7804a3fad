//! The log writer: lines gathered in memory and written out by a thread of their own every few
//! milliseconds, so a log line costs its writer a copy, never a wait on stderr.
//!
//! Why not tracing-appender's non-blocking writer, which this replaced: it hands each line to
//! its thread through a channel, waking the thread for every line, and the thread writes each
//! alone. At a few thousand requests a second, each with its access-log line, that thread took
//! 7-8 µs of CPU per request (measured 2026-12-04 at 3,500 requests/s), about 7% of the
//! ingress's, most of it being woken. Woken by a clock instead, it writes a whole interval's
//! lines in one call.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line waits at most before it is written.
pub(crate) const INTERVAL: Duration = Duration::from_millis(10);

/// Bytes held for the writer at most: when stderr is slower than the lines come, further lines
/// are dropped (and counted in a line of their own) rather than held without bound.
pub(crate) const MAX_PENDING: usize = 16 << 20;

/// How long a stopping process waits for the last lines to be written: a stderr that takes
/// no more (a pipe nobody reads) must not hold up the exit.
pub(crate) const LAST_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Where log lines go: each `write` is one whole line (tracing's formatter writes an event at
/// once), appended to what the thread writes next.
#[derive(Debug, Clone)]
pub(crate) struct BatchedLog {
    shared: Arc<Shared>,
}

/// Keeps the writing thread; dropping it writes what is still held and stops the thread.
#[derive(Debug)]
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread has written its last lines.
    finished: std::sync::mpsc::Receiver<()>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Set when the guard is dropped; the thread waits on `stopped` between writes.
    stop: Mutex<bool>,
    stopped: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
}

/// A handle that appends to the lines held; what `MakeWriter` gives out.
pub(crate) struct LineSink<'a> {
    shared: &'a Shared,
}

// === impl BatchedLog ===

impl BatchedLog {
    /// A writer and the thread writing to `out` what it is given.
    pub(crate) fn start<W: Write + Send + 'static>(out: W) -> io::Result<(Self, LogWriterGuard)> {
        let shared = Arc::new(Shared::default());
        let (finishing, finished) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let _finishing = finishing;
                    shared.write_until_stopped(out);
                }
            })?;
        let guard = LogWriterGuard {
            shared: shared.clone(),
            thread: Some(thread),
            finished,
        };
        Ok((Self { shared }, guard))
    }
}

impl<'a> MakeWriter<'a> for BatchedLog {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink {
            shared: &self.shared,
        }
    }
}

impl Write for LineSink<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.shared.hold(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// === impl Shared ===

impl Shared {
    fn hold(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        if pending.bytes.len() + line.len() > MAX_PENDING {
            pending.dropped += 1;
        } else {
            pending.bytes.extend_from_slice(line);
        }
    }

    /// Writes what is held to `out`, and a count of the lines dropped since the last time.
    fn write_held(&self, out: &mut impl Write, spare: &mut Vec<u8>) {
        let dropped = {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut pending.bytes, spare);
            std::mem::take(&mut pending.dropped)
        };
        // Nothing to do with a failed write of a log line but to go on: there is nowhere else
        // to report it.
        let _ = out.write_all(spare);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "spillway: {dropped} log lines dropped: stderr was slower than they came"
            );
        }
        let _ = out.flush();
        spare.clear();
        // A burst's buffer is not kept for the quiet that follows.
        spare.shrink_to(64 << 10);
    }

    fn write_until_stopped(&self, mut out: impl Write) {
        let mut spare = Vec::new();
        loop {
            let stopping = {
                let stop = lock(&self.stop);
                let (stop, _) = self
                    .stopped
                    .wait_timeout_while(stop, INTERVAL, |stop| !*stop)
                    .unwrap_or_else(PoisonError::into_inner);
                *stop
            };
            self.write_held(&mut out, &mut spare);
            if stopping {
                return;
            }
        }
    }
}

// === impl LogWriterGuard ===

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.stopped.notify_all();
        // Joined only once it has finished; a thread stuck in a write is left behind.
        if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) =
            self.finished.recv_timeout(LAST_WRITE_WAIT)
        {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A writer that panicked while holding the lock left whole lines behind (each is appended in
/// one call), so the lines are still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).expect("utf-8")
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let out = Captured::default();
        let (log, guard) = BatchedLog::start(out.clone()).expect("thread");
        for n in 0..1000 {
            let mut sink = log.make_writer();
            sink.write_all(format!("line {n}\n").as_bytes())
                .expect("held");
        }
        drop(guard);
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn lines_past_the_bound_are_dropped_and_counted() {
        let shared = Shared::default();
        let line = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_PENDING >> 20) + 3 {
            shared.hold(&line);
        }
        let mut out = Vec::new();
        shared.write_held(&mut out, &mut Vec::new());
        assert_eq!(
            out.len() - MAX_PENDING,
            "spillway: 3 log lines dropped: stderr was slower than they came\n".len()
        );
        assert!(out.ends_with(b"spillway: 3 log lines dropped: stderr was slower than they came\n"));
        // The count starts again, and room is there again.
        let mut out = Vec::new();
        shared.hold(b"after\n");
        shared.write_held(&mut out, &mut Vec::new());
        assert_eq!(out, b"after\n");
    }

    /// A `Write` that never returns, like a pipe nobody reads.
    struct Stuck;

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stderr_that_takes_nothing_more_does_not_hold_up_the_exit() {
        let (log, guard) = BatchedLog::start(Stuck).expect("thread");
        log.make_writer()
            .write_all(b"never written\n")
            .expect("held");
        // Returns after LAST_WRITE_WAIT at most instead of waiting for the write forever.
        drop(guard);
    }
}
