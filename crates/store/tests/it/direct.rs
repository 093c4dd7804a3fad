//! Claims, commits and releases sent straight to the key's primary: right against the real
//! cluster's slots, and a stale route costs one extra try, never a wrong answer.

use std::time::Duration;

use spillway_store::{Claim, ClaimToken, RedisStore, SharedStore, StoreError};
use spillway_testkit::redis_nodes;

use crate::connection::{pause_writes, private_cluster, redis_at};
use crate::unique;

fn redis() -> RedisStore {
    redis_at(redis_nodes(), Duration::from_secs(2))
}

/// Claims fresh keys until `served` commands went direct (the routes are built in the
/// background after a command finds none).
pub(crate) async fn claim_until_served(redis: &RedisStore, served: u64) {
    let store = SharedStore::Redis(redis.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while redis.direct_counts().0 < served {
        assert!(
            tokio::time::Instant::now() < deadline,
            "commands did not go direct: {:?}",
            redis.direct_counts()
        );
        let claimed = store.claim(&unique("warm"), "ev-1").await.expect("claim");
        assert!(matches!(claimed, Claim::Claimed(_)), "{claimed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_key_goes_straight_to_the_primary_that_serves_its_slot() {
    let redis = redis();
    claim_until_served(&redis, 1).await;
    let (served, failed) = redis.direct_counts();
    let store = SharedStore::Redis(redis.clone());
    // Keys all over the slot space, some with hash tags: a slot computed unlike Redis would
    // reach the wrong primary, which answers MOVED, and count as failed.
    for k in 0..200 {
        let key = if k % 4 == 0 {
            format!("{{tag{k}}}:{}", unique("direct"))
        } else {
            unique(&format!("direct{k}"))
        };
        let Claim::Claimed(token) = store.claim(&key, "ev-1").await.expect("claim") else {
            panic!("a fresh key is claimed");
        };
        if k % 2 == 0 {
            assert!(store.commit(&token).await.expect("commit"));
            assert_eq!(
                store.claim(&key, "ev-2").await.expect("claim"),
                Claim::Done("ev-1".into())
            );
        } else {
            store.release(&token).await.expect("release");
            assert!(matches!(
                store.claim(&key, "ev-2").await.expect("claim"),
                Claim::Claimed(_)
            ));
        }
    }
    let (now_served, now_failed) = redis.direct_counts();
    assert_eq!(now_failed, failed, "no command was refused by its node");
    assert_eq!(
        now_served - served,
        600,
        "claim, settle and claim again, all direct"
    );
}

#[tokio::test]
async fn a_stale_route_costs_one_more_try_and_the_routes_come_back() {
    let redis = redis();
    claim_until_served(&redis, 1).await;
    assert!(redis
        .misroute_every_slot_for_tests()
        .await
        .expect("misroute"));
    let store = SharedStore::Redis(redis.clone());
    // Two primaries in three serve none of the slots sent to the first seed node: a claim on
    // one of their keys is answered MOVED there, then sent through the cluster connection.
    let mut misrouted = None;
    for k in 0..100 {
        let key = unique(&format!("stale{k}"));
        let claimed = store.claim(&key, "ev-1").await.expect("claim");
        assert!(matches!(claimed, Claim::Claimed(_)), "{claimed:?}");
        if redis.direct_counts().1 > 0 {
            misrouted = Some(key);
            break;
        }
    }
    let key = misrouted.expect("a key of another primary");
    assert_eq!(
        redis.direct_counts().1,
        1,
        "the misrouted connection was taken out at once"
    );
    // The claim sent again through the cluster connection holds the key.
    assert_eq!(
        store.claim(&key, "ev-2").await.expect("claim"),
        Claim::InFlight
    );
    // After a pause the routes are read again from the cluster and commands go direct.
    let (served, _) = redis.direct_counts();
    claim_until_served(&redis, served + 50).await;
    assert_eq!(redis.direct_counts().1, 1, "rebuilt routes are right");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_a_timed_out_claim_runs_behind_it() {
    let (cluster, redis, store) = private_cluster().await;
    claim_until_served(&redis, 1).await;
    // Keys with one hash tag share a slot, so a primary and a direct connection.
    let tag = uuid::Uuid::new_v4();
    let (claimed, later) = (format!("{{{tag}}}:claimed"), format!("{{{tag}}}:later"));
    // The primary learns the release script first: a release that found it missing would be
    // loaded and sent again only by a caller still waiting.
    store
        .release(&ClaimToken::new(later.as_str(), "ev-warm"))
        .await
        .expect("release");
    let (served, failed) = redis.direct_counts();

    pause_writes(&cluster, true);
    let timed_out = store.claim(&claimed, "ev-a").await;
    assert!(
        matches!(timed_out, Err(StoreError::Unavailable { op: "claim", .. })),
        "{timed_out:?}"
    );
    assert_eq!(
        redis.direct_counts().1,
        failed,
        "a timeout is not sent again"
    );
    // Fail closed: the request answers 503 and releases what its claim may have taken.
    let release = store
        .release(&ClaimToken::new(claimed.as_str(), "ev-a"))
        .await;
    assert!(
        release.is_err(),
        "the release waits behind the claim: {release:?}"
    );
    pause_writes(&cluster, false);

    // The next command on that connection runs after both: the claim, then its release.
    let after = store.claim(&later, "ev-b").await.expect("claim");
    assert!(matches!(after, Claim::Claimed(_)), "{after:?}");
    assert_eq!(
        store.read(&claimed).await.expect("read"),
        None,
        "the claim that landed late was released, not left pending for claim_ttl"
    );
    assert!(redis.direct_counts().0 > served, "the routes were kept");
}
