//! Sources reloaded without a restart: when the config file changes (checked every
//! `worker.reload_interval`) or on SIGHUP, a new source's topic is consumed and changed routes
//! (event types, forwarded headers) are used for the records handled from then on. A removed
//! source's topic is still consumed until the worker restarts, so that what the ingress
//! accepted before the removal is still delivered. A reload validates the whole file as a start
//! would; one that fails keeps the running sources and logs every bad field. Subscriptions in
//! the config file are not reloaded (the registry's are live).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::consumer::Consumer as _;
use spillway_config::{Config, ConfigError, Process, SourceRoute};
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
        let watch = ConfigWatch::new(vec![path.clone()], config.worker.reload_interval).await;
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

    /// Loads the file and swaps in its routes; false (the running ones kept) when it is not
    /// valid or the new topics cannot be subscribed to.
    async fn reload(
        &self,
        handling: &Handling,
        consumer: &WorkerConsumer,
        topics: &mut BTreeSet<String>,
        trigger: Trigger,
    ) -> bool {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = spillway_config::load_for(&path, Process::Worker)?;
            let routes = config
                .resolve_source_routes()
                .map_err(ConfigError::Invalid)?;
            Ok::<_, ConfigError>((config.topics(), routes))
        })
        .await;
        let refused = |e: &dyn std::fmt::Display| {
            if trigger.is_loud() {
                handling.metrics.reload(false);
                tracing::error!(
                    reason = trigger.reason(),
                    "reload refused, the running sources are kept: {e}"
                );
            }
            false
        };
        let (new_topics, routes) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(ConfigError::Invalid(fields))) => {
                return refused(&spillway_config::describe(&fields))
            }
            Ok(Err(e)) => return refused(&e),
            Err(e) => return refused(&format_args!("the reload task failed: {e}")),
        };
        let (merged, added, removed) = merge(&handling.sources.load(), routes);
        let wanted: BTreeSet<String> = topics.iter().cloned().chain(new_topics).collect();
        if wanted != *topics {
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            if let Err(e) = consumer.subscribe(&names) {
                return refused(&format_args!("cannot subscribe to {names:?}: {e}"));
            }
            *topics = wanted;
        }
        handling.sources.store(Arc::new(merged));
        handling.metrics.reload(true);
        if !removed.is_empty() {
            tracing::warn!(
                ?removed,
                "sources removed from the config are still consumed until the worker restarts, so that what was accepted is delivered"
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

/// The running routes with `routes` laid over them: new ones added, changed ones replaced,
/// and those no longer configured kept (their topics are still consumed). Also the names
/// added and those no longer configured.
fn merge(
    running: &HashMap<String, SourceRoute>,
    routes: Vec<SourceRoute>,
) -> (HashMap<String, SourceRoute>, Vec<String>, Vec<String>) {
    let configured: BTreeSet<String> = routes.iter().map(|r| r.name.clone()).collect();
    let mut merged = running.clone();
    let mut added = Vec::new();
    for route in routes {
        if !running.contains_key(&route.name) {
            added.push(route.name.clone());
        }
        merged.insert(route.name.clone(), route);
    }
    let removed = running
        .keys()
        .filter(|name| !configured.contains(*name))
        .cloned()
        .collect();
    (merged, added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, topic: &str) -> SourceRoute {
        SourceRoute {
            name: name.into(),
            topic: topic.into(),
            forward_headers: Vec::new(),
            event_type: None,
        }
    }

    #[test]
    fn new_and_changed_routes_are_laid_over_and_removed_ones_kept() {
        let running: HashMap<String, SourceRoute> = [route("a", "t.a"), route("b", "t.b")]
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let (merged, added, removed) = merge(&running, vec![route("a", "t.a2"), route("c", "t.c")]);
        assert_eq!(merged["a"].topic, "t.a2", "changed");
        assert_eq!(merged["b"].topic, "t.b", "kept, still consumed");
        assert_eq!(merged["c"].topic, "t.c", "added");
        assert_eq!(
            (added, removed),
            (vec!["c".to_owned()], vec!["b".to_owned()])
        );
    }
}
