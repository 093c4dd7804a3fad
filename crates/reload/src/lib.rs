//! What tells a long-running process to reload its config: a change to the config file or to a
//! file it names (secrets), seen by reading them every interval (Kubernetes updates a mounted
//! Secret or ConfigMap in place, by a symlink swap that file watches miss), or SIGHUP, at once.
//! A reload that failed is tried again, quietly, every interval until one succeeds (a ConfigMap
//! and the Secret it names are updated one after the other). What a reload does is the
//! process's own business.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The config file and the files it names, the SIGHUPs, and what was last seen of them.
#[derive(Debug)]
pub struct ConfigWatch {
    interval: Duration,
    files: Vec<PathBuf>,
    seen: [u8; 32],
    /// The last reload failed: try again every interval.
    failing: bool,
    /// Listened to from the start, so that a SIGHUP before the first reload does not end the
    /// process (its default action).
    hangup: Hangup,
}

/// Why a reload is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Hangup,
    Changed,
    /// A failed reload tried again with nothing new: log and count nothing.
    Retry,
}

// === impl Trigger ===

impl Trigger {
    /// For the log line.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Hangup => "SIGHUP",
            Self::Changed => "a watched file changed",
            Self::Retry => "retry",
        }
    }

    /// Whether the outcome is worth a log line and a count: not for a quiet retry.
    pub fn is_loud(self) -> bool {
        self != Self::Retry
    }
}

// === impl ConfigWatch ===

impl ConfigWatch {
    /// Watches `files` (the config file first) every `interval` (zero: SIGHUP only), and
    /// SIGHUP from now on. Call it at start, before anything else could take the signal.
    pub async fn new(files: Vec<PathBuf>, interval: Duration) -> Self {
        let seen = fingerprint(files.clone()).await;
        Self {
            interval,
            files,
            seen,
            failing: false,
            hangup: hangups(),
        }
    }

    /// Waits until a reload is due.
    pub async fn next(&mut self) -> Trigger {
        loop {
            let asked = tokio::select! {
                _ = recv(&mut self.hangup) => true,
                _ = tick(self.interval) => false,
            };
            // Taken before the reload reads them: a change made while it reads waits for the
            // next one rather than being missed.
            let now = fingerprint(self.files.clone()).await;
            let changed = now != self.seen;
            self.seen = now;
            if asked {
                return Trigger::Hangup;
            }
            if changed {
                return Trigger::Changed;
            }
            if self.failing {
                return Trigger::Retry;
            }
        }
    }

    /// The reload succeeded and its config names `files` (the config file first): watch them.
    /// The fingerprint taken before the reload read them stays, so that a change made while it
    /// read is seen at the next check; only a new list of files is fingerprinted afresh.
    pub async fn succeeded(&mut self, files: Vec<PathBuf>) {
        self.failing = false;
        if files != self.files {
            self.seen = fingerprint(files.clone()).await;
            self.files = files;
        }
    }

    /// The reload failed; the running config is kept and the reload tried again.
    pub fn failed(&mut self) {
        self.failing = true;
    }
}

/// A digest of the files' contents, read on a blocking thread; a file that cannot be read
/// counts as its error's kind, so that it vanishing or coming back is a change too.
async fn fingerprint(files: Vec<PathBuf>) -> [u8; 32] {
    let digest = move || {
        let mut digest = Sha256::new();
        for file in &files {
            digest.update(file.as_os_str().as_encoded_bytes());
            match std::fs::read(file) {
                Ok(bytes) => {
                    digest.update(b"\0ok\0");
                    digest.update(&bytes);
                }
                Err(e) => digest.update(format!("\0{:?}\0", e.kind()).as_bytes()),
            }
        }
        digest.finalize().into()
    };
    // A failed task changes nothing: the same zeroes as last time, or a change once.
    tokio::task::spawn_blocking(digest).await.unwrap_or([0; 32])
}

async fn tick(interval: Duration) {
    if interval.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(interval).await;
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;

#[cfg(unix)]
fn hangups() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads follow file changes only");
            None
        }
    }
}

#[cfg(unix)]
async fn recv(hangup: &mut Hangup) {
    match hangup {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
type Hangup = ();

#[cfg(not(unix))]
fn hangups() -> Hangup {}

#[cfg(not(unix))]
async fn recv(_: &mut Hangup) {
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_change_is_seen_at_the_next_tick_and_a_failure_is_retried_quietly() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("spillway.yaml");
        std::fs::write(&file, "a").expect("write");
        let mut watch = ConfigWatch::new(vec![file.clone()], Duration::from_secs(10)).await;
        std::fs::write(&file, "b").expect("write");
        assert_eq!(watch.next().await, Trigger::Changed);
        watch.failed();
        assert_eq!(
            watch.next().await,
            Trigger::Retry,
            "nothing new, but it failed"
        );
        watch.succeeded(vec![file.clone()]).await;
        // Written while the reload read the file: seen at the next check.
        std::fs::write(&file, "c").expect("write");
        assert_eq!(watch.next().await, Trigger::Changed);
        watch.succeeded(vec![file.clone()]).await;
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(
            watch.next().await,
            Trigger::Changed,
            "a file vanishing is a change"
        );
        assert!(Trigger::Changed.is_loud() && !Trigger::Retry.is_loud());
    }
}
