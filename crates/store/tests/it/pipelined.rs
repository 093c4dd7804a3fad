//! Claims and commits made together (`claim_all`, `commit_all`), one pipeline per primary:
//! each token gets its own answer in its own place, and what a pipeline cannot settle (a
//! flushed script cache, a stale route) is settled the way a single command is.

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

/// Every result is a failure of `op` (the pipeline timed out), and no direct connection was
/// taken out for it: `failed` is what [`RedisStore::direct_counts`] counted before.
fn assert_timed_out<T: std::fmt::Debug>(
    redis: &RedisStore,
    failed: u64,
    op: &str,
    results: Vec<Result<T, StoreError>>,
) {
    for result in results {
        assert!(
            matches!(&result, Err(StoreError::Unavailable { op: failed_op, .. }) if *failed_op == op),
            "{result:?}"
        );
    }
    assert_eq!(
        redis.direct_counts().1,
        failed,
        "a timeout keeps the direct connections"
    );
}

/// Waits until every token's key holds `<state>:<its event id>`.
async fn await_values(store: &SharedStore, tokens: &[ClaimToken], state: &str) {
    for token in tokens {
        let value = format!("{state}:{}", token.event_id());
        eventually(
            format!("{} to hold {value}", token.key()),
            async || match store.read(token.key()).await {
                Ok(Some(v)) if v == value => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
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
    // Once each, also when a primary had not run the script yet: a commit refused in the
    // pipeline (NOSCRIPT) counts when it is answered on its own.
    assert_eq!(
        now_served - served,
        u64::try_from(tokens.len()).expect("fits"),
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
    assert_timed_out(&redis, failed, "commit", store.commit_all(&refs).await);
    pause_writes(&cluster, false);
    // The paused commits run once writes resume, though their callers gave up.
    await_values(&store, &tokens, "done").await;
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
    let (served, failed) = redis.direct_counts();
    commit_together(&store, &tokens).await;
    // Each refused in its pipeline (NOSCRIPT) and sent again on its own, on the same
    // connection: counted once, where it was answered.
    assert_eq!(
        redis.direct_counts(),
        (served + 30, failed),
        "every commit served once on a direct connection, none taken out"
    );
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

/// Claims `tokens` together.
async fn claim_together(
    store: &SharedStore,
    tokens: &[ClaimToken],
) -> Vec<Result<Claim, StoreError>> {
    let refs: Vec<&ClaimToken> = tokens.iter().collect();
    store.claim_all(&refs).await
}

#[tokio::test]
async fn each_claim_made_together_gets_its_own_answer_in_its_place() {
    let redis = redis_at(redis_nodes(), Duration::from_secs(2));
    claim_until_served(&redis, 1).await;
    let store = SharedStore::Redis(redis.clone());
    // Fresh keys (claimed), and among them, several of each on every primary: keys another
    // request holds (in flight), keys whose event was accepted (done), and keys this very
    // event claimed already, as a claim sent again after its answer was lost (claimed).
    let mut tokens = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let key = unique(&format!("claims{i}"));
        let event = format!("ev-{i}");
        match i % 4 {
            1 => {
                store.claim(&key, "ev-holder").await.expect("claim");
                expected.push(Claim::InFlight);
            }
            2 => {
                let Claim::Claimed(earlier) = store.claim(&key, "ev-earlier").await.expect("claim")
                else {
                    panic!("a fresh key is claimed");
                };
                assert!(store.commit(&earlier).await.expect("commit"));
                expected.push(Claim::Done("ev-earlier".to_owned()));
            }
            3 => {
                store.claim(&key, &event).await.expect("claim");
                expected.push(Claim::Claimed(ClaimToken::new(key.clone(), event.clone())));
            }
            _ => expected.push(Claim::Claimed(ClaimToken::new(key.clone(), event.clone()))),
        }
        tokens.push(ClaimToken::new(key, event));
    }
    let (served, failed) = redis.direct_counts();
    let pipelines = redis.pipelines_answered();
    let results: Vec<Claim> = claim_together(&store, &tokens)
        .await
        .into_iter()
        .map(|result| result.expect("claim"))
        .collect();
    assert_eq!(results, expected);
    let sent = redis.pipelines_answered() - pipelines;
    // Three primaries in the local cluster.
    assert!((1..=3).contains(&sent), "{sent} pipelines for 40 claims");
    let (now_served, now_failed) = redis.direct_counts();
    assert_eq!(now_failed, failed, "no claim was refused by its node");
    assert_eq!(
        now_served - served,
        40,
        "every claim answered on a direct connection"
    );
    // What the pipeline claimed is held: another event finds it in flight.
    for (token, claim) in tokens.iter().zip(&expected) {
        if let Claim::Claimed(_) = claim {
            assert_eq!(
                store.claim(token.key(), "ev-other").await.expect("claim"),
                Claim::InFlight,
                "{}",
                token.key()
            );
        }
    }
}

#[tokio::test]
async fn claims_made_together_that_time_out_fail_and_are_claimed_by_a_retry() {
    let (cluster, redis, store) = private_cluster().await;
    claim_until_served(&redis, 1).await;
    let tokens: Vec<ClaimToken> = (0..30)
        .map(|i| ClaimToken::new(unique(&format!("paused-claim{i}")), format!("ev-{i}")))
        .collect();
    let failed = redis.direct_counts().1;
    pause_writes(&cluster, true);
    assert_timed_out(
        &redis,
        failed,
        "claim",
        claim_together(&store, &tokens).await,
    );
    pause_writes(&cluster, false);
    // The paused claims ran once writes resumed; sent again, as the sender's retry of the
    // batch would be, each finds its own event's claim.
    await_values(&store, &tokens, "pending").await;
    let pipelines = redis.pipelines_answered();
    for (token, result) in tokens.iter().zip(claim_together(&store, &tokens).await) {
        assert_eq!(result.expect("claim"), Claim::Claimed(token.clone()));
    }
    let sent = redis.pipelines_answered() - pipelines;
    assert!((1..=3).contains(&sent), "{sent} pipelines for 30 claims");
}

#[tokio::test]
async fn claims_made_together_on_a_stale_route_reach_their_primaries() {
    let redis: RedisStore = redis_at(redis_nodes(), Duration::from_secs(2));
    claim_until_served(&redis, 1).await;
    let store = SharedStore::Redis(redis.clone());
    let tokens: Vec<ClaimToken> = (0..30)
        .map(|i| ClaimToken::new(unique(&format!("stale-claim{i}")), format!("ev-{i}")))
        .collect();
    assert!(redis
        .misroute_every_slot_for_tests()
        .await
        .expect("misroute"));
    for (token, result) in tokens.iter().zip(claim_together(&store, &tokens).await) {
        assert_eq!(result.expect("claim"), Claim::Claimed(token.clone()));
    }
    assert_eq!(
        redis.direct_counts().1,
        1,
        "the misrouted connection was taken out once, for the whole pipeline"
    );
    // Each key was claimed on its own primary: another event finds it in flight there.
    for token in &tokens {
        assert_eq!(
            store.claim(token.key(), "ev-other").await.expect("claim"),
            Claim::InFlight
        );
    }
}
