//! The Redis Cluster store against the real local cluster (`make up` starts it; the nodes are
//! read from SPILLWAY_TEST_REDIS_NODES, default 127.0.0.1:7000-7005).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod connection;
mod direct;
mod pipelined;
mod redis6;
mod tls;

use std::time::Duration;

use spillway_store::{
    Claim, ClaimToken, RedisSettings, RedisStore, RedisTls, SharedStore, StoreError,
};
use spillway_testkit::redis_nodes;

fn store_at(nodes: Vec<String>) -> SharedStore {
    SharedStore::Redis(
        RedisStore::new(RedisSettings {
            nodes,
            tls: RedisTls::default(),
            command_timeout: Duration::from_secs(2),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(600),
        })
        .expect("client"),
    )
}

async fn store() -> SharedStore {
    let store = store_at(redis_nodes());
    store.ping().await.expect(
        "the Redis Cluster is not reachable: run `make up` (dev/redis-cluster.sh start) first",
    );
    store
}

fn unique(prefix: &str) -> String {
    format!("spillway-test:{prefix}:{}", uuid::Uuid::new_v4())
}

/// A fresh `key` claimed for ev-1, a second claim (ev-2) found in flight, and the first
/// committed: three commands. The commit's token is returned.
pub(crate) async fn claim_and_commit(store: &SharedStore, key: &str) -> ClaimToken {
    let Claim::Claimed(token) = store.claim(key, "ev-1").await.expect("claim") else {
        panic!("first claim must win");
    };
    assert_eq!(
        store.claim(key, "ev-2").await.expect("claim"),
        Claim::InFlight
    );
    assert!(store.commit(&token).await.expect("commit"));
    token
}

#[tokio::test]
async fn claim_commit_and_duplicate() {
    let store = store().await;
    let key = unique("commit");
    let token = claim_and_commit(&store, &key).await;
    assert!(
        store.commit(&token).await.expect("commit"),
        "a commit sent again, as after a lost answer, finds its own work done"
    );
    assert_eq!(
        store.claim(&key, "ev-3").await.expect("claim"),
        Claim::Done("ev-1".into())
    );
}

#[tokio::test]
async fn a_claim_sent_again_finds_its_own_value_and_is_still_claimed() {
    let store = store().await;
    let key = unique("resent");
    let Claim::Claimed(token) = store.claim(&key, "ev-1").await.expect("claim") else {
        panic!("first claim must win");
    };
    // What redis-rs's re-send of the same SET NX GET returns: "pending:ev-1", our own.
    assert_eq!(
        store.claim(&key, "ev-1").await.expect("claim"),
        Claim::Claimed(ClaimToken::new(key.as_str(), "ev-1"))
    );
    assert_eq!(
        store.claim(&key, "ev-2").await.expect("claim"),
        Claim::InFlight
    );
    assert!(store.commit(&token).await.expect("commit"));
    assert_eq!(
        store.claim(&key, "ev-3").await.expect("claim"),
        Claim::Done("ev-1".into())
    );
}

#[tokio::test]
async fn release_lets_the_retry_through() {
    let store = store().await;
    let key = unique("release");
    let Claim::Claimed(token) = store.claim(&key, "ev-1").await.expect("claim") else {
        panic!("first claim must win");
    };
    store.release(&token).await.expect("release");
    assert!(matches!(
        store.claim(&key, "ev-2").await.expect("claim"),
        Claim::Claimed(_)
    ));
}

#[tokio::test]
async fn concurrent_claims_have_exactly_one_winner_across_slots() {
    let store = store().await;
    // Many keys so that all three primaries are involved; 20 racers per key.
    for k in 0..30 {
        let key = unique(&format!("race{k}"));
        let racers: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move { store.claim(&key, &format!("ev-{i}")).await })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.expect("join").expect("claim") {
                Claim::Claimed(_) => winners += 1,
                Claim::InFlight => {}
                Claim::Done(id) => panic!("nothing was committed, got Done({id})"),
            }
        }
        assert_eq!(winners, 1, "key {key}");
    }
}

#[tokio::test]
async fn an_expired_claim_cannot_touch_its_successor() {
    let store = store().await;
    let key = unique("expired");
    let Claim::Claimed(stale) = store.claim(&key, "ev-old").await.expect("claim") else {
        panic!("first claim must win");
    };
    // Expire the claim now, as claim_ttl would after a stalled pod.
    let client = redis::cluster::ClusterClient::new(redis_nodes()).expect("client");
    let mut conn = client.get_async_connection().await.expect("connect");
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("del");

    let Claim::Claimed(fresh) = store.claim(&key, "ev-new").await.expect("claim") else {
        panic!("an expired key can be claimed");
    };
    assert!(
        !store.commit(&stale).await.expect("commit"),
        "the stale claim must not commit"
    );
    store.release(&stale).await.expect("release");
    assert_eq!(
        store.claim(&key, "ev-x").await.expect("claim"),
        Claim::InFlight
    );
    assert!(store.commit(&fresh).await.expect("commit"));
    assert_eq!(
        store.claim(&key, "ev-y").await.expect("claim"),
        Claim::Done("ev-new".into())
    );
}

#[tokio::test]
async fn unreachable_cluster_is_unavailable_not_a_hang() {
    // Nothing listens on port 1 of the loopback.
    let store = SharedStore::Redis(
        RedisStore::new(RedisSettings {
            nodes: vec!["redis://127.0.0.1:1".into()],
            tls: RedisTls::default(),
            command_timeout: Duration::from_millis(300),
            claim_ttl: Duration::from_secs(30),
            window: Duration::from_secs(600),
        })
        .expect("client"),
    );
    let err = store.claim("k", "ev").await.expect_err("no server");
    assert!(
        matches!(err, StoreError::Unavailable { op: "claim", .. }),
        "{err}"
    );
}
