//! The subscriptions a worker delivers to, live: the config file's beside the registry's as
//! far as it has been read, swapped as a whole on every change; and how listings show them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use spillway_config::{Config, ResolvedSubscription, StoredSubscription};
use spillway_kafka::Delivered;

use super::{Change, Follower, RegistryError, TopicError, CATCH_UP};
use crate::topics::registry_topic;

/// The subscriptions a worker delivers to, as they stand: the config file's, then the
/// registry's as far as it has been read. Replaced as a whole on every change, so a lane
/// reading it never sees half an update.
#[derive(Debug)]
pub struct LiveSubscriptions {
    /// The config subscriptions are resolved against; a worker's reload replaces it (see
    /// [`LiveSubscriptions::reconfigure`]).
    config: arc_swap::ArcSwap<Config>,
    from_config: RwLock<Vec<ResolvedSubscription>>,
    registered: RwLock<BTreeMap<String, (StoredSubscription, ResolvedSubscription)>>,
    /// Registered subscriptions this worker could not resolve (a source it does not know
    /// yet): resolved again when the config is replaced.
    refused: RwLock<BTreeMap<String, StoredSubscription>>,
    current: RwLock<Arc<Vec<Arc<ResolvedSubscription>>>>,
    /// Ids whose removal (a tombstone) this worker has read: their parked retries are
    /// dropped, while a retry for an id never seen is dead-lettered (see `Handling::retry`).
    removed: RwLock<HashSet<String>>,
    /// The next offset to apply, per registry partition (for read-your-writes).
    applied: tokio::sync::watch::Sender<HashMap<i32, i64>>,
}

/// A subscription as listings show it: secrets by id only, headers by name only (their
/// values may be credentials of the subscriber).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionView {
    pub id: String,
    pub origin: Origin,
    pub url: String,
    pub sources: Vec<String>,
    pub event_types: Vec<String>,
    pub secrets: Vec<SecretView>,
    pub header_names: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub rate_limit: Option<u32>,
}

/// A secret as listings show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretView {
    pub id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<time::OffsetDateTime>,
}

impl SubscriptionView {
    pub(super) fn new<S>(
        sub: &spillway_config::SubscriptionConfig<S>,
        secrets: impl Iterator<Item = (String, Option<time::OffsetDateTime>)>,
        origin: Origin,
    ) -> Self {
        Self {
            id: sub.id.clone(),
            origin,
            url: sub.url.clone(),
            sources: sub.sources.clone(),
            event_types: sub.event_types.clone(),
            secrets: secrets
                .map(|(id, not_after)| SecretView { id, not_after })
                .collect(),
            header_names: sub.headers.keys().cloned().collect(),
            timeout: sub.timeout,
            rate_limit: sub.rate_limit,
        }
    }
}

/// Where a listed subscription is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Registry,
}

// === impl LiveSubscriptions ===

impl LiveSubscriptions {
    pub fn new(config: Arc<Config>, from_config: Vec<ResolvedSubscription>) -> Self {
        let current = RwLock::new(Arc::new(
            from_config.iter().cloned().map(Arc::new).collect(),
        ));
        Self {
            config: arc_swap::ArcSwap::new(config),
            from_config: RwLock::new(from_config),
            registered: RwLock::default(),
            refused: RwLock::default(),
            current,
            removed: RwLock::default(),
            applied: tokio::sync::watch::Sender::new(HashMap::new()),
        }
    }

    /// The config file's subscriptions and the registry's as it stands now (for one-off
    /// commands such as replay; workers keep following it).
    pub async fn load(config: Arc<Config>) -> Result<Self, RegistryError> {
        let from_config = config
            .resolve_subscriptions()
            .map_err(RegistryError::Invalid)?;
        let live = Self::new(config.clone(), from_config);
        let mut follower = Follower::start(&config).await?;
        live.catch_up(&mut follower).await?;
        Ok(live)
    }

    /// The config subscriptions are resolved against now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Replaces the config (a worker's reload: new sources, the file's subscriptions) and
    /// resolves every subscription again against it: the file's are `from_config`, and the
    /// registered ones refused before (a source this worker did not know) may resolve now.
    pub fn reconfigure(&self, config: Arc<Config>, from_config: Vec<ResolvedSubscription>) {
        self.config.store(config);
        let mut registered = self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut refused = self.refused.write().unwrap_or_else(PoisonError::into_inner);
        let stored: Vec<StoredSubscription> = registered
            .values()
            .map(|(stored, _)| stored.clone())
            .chain(refused.values().cloned())
            .collect();
        registered.clear();
        refused.clear();
        for sub in stored {
            self.settle(sub, &mut registered, &mut refused);
        }
        *self
            .from_config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = from_config;
        self.publish(&registered);
    }

    /// Every subscription now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<ResolvedSubscription>>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The subscription with that id now.
    pub fn find(&self, id: &str) -> Option<Arc<ResolvedSubscription>> {
        self.snapshot().iter().find(|s| s.id == id).cloned()
    }

    /// Whether the registry removed the subscription with that id (and has not set it again).
    pub fn was_removed(&self, id: &str) -> bool {
        self.removed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// The registered subscriptions as stored (secrets included).
    pub fn registered(&self) -> Vec<StoredSubscription> {
        self.registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(stored, _)| stored.clone())
            .collect()
    }

    /// The registered subscription with that id, as stored.
    pub fn registered_one(&self, id: &str) -> Option<StoredSubscription> {
        self.registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|(stored, _)| stored.clone())
    }

    /// Applies one change read at `at`.
    pub fn apply(&self, at: Delivered, change: Change) {
        {
            let mut registered = self
                .registered
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut refused = self.refused.write().unwrap_or_else(PoisonError::into_inner);
            let mut removed = self.removed.write().unwrap_or_else(PoisonError::into_inner);
            match change {
                Change::Put(sub) => {
                    // Set again: no longer removed, whether this worker can deliver to it
                    // or not.
                    removed.remove(&sub.id);
                    self.settle(*sub, &mut registered, &mut refused);
                }
                Change::Remove(id) => {
                    tracing::info!(subscription = %id, "registry: subscription removed");
                    registered.remove(&id);
                    refused.remove(&id);
                    removed.insert(id);
                }
                Change::Unreadable { key, why } => {
                    tracing::error!(key, why, "registry: unreadable record skipped");
                }
            }
            self.publish(&registered);
        }
        self.applied.send_modify(|applied| {
            applied.insert(at.partition, at.offset + 1);
        });
    }

    /// Files `sub` under the subscriptions delivered to, or, if this worker cannot resolve
    /// it, under those refused (delivering to a previous version would be wrong too).
    fn settle(
        &self,
        sub: StoredSubscription,
        registered: &mut BTreeMap<String, (StoredSubscription, ResolvedSubscription)>,
        refused: &mut BTreeMap<String, StoredSubscription>,
    ) {
        match self.resolve(&sub) {
            Ok(resolved) => {
                tracing::info!(subscription = %sub.id, "registry: subscription set");
                refused.remove(&sub.id);
                registered.insert(sub.id.clone(), (sub, resolved));
            }
            Err(why) => {
                tracing::error!(subscription = %sub.id, why, "registry: subscription refused by this worker; not delivering to it");
                registered.remove(&sub.id);
                refused.insert(sub.id.clone(), sub);
            }
        }
    }

    /// Swaps in the file's subscriptions and `registered`, as a whole.
    fn publish(&self, registered: &BTreeMap<String, (StoredSubscription, ResolvedSubscription)>) {
        let from_config = self
            .from_config
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let all = from_config
            .iter()
            .chain(registered.values().map(|(_, r)| r))
            .cloned()
            .map(Arc::new)
            .collect();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(all);
    }

    fn resolve(&self, sub: &StoredSubscription) -> Result<ResolvedSubscription, String> {
        let config = self.config.load();
        if is_config_managed(&config, &sub.id) {
            return Err("its id belongs to a subscription of the config file".into());
        }
        let (fitted, changed) = config.fit_stored_subscription(sub);
        for change in &changed {
            tracing::warn!(subscription = %sub.id, change, "registry: subscription fitted to this worker's bounds");
        }
        config
            .resolve_subscription("", &fitted)
            .map_err(|e| spillway_config::describe(&e))
    }

    /// Waits until the record written at `at` has been applied here, up to `patience`.
    pub async fn wait_applied(&self, at: Delivered, patience: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(
            patience,
            applied.wait_for(|a| a.get(&at.partition).is_some_and(|next| *next > at.offset)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Follows the registry until `stop` is cancelled.
    pub async fn follow(
        self: Arc<Self>,
        mut follower: Follower,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = follower.next() => next,
            };
            match next {
                Ok(Some((at, change))) => self.apply(at, change),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "registry: read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Applies the registry up to the end it has now.
    pub async fn catch_up(&self, follower: &mut Follower) -> Result<(), RegistryError> {
        let topic = registry_topic(&self.config.load());
        let reading = async {
            while !follower.caught_up() {
                if let Some((at, change)) = follower.next().await? {
                    self.apply(at, change);
                }
            }
            Ok::<_, RegistryError>(())
        };
        tokio::time::timeout(CATCH_UP, reading)
            .await
            .map_err(|_| RegistryError::Kafka {
                topic,
                source: Box::new(TopicError::NotCaughtUp(CATCH_UP)),
            })?
    }
}

pub(super) fn is_config_managed(config: &Config, id: &str) -> bool {
    config.subscriptions.iter().any(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sources: &[&str]) -> Arc<Config> {
        let mut yaml = String::from("kafka: { brokers: \"127.0.0.1:9\" }\nsources:\n");
        for s in sources {
            yaml.push_str(&format!(
                "  {s}: {{ verify: {{ scheme: none }}, dedupe: {{ from: none }} }}\n"
            ));
        }
        Arc::new(spillway_config::parse_str(&yaml).expect("config"))
    }

    fn wanting(source: &str) -> StoredSubscription {
        serde_json::from_value(serde_json::json!({
            "id": "billing",
            "url": "https://billing.example.com/hooks",
            "sources": [source],
            "secrets": [{ "id": "s", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }],
        }))
        .expect("stored subscription")
    }

    #[test]
    fn a_registered_subscription_naming_a_source_added_later_is_delivered_to_after_a_reload() {
        let live = LiveSubscriptions::new(config(&["github"]), Vec::new());
        let at = Delivered {
            partition: 0,
            offset: 0,
        };
        live.apply(at, Change::Put(Box::new(wanting("added"))));
        assert!(live.find("billing").is_none(), "no source named added yet");
        live.reconfigure(config(&["github", "added"]), Vec::new());
        assert_eq!(
            live.find("billing").map(|s| s.sources.clone()),
            Some(vec!["added".to_owned()])
        );
        assert_eq!(live.registered().len(), 1);
        // Removed from the registry: gone for good, even if a later config could resolve it.
        live.apply(at, Change::Remove("billing".into()));
        live.reconfigure(config(&["github", "added"]), Vec::new());
        assert!(live.find("billing").is_none());
    }
}
