//! The state the ingress pods share in the Redis Cluster: dedupe claims on an event key, and
//! the window counters and expiring flags of rate limits and client blocks.
//!
//! The ingress claims a key before producing to Kafka, commits it once Kafka acknowledged the
//! event, and releases it when the produce failed, so that the sender's retry is processed
//! rather than dropped:
//!
//! ```text
//! claim    SET k "pending:<id>" NX PX claim_ttl GET   -> nil or "pending:<id>": Claimed
//!                                                        "pending:<other>": InFlight
//!                                                        "done:<original>": Done(<original>)
//! commit   k == "pending:<id>" or absent ? SET k "done:<id>" EX window ("done:<id>": done)
//! release  k == "pending:<id>" ? DEL k
//! count    INCR k (PEXPIRE ttl on the first)              -> rate limits, verification failures
//! read     GET k / write SET k v PX ttl                   -> blocked client addresses
//! health   SET k "health" NX PX 5000 GET                  -> readiness
//! ```
//!
//! Commit and release compare before they write: a pod whose claim expired (it stalled past
//! `claim_ttl`) must not overwrite or delete the claim another pod took since.
//!
//! A claim that finds this request's own `pending:<id>` is this request's: redis-rs re-sends a
//! command after a reset connection or an I/O error whether or not the first send ran, and the
//! re-sent `SET NX GET` then reads back what the first one wrote. Event ids are unique per
//! request, so no other request can hold that value. When a claim fails (an error or our
//! timeout), the `SET` may still have run: [`ClaimToken::new`] rebuilds the token so the caller
//! can release it best-effort (else the sender's retry finds the key in flight for
//! `claim_ttl`), or commit it after producing without a claim (fail open; commit accepts an
//! absent key as well as its own claim, and writes nothing over another request's).
//!
//! Claim, commit and release go straight to the primary that serves the key's slot while the
//! routes to it are known (`direct.rs`), and through redis-rs's cluster connection otherwise,
//! or when that node refused the command as misrouted or unavailable or the connection broke
//! (a timeout is not sent again); every other command takes the cluster connection. Claims or
//! commits made together ([`SharedStore::claim_all`], [`SharedStore::commit_all`]) go in one
//! pipeline per primary (`pipelined.rs`).
//!
//! Readiness runs `health`, not `PING`: it needs what the claim needs (`SET ... NX ... GET` is
//! Redis 7), so a cluster that answers PING but refuses every claim is not reported ready.
//!
//! Backends are an enum, as in Svix: the Redis Cluster for production and an in-memory map
//! that needs no server for unit tests.

mod connection;
mod direct;
mod memory;
mod pipelined;
mod redis_store;
mod routed;
mod settings;

use std::time::Duration;

pub use connection::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};
// A Redis Cluster's slots, public for the benchmarks' floor server.
pub use direct::{parse_slots, slot_of, Primary};
pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use settings::{RedisSettings, RedisTls};

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key: produce, then commit or release.
    Claimed(ClaimToken),
    /// Another request holds the key and has not finished: the sender should retry later.
    InFlight,
    /// An event with this key was accepted within the window, under this event id.
    Done(String),
}

/// Proof of a claim, needed to commit or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    key: String,
    event_id: String,
}

// === impl ClaimToken ===

impl ClaimToken {
    /// The token of the claim on `key` for the event `event_id`: what [`SharedStore::claim`]
    /// returns, and what a caller rebuilds after a claim that failed or timed out, since that
    /// claim may have been applied (see the crate documentation).
    pub fn new(key: impl Into<String>, event_id: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            event_id: event_id.into(),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    fn pending_value(&self) -> String {
        [PENDING, &self.event_id].concat()
    }

    fn done_value(&self) -> String {
        [DONE, &self.event_id].concat()
    }
}

const PENDING: &str = "pending:";
const DONE: &str = "done:";

/// What `health` writes, and for how long: short, as only the write matters.
const HEALTH_VALUE: &str = "health";
const HEALTH_TTL: Duration = Duration::from_secs(5);

/// Reads the value a claim found into its outcome. Our own pending value means the claim is
/// ours: an earlier send of the same `SET NX` wrote it.
fn outcome_of(stored: &str, token: ClaimToken) -> Result<Claim, StoreError> {
    if stored == token.pending_value() {
        Ok(Claim::Claimed(token))
    } else if stored.starts_with(PENDING) {
        Ok(Claim::InFlight)
    } else if let Some(id) = stored.strip_prefix(DONE) {
        Ok(Claim::Done(id.to_owned()))
    } else {
        Err(StoreError::Corrupt(stored.chars().take(64).collect()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shared store unavailable during {op}: {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// Only the in-memory store, switched offline by a test.
    #[error("shared store offline during {op}")]
    Offline { op: &'static str },
    #[error("dedupe key holds a value Spillway did not write: {0:?}")]
    Corrupt(String),
}

/// The shared store of a process: the Redis Cluster, or memory for tests.
#[derive(Debug, Clone)]
pub enum SharedStore {
    Redis(RedisStore),
    Memory(MemoryStore),
}

// === impl SharedStore ===

impl SharedStore {
    /// Claims `key` for the event `event_id`, which must be unique to this request: a key
    /// that already holds this id's claim is reported `Claimed` (see the crate documentation).
    pub async fn claim(&self, key: &str, event_id: &str) -> Result<Claim, StoreError> {
        let token = ClaimToken::new(key, event_id);
        match self {
            Self::Redis(s) => s.claim(token).await,
            Self::Memory(s) => s.reachable("claim").and_then(|()| s.claim(token)),
        }
    }

    /// Claims every token, as [`SharedStore::claim`] does one; the results are in the order
    /// of `tokens`. On the Redis Cluster the claims bound for one primary go in one pipeline.
    pub async fn claim_all(&self, tokens: &[&ClaimToken]) -> Vec<Result<Claim, StoreError>> {
        match self {
            Self::Redis(s) => s.claim_all(tokens).await,
            Self::Memory(s) => tokens
                .iter()
                .map(|&token| s.reachable("claim").and_then(|()| s.claim(token.clone())))
                .collect(),
        }
    }

    /// Records that the claimed event is in Kafka. Returns false when the claim had already
    /// been taken over by another request (it expired first): both events are then in Kafka.
    /// An absent key is written too, so a fail-open source can commit a token it rebuilt with
    /// [`ClaimToken::new`] after its claim failed.
    pub async fn commit(&self, token: &ClaimToken) -> Result<bool, StoreError> {
        match self {
            Self::Redis(s) => s.commit(token).await,
            Self::Memory(s) => s.reachable("commit").map(|()| s.commit(token)),
        }
    }

    /// Commits every token, as [`SharedStore::commit`] does one; the results are in the order
    /// of `tokens`. On the Redis Cluster the commits bound for one primary go in one pipeline.
    pub async fn commit_all(&self, tokens: &[&ClaimToken]) -> Vec<Result<bool, StoreError>> {
        match self {
            Self::Redis(s) => s.commit_all(tokens).await,
            Self::Memory(s) => tokens
                .iter()
                .map(|token| s.reachable("commit").map(|()| s.commit(token)))
                .collect(),
        }
    }

    /// Gives the key back after a failed produce, so the sender's retry is processed; also
    /// after a failed claim, with a token from [`ClaimToken::new`], as that claim may have
    /// been applied. Only this token's own pending claim is deleted.
    pub async fn release(&self, token: &ClaimToken) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.release(token).await,
            Self::Memory(s) => s.reachable("release").map(|()| s.release(token)),
        }
    }

    /// Adds one to the counter `key` and returns its new value. The counter lives `ttl` from
    /// its first hit, so keying it by a time window gives a fixed-window rate limit shared by
    /// every process that uses the same store.
    pub async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        match self {
            Self::Redis(s) => s.count(key, ttl).await,
            Self::Memory(s) => s.reachable("count").map(|()| s.count(key, ttl)),
        }
    }

    /// The value of `key`, if it is set and not expired.
    pub async fn read(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Self::Redis(s) => s.read(key).await,
            Self::Memory(s) => s.reachable("read").map(|()| s.read(key)),
        }
    }

    /// Sets `key` to `value` for `ttl`.
    pub async fn write(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.write(key, value, ttl).await,
            Self::Memory(s) => s.reachable("write").map(|()| s.write(key, value, ttl)),
        }
    }

    /// Whether the store answers. It says nothing about whether claims work: readiness uses
    /// [`SharedStore::health`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.ping().await,
            Self::Memory(s) => s.reachable("ping"),
        }
    }

    /// Whether the store can run claims; used by readiness. Writes `key` with
    /// `SET key "health" NX PX 5000 GET`, the claim's own form, which Redis before 7 refuses
    /// (as it refuses every claim) while it still answers PING. `key` lives in one slot, so
    /// this checks the primary that owns it and the cluster's routing to it.
    pub async fn health(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.health(key).await,
            Self::Memory(s) => s.reachable("health").map(|()| s.health(key)),
        }
    }

    /// Commands answered on direct connections to their primaries, and the fallbacks from
    /// them to the cluster connection, since the store was made
    /// ([`RedisStore::direct_counts`]); none for the in-memory store, which has no routes.
    pub fn direct_counts(&self) -> Option<(u64, u64)> {
        match self {
            Self::Redis(s) => Some(s.direct_counts()),
            Self::Memory(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn memory_store_follows_the_claim_protocol() {
        let store = SharedStore::Memory(MemoryStore::new(
            Duration::from_secs(30),
            Duration::from_secs(60),
        ));
        let Claim::Claimed(token) = store.claim("k", "id-1").await.expect("claim") else {
            panic!("first claim must win");
        };
        assert_eq!(
            store.claim("k", "id-2").await.expect("claim"),
            Claim::InFlight
        );
        store.release(&token).await.expect("release");
        let Claim::Claimed(token) = store.claim("k", "id-3").await.expect("claim") else {
            panic!("a released key can be claimed again");
        };
        assert!(store.commit(&token).await.expect("commit"));
        assert!(
            store.commit(&token).await.expect("commit"),
            "a commit sent again finds its own work done"
        );
        assert_eq!(
            store.claim("k", "id-4").await.expect("claim"),
            Claim::Done("id-3".into())
        );
        // Releasing a committed key does nothing.
        store.release(&token).await.expect("release");
        assert_eq!(
            store.claim("k", "id-5").await.expect("claim"),
            Claim::Done("id-3".into())
        );
    }

    #[tokio::test]
    async fn counters_count_until_they_expire() {
        let store = SharedStore::Memory(MemoryStore::new(
            Duration::from_secs(30),
            Duration::from_secs(60),
        ));
        for n in 1..=3 {
            assert_eq!(
                store
                    .count("c", Duration::from_secs(60))
                    .await
                    .expect("count"),
                n
            );
        }
        assert_eq!(
            store
                .count("other", Duration::from_secs(60))
                .await
                .expect("count"),
            1
        );
        assert_eq!(store.count("gone", Duration::ZERO).await.expect("count"), 1);
        assert_eq!(store.count("gone", Duration::ZERO).await.expect("count"), 1);
    }

    fn memory() -> (MemoryStore, SharedStore) {
        let memory = MemoryStore::new(Duration::from_secs(30), Duration::from_secs(600));
        (memory.clone(), SharedStore::Memory(memory))
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_never_committed_expires_after_claim_ttl() {
        let (_, store) = memory();
        assert!(matches!(
            store.claim("k", "stalled").await,
            Ok(Claim::Claimed(_))
        ));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(store.claim("k", "early").await.ok(), Some(Claim::InFlight));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            store.claim("k", "after").await,
            Ok(Claim::Claimed(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_committed_key_is_a_duplicate_for_the_window_only() {
        let (memory, store) = memory();
        let Ok(Claim::Claimed(token)) = store.claim("k", "first").await else {
            panic!("first claim must win");
        };
        assert!(store.commit(&token).await.expect("commit"));
        assert_eq!(memory.peek("k").as_deref(), Some("done:first"));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(
            store.claim("k", "retry").await.ok(),
            Some(Claim::Done("first".into()))
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            store.claim("k", "much later").await,
            Ok(Claim::Claimed(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_after_another_request_took_the_expired_claim_reports_it() {
        let (_, store) = memory();
        let Ok(Claim::Claimed(slow)) = store.claim("k", "slow").await else {
            panic!("first claim must win");
        };
        tokio::time::advance(Duration::from_secs(31)).await;
        let Ok(Claim::Claimed(_)) = store.claim("k", "fast").await else {
            panic!("the expired claim is free");
        };
        assert!(!store.commit(&slow).await.expect("commit"));
        store.release(&slow).await.expect("release");
        assert_eq!(store.claim("k", "third").await.ok(), Some(Claim::InFlight));
    }

    #[tokio::test]
    async fn an_offline_store_fails_every_call_until_it_is_back() {
        let (memory, store) = memory();
        memory.set_offline(true);
        assert!(matches!(
            store.claim("k", "id").await,
            Err(StoreError::Offline { op: "claim" })
        ));
        assert!(store.count("c", Duration::from_secs(1)).await.is_err());
        assert!(store.read("r").await.is_err());
        assert!(store.write("w", "v", Duration::from_secs(1)).await.is_err());
        assert!(store.ping().await.is_err());
        memory.set_offline(false);
        assert!(store.ping().await.is_ok());
        assert!(matches!(
            store.claim("k", "id").await,
            Ok(Claim::Claimed(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_written_flag_reads_back_until_its_ttl() {
        let (_, store) = memory();
        store
            .write("block", "until", Duration::from_secs(10))
            .await
            .expect("write");
        assert_eq!(
            store.read("block").await.expect("read").as_deref(),
            Some("until")
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(store.read("block").await.expect("read"), None);
    }

    #[test]
    fn foreign_values_are_reported_not_guessed() {
        assert!(matches!(
            outcome_of("something", ClaimToken::new("k", "id")),
            Err(StoreError::Corrupt(_))
        ));
    }
}
