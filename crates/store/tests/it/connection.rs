//! The shared cluster connection: one connect for concurrent first callers, and a command
//! timeout that neither drops the connection nor loses the claim it may have applied.

use std::time::Duration;

use spillway_store::{
    Claim, ClaimToken, RedisSettings, RedisStore, RedisTls, SharedStore, StoreError,
};
use spillway_testkit::{eventually, redis_nodes, RedisCluster};

use crate::unique;

pub(crate) fn redis_at(nodes: Vec<String>, command_timeout: Duration) -> RedisStore {
    RedisStore::new(RedisSettings {
        nodes,
        tls: RedisTls::default(),
        command_timeout,
        claim_ttl: Duration::from_secs(30),
        window: Duration::from_secs(600),
    })
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_connect() {
    // Generous: the first calls wait for the connect, which a crowded machine may slow down.
    let redis = redis_at(redis_nodes(), Duration::from_secs(30));
    let store = SharedStore::Redis(redis.clone());
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(&unique("first"), &format!("ev-{i}")).await })
        })
        .collect();
    for caller in callers {
        let claimed = caller.await.expect("join").expect(
            "the Redis Cluster is not reachable: run `make up` (dev/redis-cluster.sh start) first",
        );
        assert!(matches!(claimed, Claim::Claimed(_)), "{claimed:?}");
    }
    assert_eq!(redis.connects(), 1, "one connect for every first caller");
}

/// A private cluster, for tests that pause writes (pausing the shared one would stall every
/// other test), and a store on it with a short command timeout.
pub(crate) async fn private_cluster() -> (RedisCluster, RedisStore, SharedStore) {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start");
    let redis = redis_at(cluster.nodes(), Duration::from_millis(500));
    let store = SharedStore::Redis(redis.clone());
    (cluster, redis, store)
}

/// Pauses writes on every node of `cluster`, or lets them through again; the writes paused
/// meanwhile then run. A paused client's later commands, reads too, wait behind its write,
/// but other clients' reads (and the unpause) run.
pub(crate) fn pause_writes(cluster: &RedisCluster, pause: bool) {
    for port in cluster.base..cluster.base + 6 {
        // Ten minutes: the test unpauses long before, or fails and stops the cluster.
        let args: &[&str] = if pause {
            &["client", "pause", "600000", "WRITE"]
        } else {
            &["client", "unpause"]
        };
        assert_eq!(cluster.cli(port, args).trim(), "OK", "{args:?} on {port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_claim_keeps_the_connection_and_its_token_settles_the_claim() {
    let (cluster, redis, store) = private_cluster().await;
    eventually("the private cluster to take writes", async || {
        store.health(&unique("warm-up")).await
    })
    .await;
    let connects = redis.connects();

    pause_writes(&cluster, true);
    let (committed, released) = (unique("timed-out-a"), unique("timed-out-b"));
    let (a, b) = tokio::join!(
        store.claim(&committed, "ev-a"),
        store.claim(&released, "ev-b")
    );
    for timed_out in [a, b] {
        assert!(
            matches!(timed_out, Err(StoreError::Unavailable { op: "claim", .. })),
            "{timed_out:?}"
        );
    }
    pause_writes(&cluster, false);
    // The next command goes out on the connection that sent the claims, behind them.
    store.read(&committed).await.expect("read");
    assert_eq!(
        redis.connects(),
        connects,
        "a timeout must not replace the shared connection"
    );

    // The claims whose callers gave up were still sent on the kept connection, and the
    // cluster applies them now: the orphaned claims of M-5, which the tokens must settle.
    for (key, value) in [(&committed, "pending:ev-a"), (&released, "pending:ev-b")] {
        eventually(format!("{key} to hold {value}"), async || {
            let stored = store.read(key).await;
            match stored {
                Ok(Some(v)) if v == value => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    // The request that timed out claims again (or redis-rs re-sent its SET): still its own.
    let token = ClaimToken::new(committed.as_str(), "ev-a");
    assert_eq!(
        store.claim(&committed, "ev-a").await.expect("claim"),
        Claim::Claimed(token.clone())
    );
    assert_eq!(
        store.claim(&committed, "ev-other").await.expect("claim"),
        Claim::InFlight
    );
    // Fail open: produced without a claim, then committed with the rebuilt token.
    assert!(store.commit(&token).await.expect("commit"));
    assert_eq!(
        store.claim(&committed, "ev-retry").await.expect("claim"),
        Claim::Done("ev-a".into())
    );
    // Fail closed: answered 503, then released so the sender's retry is not held for claim_ttl.
    store
        .release(&ClaimToken::new(released.as_str(), "ev-b"))
        .await
        .expect("release");
    assert!(matches!(
        store.claim(&released, "ev-retry").await.expect("claim"),
        Claim::Claimed(_)
    ));

    assert_eq!(redis.connects(), connects);
}
