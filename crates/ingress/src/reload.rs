//! Sources reloaded without a restart: new sources, removed ones, rotated secrets. The config
//! file and every secret file the sources name are fingerprinted every
//! `ingress.reload_interval` (Kubernetes updates a mounted Secret in place, by a symlink swap
//! that file watches miss, so the files are read rather than watched), and SIGHUP reloads at
//! once. A reload validates the whole file as a start would; one that fails keeps the running
//! sources, logs every bad field, and is tried again quietly every interval until it succeeds
//! (a ConfigMap and the Secret it names are updated one after the other). Readiness is not
//! touched either way.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spillway_config::{Config, ConfigError, Process, ResolvedSource};
use spillway_core::key::KeySource;
use spillway_kafka::ProduceError;

use crate::pipeline::{by_name, Pipeline};

/// Where the sources come from, and what was last seen of it.
#[derive(Debug)]
pub(crate) struct Watch {
    path: PathBuf,
    interval: Duration,
    /// The config file and the source files it names, as last loaded.
    files: Vec<PathBuf>,
    /// The largest `max_body_bytes` at start: each client's share of the body budget was
    /// sized on it.
    largest_body: u64,
    /// Listened to from the start, so that a SIGHUP before the first reload does not end the
    /// process (its default action).
    hangup: Hangup,
}

impl Watch {
    pub(crate) fn new(path: PathBuf, config: &Config) -> Self {
        let files = watched(&path, config);
        Self {
            path,
            interval: config.ingress.reload_interval,
            files,
            largest_body: config
                .sources
                .values()
                .map(|s| s.max_body_bytes)
                .max()
                .unwrap_or(0),
            hangup: hangups(),
        }
    }

    /// Reloads on every change and every SIGHUP until the task is aborted.
    pub(crate) async fn run(mut self, pipeline: Arc<Pipeline>, kafka: spillway_kafka::Connection) {
        let mut seen = fingerprint(self.files.clone()).await;
        let mut failing = false;
        loop {
            let asked = tokio::select! {
                _ = recv(&mut self.hangup) => true,
                _ = tick(self.interval) => false,
            };
            // Taken before loading. After a reload the new files are fingerprinted afresh: a
            // change made in the moment the file was being read waits for the next one.
            let now = fingerprint(self.files.clone()).await;
            let changed = now != seen;
            if !(asked || changed || failing) {
                continue;
            }
            seen = now;
            let why = if asked {
                "SIGHUP"
            } else {
                "a watched file changed"
            };
            match self.reload(&pipeline, &kafka, why, asked || changed).await {
                Some(config) => {
                    failing = false;
                    self.files = watched(&self.path, &config);
                    seen = fingerprint(self.files.clone()).await;
                }
                None => failing = true,
            }
        }
    }

    /// Loads, validates and swaps in the sources; `None` (and the running sources kept) when
    /// the file is not valid or needs a restart. A quiet attempt (a retry with nothing new)
    /// logs and counts nothing.
    async fn reload(
        &self,
        pipeline: &Arc<Pipeline>,
        kafka: &spillway_kafka::Connection,
        why: &str,
        loud: bool,
    ) -> Option<Config> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = spillway_config::load_for(&path, Process::Ingress)?;
            let sources = config.resolve_sources().map_err(ConfigError::Invalid)?;
            Ok::<_, ConfigError>((config, sources))
        })
        .await;
        let refused = |e: &dyn std::fmt::Display| {
            if loud {
                pipeline.metrics.reload(false);
                tracing::error!(
                    reason = why,
                    "reload refused, the running sources are kept: {e}"
                );
            }
        };
        let (config, sources) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(ConfigError::Invalid(fields))) => {
                // One failed reload, every bad field logged.
                let lines: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}: {}", f.path, f.message))
                    .collect();
                refused(&lines.join("; "));
                return None;
            }
            Ok(Err(e)) => {
                refused(&e);
                return None;
            }
            Err(e) => {
                refused(&format_args!("the reload task failed: {e}"));
                return None;
            }
        };
        if let Some(why_not) = self.needs_restart(pipeline, &sources) {
            refused(&why_not);
            return None;
        }
        let before: BTreeSet<String> = pipeline.sources.load().keys().cloned().collect();
        for source in &sources {
            pipeline
                .metrics
                .init_source(&source.name, &source.topic, ProduceError::CODES);
            for key_id in source.verifier.key_ids() {
                pipeline.metrics.init_key(&source.name, key_id);
            }
        }
        let sources = by_name(sources);
        let after: BTreeSet<String> = sources.keys().cloned().collect();
        let added: Vec<&String> = after.difference(&before).collect();
        let removed: Vec<&String> = before.difference(&after).collect();
        let checked = sources.values().cloned().collect();
        pipeline.sources.store(Arc::new(sources));
        pipeline.metrics.reload(true);
        tracing::info!(
            reason = why,
            ?added,
            ?removed,
            sources = after.len(),
            "sources reloaded"
        );
        tokio::spawn(crate::check_topic_limits(kafka.clone(), checked));
        Some(config)
    }

    /// What in `sources` this process cannot take without a restart, if anything.
    fn needs_restart(&self, pipeline: &Pipeline, sources: &[ResolvedSource]) -> Option<String> {
        let needs_store = sources
            .iter()
            .any(|s| s.dedupe != KeySource::None || s.rate_limit.is_some());
        if needs_store && pipeline.store.is_none() {
            return Some(
                "a source now deduplicates or limits its rate, and this process started without Redis: restart it".into(),
            );
        }
        let largest = sources.iter().map(|s| s.max_body_bytes).max().unwrap_or(0);
        if largest > self.largest_body {
            return Some(format!(
                "a source's max_body_bytes ({largest}) is over the largest at start ({}), on which each client's share of the body memory was sized: restart it",
                self.largest_body
            ));
        }
        None
    }
}

/// The config file and every file its sources read.
fn watched(path: &std::path::Path, config: &Config) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain(config.source_files())
        .collect()
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
