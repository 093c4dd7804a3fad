//! Sources and the config file's subscriptions reloaded without a restart: when the config
//! file or a subscription's secret file changes (checked every `worker.reload_interval`) or on
//! SIGHUP, a new source's topic is
//! consumed, changed routes (event types, forwarded headers) are used for the records handled
//! from then on, and subscriptions are resolved again (the file's, and registered ones that
//! name a source this worker did not know). A removed source stays known, and its topic
//! consumed, until the worker restarts, so that what the ingress accepted before the removal
//! is still delivered to the subscriptions that want it. A reload validates the whole file as
//! a start would; one that fails keeps everything running as it is and logs every bad field.
//! Other sections need a restart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::consumer::Consumer as _;
use spillway_config::{Config, ConfigError, Process};
use spillway_reload::{ConfigWatch, Trigger};
use tokio_util::sync::CancellationToken;

use crate::handling::Handling;
use crate::lanes::WorkerConsumer;

/// The config file this worker was started with, and when to read it again.
#[derive(Debug)]
pub(crate) struct SourceReload {
    path: PathBuf,
    watch: ConfigWatch,
}

impl SourceReload {
    /// Watches `path`, which `config` was read from; SIGHUP is taken from now on.
    pub(crate) async fn new(path: PathBuf, config: &Config) -> Self {
        let watch = ConfigWatch::new(watched(&path, config), config.worker.reload_interval).await;
        Self { path, watch }
    }

    /// Reloads until `cancel`; `consumer` is the source topics' consumer, subscribed to
    /// `topics`.
    pub(crate) async fn run(
        mut self,
        handling: Arc<Handling>,
        consumer: Arc<WorkerConsumer>,
        mut topics: BTreeSet<String>,
        cancel: CancellationToken,
    ) {
        loop {
            let trigger = tokio::select! {
                trigger = self.watch.next() => trigger,
                () = cancel.cancelled() => return,
            };
            if self
                .reload(&handling, &consumer, &mut topics, trigger)
                .await
            {
                self.watch.succeeded(vec![self.path.clone()]).await;
            } else {
                self.watch.failed();
            }
        }
    }

    /// Loads the file and swaps in its sources and subscriptions; false when it is not valid
    /// (everything kept) or the new topics could not be subscribed to (tried again).
    async fn reload(
        &self,
        handling: &Handling,
        consumer: &Arc<WorkerConsumer>,
        topics: &mut BTreeSet<String>,
        trigger: Trigger,
    ) -> bool {
        let path = self.path.clone();
        let running = handling.subscriptions.config();
        let loaded = tokio::task::spawn_blocking(move || {
            let file = spillway_config::load_for(&path, Process::Worker)?;
            let gone: Vec<String> = running
                .sources
                .keys()
                .filter(|name| !file.sources.contains_key(*name))
                .cloned()
                .collect();
            let config = merged(&running, file);
            let routes = config
                .resolve_source_routes()
                .map_err(ConfigError::Invalid)?;
            let subscriptions = config
                .resolve_subscriptions()
                .map_err(ConfigError::Invalid)?;
            Ok::<_, ConfigError>((config, routes, subscriptions, gone))
        })
        .await;
        let refused = |e: &dyn std::fmt::Display| {
            if trigger.is_loud() {
                handling.metrics.reload(false);
                tracing::error!(
                    reason = trigger.reason(),
                    "reload refused, the running sources and subscriptions are kept: {e}"
                );
            }
            false
        };
        let (config, routes, subscriptions, gone) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(ConfigError::Invalid(fields))) => {
                return refused(&spillway_config::describe(&fields))
            }
            Ok(Err(e)) => return refused(&e),
            Err(e) => return refused(&format_args!("the reload task failed: {e}")),
        };
        let wanted: BTreeSet<String> = topics
            .iter()
            .cloned()
            .chain(config.source_topics())
            .collect();
        let known: BTreeSet<String> = handling.sources.load().keys().cloned().collect();
        let added: Vec<String> = routes
            .iter()
            .filter(|r| !known.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        // Routes and subscriptions first: a record of a new topic must find its source.
        handling.sources.store(Arc::new(
            routes.into_iter().map(|r| (r.name.clone(), r)).collect(),
        ));
        handling
            .subscriptions
            .reconfigure(Arc::new(config), subscriptions);
        if wanted != *topics {
            // A blocking librdkafka call (it takes the consumer's lock): off the runtime.
            let (consumer, names) = (consumer.clone(), wanted.clone());
            let subscribed = tokio::task::spawn_blocking(move || {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                consumer.subscribe(&names)
            })
            .await;
            match subscribed {
                Ok(Ok(())) => *topics = wanted,
                Ok(Err(e)) => {
                    return refused(&format_args!("cannot subscribe to the new topics: {e}"))
                }
                Err(e) => return refused(&format_args!("the subscribe task failed: {e}")),
            }
        }
        handling.metrics.reload(true);
        if !gone.is_empty() {
            tracing::warn!(
                removed = ?gone,
                "sources removed from the config file are still consumed until the worker restarts, so that what was accepted is delivered"
            );
        }
        tracing::info!(
            reason = trigger.reason(),
            ?added,
            topics = topics.len(),
            "sources reloaded"
        );
        true
    }
}

/// The config file, the secret files its subscriptions name and the sources' schema files: a
/// rotated subscription secret (a mounted Secret updated in place) or a new descriptor set is
/// picked up like an edit.
fn watched(path: &std::path::Path, config: &Config) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain(config.subscription_files())
        .chain(config.schema_files())
        .collect()
}

/// The running config with the file's sources laid over its own (new ones added, changed
/// ones replaced, removed ones kept: their topics are still consumed) and the file's
/// subscriptions; every other section stays as the worker started.
fn merged(running: &Config, file: Config) -> Config {
    let mut config = running.clone();
    for (name, source) in file.sources {
        config.sources.insert(name, source);
    }
    config.subscriptions = file.subscriptions;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        spillway_config::parse_str(&format!("kafka: {{ brokers: k:9092 }}\n{text}"))
            .expect("parses")
    }

    #[test]
    fn the_config_file_and_the_subscriptions_secret_files_are_watched() {
        let config = config(
            "sources:\n  a: { verify: { scheme: none }, dedupe: { from: none } }\n\
             subscriptions:\n  - { id: s, url: \"https://x.example.com\", secrets: [{ id: k, file: /run/secrets/s }] }\n",
        );
        let files = watched(std::path::Path::new("/etc/spillway.yaml"), &config);
        assert_eq!(
            files,
            [
                PathBuf::from("/etc/spillway.yaml"),
                PathBuf::from("/run/secrets/s")
            ]
        );
    }

    #[test]
    fn the_file_s_sources_are_laid_over_and_removed_ones_kept_other_sections_not_reloaded() {
        let running = config(
            "worker: { drain_timeout: 5s }\nsources:\n  a: { verify: { scheme: none }, dedupe: { from: none }, topic: t.a }\n  b: { verify: { scheme: none }, dedupe: { from: none } }\n",
        );
        let file = config(
            "worker: { drain_timeout: 7s }\nsources:\n  a: { verify: { scheme: none }, dedupe: { from: none }, topic: t.a2 }\n  c: { verify: { scheme: none }, dedupe: { from: none } }\n",
        );
        let merged = merged(&running, file);
        let names: Vec<&String> = merged.sources.keys().collect();
        assert_eq!(
            names,
            ["a", "b", "c"],
            "b removed from the file, still known"
        );
        assert_eq!(
            merged.sources["a"].topic.as_deref(),
            Some("t.a2"),
            "changed"
        );
        assert_eq!(
            merged.worker.drain_timeout,
            std::time::Duration::from_secs(5),
            "other sections as started"
        );
    }
}
