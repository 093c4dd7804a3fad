//! Commits made together (`commit_all`), one pipeline per primary: each token gets its own
//! answer in its own place, and what a pipeline cannot settle (a flushed script cache, a
//! stale route) is settled the way a single commit is.

use std::time::Duration;

use spillway_store::{Claim, ClaimToken, RedisStore, SharedStore, StoreError};
use spillway_testkit::{eventually, redis_nodes};

use crate::connection::{pause_writes, private_cluster, redis_at};
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

/// Commits `tokens` together; each must be written.
async fn commit_together(store: &SharedStore, tokens: &[ClaimToken]) {
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    for result in store.commit_all(&refs).await {
        assert!(result.expect("commit"));
    }
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
    // Among them, the other answers a commit can have: keys another request took since (false,
    // and left alone; several, so that they fall on every primary), a key with nothing in it
    // (a fail-open source's: written) and a commit sent again after its first landed (true).
    let mut tokens = Vec::new();
    let mut expected = Vec::new();
    let mut taken = Vec::new();
    for (i, token) in claimed.iter().enumerate() {
        if i % 5 == 2 {
            let key = unique(&format!("taken{i}"));
            assert!(matches!(
                store.claim(&key, "ev-holder").await.expect("claim"),
                Claim::Claimed(_)
            ));
            tokens.push(ClaimToken::new(key.clone(), "ev-expired"));
            expected.push(false);
            taken.push(key);
        }
        tokens.push(token.clone());
        expected.push(true);
    }
    let absent = ClaimToken::new(unique("absent"), "ev-absent");
    tokens.push(absent.clone());
    expected.push(true);
    assert!(store.commit(&claimed[0]).await.expect("commit"));
    let (served, failed) = redis.direct_counts();
    let pipelines = redis.pipelines_answered();
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    let results: Vec<bool> = store
        .commit_all(&refs)
        .await
        .into_iter()
        .map(|result| result.expect("commit"))
        .collect();
    assert_eq!(results, expected);
    let sent = redis.pipelines_answered() - pipelines;
    // Three primaries in the local cluster.
    assert!(
        (1..=3).contains(&sent),
        "{sent} pipelines for {} commits",
        tokens.len()
    );
    let (now_served, now_failed) = redis.direct_counts();
    assert_eq!(now_failed, failed, "no commit was refused by its node");
    // More when a primary had not run the script yet (NOSCRIPT, then each sent again).
    assert!(
        now_served - served >= 49,
        "every commit answered on a direct connection"
    );
    assert_done(&store, &claimed).await;
    assert_done(&store, &[absent]).await;
    for key in taken {
        assert_eq!(
            store.claim(&key, "ev-late").await.expect("claim"),
            Claim::InFlight,
            "the other request's claim is left as it was"
        );
    }
}

#[tokio::test]
async fn commits_made_together_that_time_out_fail_and_are_settled_by_a_retry() {
    let (cluster, redis, store) = private_cluster().await;
    claim_until_served(&redis, 1).await;
    // The private cluster has not run the commit script yet: without it every paused commit
    // would answer NOSCRIPT after the pause, not write.
    let warm = claim_keys(&store, "warm", 30).await;
    commit_together(&store, &warm).await;
    let tokens = claim_keys(&store, "paused", 30).await;
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    let failed = redis.direct_counts().1;
    pause_writes(&cluster, true);
    for result in store.commit_all(&refs).await {
        assert!(
            matches!(result, Err(StoreError::Unavailable { op: "commit", .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        redis.direct_counts().1,
        failed,
        "a timeout keeps the direct connections"
    );
    pause_writes(&cluster, false);
    // The paused commits run once writes resume, though their callers gave up.
    for token in &tokens {
        let done = format!("done:{}", token.event_id());
        eventually(
            format!("{} to hold {done}", token.key()),
            async || match store.read(token.key()).await {
                Ok(Some(v)) if v == done => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    }
    // Sent again, as the ingress retries a failed commit, each finds its own work done.
    commit_together(&store, &tokens).await;
    assert_done(&store, &tokens).await;
}

#[tokio::test]
async fn commits_made_together_load_a_script_the_nodes_forgot() {
    let (cluster, _, _) = private_cluster().await;
    // A longer timeout than the private store's: every commit here loads the script and is
    // sent again within it, on two shared cores.
    let redis = redis_at(cluster.nodes(), Duration::from_secs(5));
    let store = SharedStore::Redis(redis.clone());
    claim_until_served(&redis, 1).await;
    let first = claim_keys(&store, "loaded", 30).await;
    commit_together(&store, &first).await;
    // As after a node's restart or a failover to a replica that never ran the script.
    for port in cluster.base..cluster.base + 6 {
        assert_eq!(cluster.cli(port, &["script", "flush"]).trim(), "OK");
    }
    let tokens = claim_keys(&store, "forgotten", 30).await;
    commit_together(&store, &tokens).await;
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
    commit_together(&store, &tokens).await;
    assert_eq!(
        redis.direct_counts().1,
        1,
        "the misrouted connection was taken out once, for the whole pipeline"
    );
    assert_done(&store, &tokens).await;
}
