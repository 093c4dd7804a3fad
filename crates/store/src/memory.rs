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

use crate::{outcome_of, Claim, ClaimToken, StoreError, HEALTH_TTL, HEALTH_VALUE};

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
            Some(stored) => outcome_of(&stored, token),
            None => {
                map.insert(
                    token.key.clone(),
                    (token.pending_value(), Instant::now() + ttl),
                );
                Ok(Claim::Claimed(token))
            }
        })
    }

    /// The claim's `SET NX`, without the claim: writes `key` if it is free.
    pub(crate) fn health(&self, key: &str) {
        self.with_live(key, |map, current| {
            if current.is_none() {
                map.insert(
                    key.to_owned(),
                    (HEALTH_VALUE.to_owned(), Instant::now() + HEALTH_TTL),
                );
            }
        });
    }

    /// As the Redis script: an absent key or this token's own claim becomes `done:<id>`.
    pub(crate) fn commit(&self, token: &ClaimToken) -> bool {
        let window = self.window;
        self.with_live(&token.key, |map, current| {
            let ours = current
                .as_deref()
                .is_none_or(|v| v == token.pending_value());
            // Committed already by an earlier send of this commit.
            let done = current.as_deref() == Some(token.done_value().as_str());
            if done {
                return true;
            }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Claim, ClaimToken, MemoryStore, SharedStore, StoreError, HEALTH_TTL};

    fn memory() -> (MemoryStore, SharedStore) {
        let memory = MemoryStore::new(Duration::from_secs(30), Duration::from_secs(600));
        (memory.clone(), SharedStore::Memory(memory))
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_sent_again_with_its_own_event_id_is_still_claimed() {
        let (_, store) = memory();
        let Ok(Claim::Claimed(first)) = store.claim("k", "ev-1").await else {
            panic!("first claim must win");
        };
        // What a re-sent SET NX GET finds: its own pending value.
        assert_eq!(
            store.claim("k", "ev-1").await.ok(),
            Some(Claim::Claimed(first.clone()))
        );
        assert_eq!(store.claim("k", "ev-2").await.ok(), Some(Claim::InFlight));
        assert!(store.commit(&first).await.expect("commit"));
        assert_eq!(
            store.claim("k", "ev-3").await.ok(),
            Some(Claim::Done("ev-1".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rebuilt_token_releases_its_own_claim_only() {
        let (memory, store) = memory();
        // The claim ran, but its caller saw an error (say, its timeout) and rebuilt the token.
        let _ = store.claim("k", "lost").await;
        let lost = ClaimToken::new("k", "lost");
        assert_eq!((lost.key(), lost.event_id()), ("k", "lost"));
        store.release(&lost).await.expect("release");
        assert_eq!(memory.peek("k"), None, "the sender's retry can claim");

        let Ok(Claim::Claimed(_)) = store.claim("k", "retry").await else {
            panic!("the released key can be claimed");
        };
        store.release(&lost).await.expect("release");
        assert_eq!(memory.peek("k").as_deref(), Some("pending:retry"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fail_open_commit_writes_an_absent_key_but_not_another_claim() {
        let (memory, store) = memory();
        memory.set_offline(true);
        assert!(store.claim("k", "open").await.is_err());
        memory.set_offline(false);
        // Produced without a claim; the store is back for the commit.
        assert!(store
            .commit(&ClaimToken::new("k", "open"))
            .await
            .expect("commit"));
        assert_eq!(
            store.claim("k", "retry").await.ok(),
            Some(Claim::Done("open".into()))
        );

        let Ok(Claim::Claimed(_)) = store.claim("other", "owner").await else {
            panic!("first claim must win");
        };
        assert!(!store
            .commit(&ClaimToken::new("other", "open"))
            .await
            .expect("commit"));
        assert_eq!(memory.peek("other").as_deref(), Some("pending:owner"));
    }

    #[tokio::test(start_paused = true)]
    async fn health_writes_a_free_key_and_fails_while_offline() {
        let (memory, store) = memory();
        store.health("ready").await.expect("healthy");
        assert_eq!(memory.peek("ready").as_deref(), Some("health"));
        tokio::time::advance(HEALTH_TTL).await;
        assert_eq!(
            memory.peek("ready"),
            None,
            "the check leaves nothing behind"
        );

        // Like SET NX: a key that holds something keeps it.
        let Ok(Claim::Claimed(_)) = store.claim("busy", "ev").await else {
            panic!("first claim must win");
        };
        store.health("busy").await.expect("healthy");
        assert_eq!(memory.peek("busy").as_deref(), Some("pending:ev"));

        memory.set_offline(true);
        assert!(matches!(
            store.health("ready").await,
            Err(StoreError::Offline { op: "health" })
        ));
        memory.set_offline(false);
        store.health("ready").await.expect("healthy again");
    }
}
