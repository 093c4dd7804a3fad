//! Commits made together (`commit_all`), one pipeline per primary: each token gets its own
//! answer in its own place, and what a pipeline cannot settle (a flushed script cache, a
//! stale route) is settled the way a single commit is.

use std::time::Duration;

use spillway_store::{Claim, ClaimToken, RedisStore, SharedStore};
use spillway_testkit::redis_nodes;

use crate::connection::{private_cluster, redis_at};
use crate::direct::claim_until_served;
use crate::unique;

/// Claims `count` fresh keys (spread over every primary) for the events `ev-<i>`.
async fn claim_keys(store: &SharedStore, prefix: &str, count: usize) -> Vec<ClaimToken> {
    let mut tokens = Vec::new();
    for i in 0..count {
        let key = unique(&format!("{prefix}{i}"));
        let Claim::Claimed(token) = store.claim(&key, &format!("ev-{i}")).await.expect("claim")
        else {
            panic!("a fresh key is claimed");
        };
        tokens.push(token);
    }
    tokens
}

/// Every token's key now answers a claim as the duplicate of its own event.
async fn assert_done(store: &SharedStore, tokens: &[ClaimToken]) {
    for token in tokens {
        assert_eq!(
            store.claim(token.key(), "ev-late").await.expect("claim"),
            Claim::Done(token.event_id().to_owned()),
            "{}",
            token.key()
        );
    }
}

#[tokio::test]
async fn each_commit_made_together_gets_its_own_answer_in_its_place() {
    let redis = redis_at(redis_nodes(), Duration::from_secs(2));
    claim_until_served(&redis, 1).await;
    let store = SharedStore::Redis(redis.clone());
    let claimed = claim_keys(&store, "together", 40).await;
    // Around them, the other answers a commit can have: a key another request took since
    // (false, and left alone), a key with nothing in it (a fail-open source's: written) and a
    // commit sent again after its first landed (true).
    let taken = unique("taken");
    assert!(matches!(
        store.claim(&taken, "ev-holder").await.expect("claim"),
        Claim::Claimed(_)
    ));
    let absent = ClaimToken::new(unique("absent"), "ev-absent");
    assert!(store.commit(&claimed[0]).await.expect("commit"));
    let mut tokens: Vec<ClaimToken> = vec![ClaimToken::new(taken.clone(), "ev-expired")];
    tokens.extend(claimed.iter().cloned());
    tokens.push(absent.clone());
    let (served, failed) = redis.direct_counts();
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    let results: Vec<bool> = store
        .commit_all(&refs)
        .await
        .into_iter()
        .map(|result| result.expect("commit"))
        .collect();
    let mut expected = vec![false];
    expected.extend(std::iter::repeat_n(true, claimed.len() + 1));
    assert_eq!(results, expected);
    assert_eq!(
        redis.direct_counts(),
        (served + 42, failed),
        "every commit answered on the direct connection to its primary"
    );
    assert_done(&store, &claimed).await;
    assert_done(&store, &[absent]).await;
    assert_eq!(
        store.claim(&taken, "ev-late").await.expect("claim"),
        Claim::InFlight,
        "the other request's claim is left as it was"
    );
}

#[tokio::test]
async fn commits_made_together_load_a_script_the_nodes_forgot() {
    let (cluster, redis, store) = private_cluster().await;
    claim_until_served(&redis, 1).await;
    let first = claim_keys(&store, "loaded", 1).await;
    assert!(store.commit(&first[0]).await.expect("commit"));
    // As after a node's restart or a failover to a replica that never ran the script.
    for port in cluster.base..cluster.base + 6 {
        assert_eq!(cluster.cli(port, &["script", "flush"]).trim(), "OK");
    }
    let tokens = claim_keys(&store, "forgotten", 30).await;
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    for result in store.commit_all(&refs).await {
        assert!(result.expect("commit"));
    }
    assert_done(&store, &tokens).await;
}

#[tokio::test]
async fn commits_made_together_on_a_stale_route_reach_their_primaries() {
    let redis: RedisStore = redis_at(redis_nodes(), Duration::from_secs(2));
    claim_until_served(&redis, 1).await;
    let store = SharedStore::Redis(redis.clone());
    let tokens = claim_keys(&store, "stale", 30).await;
    // Every slot now routed to the first seed's primary: the keys of the other two are
    // answered MOVED inside the pipeline.
    assert!(redis
        .misroute_every_slot_for_tests()
        .await
        .expect("misroute"));
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    for result in store.commit_all(&refs).await {
        assert!(result.expect("commit"));
    }
    assert!(
        redis.direct_counts().1 > 0,
        "a misrouted commit was sent through the cluster connection"
    );
    assert_done(&store, &tokens).await;
}
