//! Sources reloaded without a restart: new sources, removed ones, rotated secrets, when the
//! config file or a secret file it names changes, or on SIGHUP ([`spillway_reload`] says
//! when). A reload validates the whole file as a start would; one that fails keeps the running
//! sources and logs every bad field. Readiness is not touched either way.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use spillway_config::{Config, ConfigError, Process, ResolvedSource};
use spillway_core::key::KeySource;
use spillway_reload::ConfigWatch;

use crate::pipeline::{by_name, Pipeline};

/// Where the sources come from, and what was last seen of it.
#[derive(Debug)]
pub(crate) struct Watch {
    path: PathBuf,
    /// The config file and the source files it names, and SIGHUP.
    watch: ConfigWatch,
    /// The largest `max_body_bytes` at start: each client's share of the body budget was
    /// sized on it.
    largest_body: u64,
}

impl Watch {
    pub(crate) async fn new(path: PathBuf, config: &Config) -> Self {
        let watch = ConfigWatch::new(watched(&path, config), config.ingress.reload_interval).await;
        Self {
            path,
            watch,
            largest_body: config
                .sources
                .values()
                .map(|s| s.max_body(config.objects.is_some()))
                .max()
                .unwrap_or(0),
        }
    }

    /// Reloads on every change and every SIGHUP until the task is aborted.
    pub(crate) async fn run(mut self, pipeline: Arc<Pipeline>, kafka: spillway_kafka::Connection) {
        loop {
            let trigger = self.watch.next().await;
            match self
                .reload(&pipeline, &kafka, trigger.reason(), trigger.is_loud())
                .await
            {
                Some(config) => self.watch.succeeded(watched(&self.path, &config)).await,
                None => self.watch.failed(),
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
                // One failed reload, every bad field logged, on one line.
                refused(&spillway_config::describe(&fields));
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
            crate::init_source_metrics(&pipeline.metrics, source);
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
