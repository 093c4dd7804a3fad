//! Sources reloaded without a restart: new sources, removed ones, rotated secrets. The config
//! file and every secret file the sources name are fingerprinted every
//! `ingress.reload_interval` (Kubernetes updates a mounted Secret in place, by a symlink swap
//! that file watches miss, so the files are read rather than watched), and SIGHUP reloads at
//! once. A reload validates the whole file as a start would; one that fails keeps the running
//! sources and logs every bad field. Readiness is not touched either way.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use spillway_config::{Config, ConfigError, Process};
use spillway_core::key::KeySource;
use spillway_kafka::ProduceError;

use crate::pipeline::{by_name, Pipeline};

/// Where the sources come from, and what was last seen of it.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    path: PathBuf,
    interval: Duration,
    /// The config file and the source files it names, as last loaded.
    files: Vec<PathBuf>,
}

impl Watch {
    pub(crate) fn new(path: PathBuf, config: &Config) -> Self {
        let files = watched(&path, config);
        Self {
            path,
            interval: config.ingress.reload_interval,
            files,
        }
    }

    /// Reloads on every change and every SIGHUP until the task is aborted.
    pub(crate) async fn run(mut self, pipeline: Arc<Pipeline>, kafka: spillway_kafka::Connection) {
        let mut hangup = hangups();
        let mut seen = fingerprint(&self.files);
        loop {
            let asked = tokio::select! {
                _ = recv(&mut hangup) => true,
                _ = tick(self.interval) => false,
            };
            let now = fingerprint(&self.files);
            if !asked && now == seen {
                continue;
            }
            let why = if asked {
                "SIGHUP"
            } else {
                "a watched file changed"
            };
            seen = now;
            if let Some(config) = self.reload(&pipeline, &kafka, why) {
                self.files = watched(&self.path, &config);
                seen = fingerprint(&self.files);
            }
        }
    }

    /// Loads, validates and swaps in the sources; `None` (and the running sources kept) when
    /// the file is not valid.
    fn reload(
        &self,
        pipeline: &Arc<Pipeline>,
        kafka: &spillway_kafka::Connection,
        why: &str,
    ) -> Option<Config> {
        let loaded = spillway_config::load_for(&self.path, Process::Ingress).and_then(|config| {
            let sources = config.resolve_sources().map_err(ConfigError::Invalid)?;
            Ok((config, sources))
        });
        let (config, sources) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                failed(pipeline, why, &e);
                return None;
            }
        };
        let needs_store = sources
            .iter()
            .any(|s| s.dedupe != KeySource::None || s.rate_limit.is_some());
        if needs_store && pipeline.store.is_none() {
            tracing::error!(
                reason = why,
                "reload refused: a source now deduplicates or limits its rate, and this process started without Redis; restart it"
            );
            pipeline.metrics.reload(false);
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
}

fn failed(pipeline: &Pipeline, why: &str, e: &ConfigError) {
    pipeline.metrics.reload(false);
    match e {
        ConfigError::Invalid(fields) => {
            for field in fields {
                tracing::error!(reason = why, field = %field.path, "reload refused, the running sources are kept: {}", field.message);
            }
        }
        other => {
            tracing::error!(reason = why, error = %other, "reload refused, the running sources are kept");
        }
    }
}

/// The config file and every file its sources read.
fn watched(path: &std::path::Path, config: &Config) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain(config.source_files())
        .collect()
}

/// A digest of the files' contents; a file that cannot be read counts as its error's kind, so
/// that it vanishing or coming back is a change too.
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for file in files {
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
}

async fn tick(interval: Duration) {
    if interval.is_zero() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(interval).await;
}

#[cfg(unix)]
fn hangups() -> Option<tokio::signal::unix::Signal> {
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
async fn recv(hangup: &mut Option<tokio::signal::unix::Signal>) {
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
fn hangups() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn recv(_: &mut Option<()>) {
    std::future::pending::<()>().await;
}
