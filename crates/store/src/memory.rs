//! An in-process shared store with the Redis store's semantics, for tests that need no server.
//!
//! Expiry follows tokio's clock, so a test with a paused clock moves claims and windows past
//! their TTLs with `tokio::time::advance` instead of sleeping; and the store can be switched
//! offline, failing every call as an unreachable Redis Cluster does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{outcome_of, Claim, ClaimToken, StoreError};

#[derive(Debug, Clone)]
pub struct MemoryStore {
    entries: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    offline: Arc<AtomicBool>,
    claim_ttl: Duration,
    window: Duration,
}

// === impl MemoryStore ===

impl MemoryStore {
    pub fn new(claim_ttl: Duration, window: Duration) -> Self {
        Self {
            entries: Arc::default(),
            offline: Arc::default(),
            claim_ttl,
            window,
        }
    }

    /// Makes every call fail (`true`), as an unreachable cluster would, or work again.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    /// The value stored under `key`, if it is live: what a test inspects.
    pub fn peek(&self, key: &str) -> Option<String> {
        self.read(key)
    }

    /// Fails `op` while the store is offline.
    pub(crate) fn reachable(&self, op: &'static str) -> Result<(), StoreError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(StoreError::Offline { op });
        }
        Ok(())
    }

    /// Adds one to the counter `key`, which lives `ttl` from its first hit.
    pub(crate) fn count(&self, key: &str, ttl: Duration) -> u64 {
        self.with_live(key, |map, current| {
            let n = current.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0) + 1;
            let expires = map
                .get(key)
                .map_or_else(|| Instant::now() + ttl, |(_, expires)| *expires);
            map.insert(key.to_owned(), (n.to_string(), expires));
            n
        })
    }

    pub(crate) fn read(&self, key: &str) -> Option<String> {
        self.with_live(key, |_, current| current)
    }

    pub(crate) fn write(&self, key: &str, value: &str, ttl: Duration) {
        self.with_live(key, |map, _| {
            map.insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
        });
    }

    fn with_live<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut HashMap<String, (String, Instant)>, Option<String>) -> T,
    ) -> T {
        // A poisoned lock only means another test thread panicked; the map itself is intact.
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.get(key).is_some_and(|(_, expires)| *expires <= now) {
            map.remove(key);
        }
        let current = map.get(key).map(|(v, _)| v.clone());
        f(&mut map, current)
    }

    pub(crate) fn claim(&self, token: ClaimToken) -> Result<Claim, StoreError> {
        let ttl = self.claim_ttl;
        self.with_live(&token.key.clone(), |map, current| match current {
            Some(stored) => outcome_of(&stored),
            None => {
                map.insert(
                    token.key.clone(),
                    (token.pending_value(), Instant::now() + ttl),
                );
                Ok(Claim::Claimed(token))
            }
        })
    }

    pub(crate) fn commit(&self, token: &ClaimToken) -> bool {
        let window = self.window;
        self.with_live(&token.key, |map, current| {
            let ours = current
                .as_deref()
                .is_none_or(|v| v == token.pending_value());
            if ours {
                map.insert(
                    token.key.clone(),
                    (token.done_value(), Instant::now() + window),
                );
            }
            ours
        })
    }

    pub(crate) fn release(&self, token: &ClaimToken) {
        self.with_live(&token.key, |map, current| {
            if current.as_deref() == Some(token.pending_value().as_str()) {
                map.remove(&token.key);
            }
        });
    }
}
