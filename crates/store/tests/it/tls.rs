//! A Redis Cluster that takes TLS only and asks for a client certificate: claims and commits
//! go over TLS, on the direct routes to the primaries too, and a client that cannot show the
//! right certificates is refused rather than answered.

use std::time::Duration;

use spillway_store::{Claim, RedisSettings, RedisStore, RedisTls, SharedStore, StoreError};
use spillway_testkit::{LocalCa, RedisCluster};

use crate::direct::claim_until_served;
use crate::{claim_and_commit, unique};

fn store_with(cluster: &RedisCluster, tls: RedisTls) -> RedisStore {
    RedisStore::new(RedisSettings {
        nodes: cluster.nodes(),
        tls,
        command_timeout: Duration::from_secs(2),
        claim_ttl: Duration::from_secs(30),
        window: Duration::from_secs(600),
    })
    .expect("client")
}

fn read(cluster: &RedisCluster, name: &str) -> Vec<u8> {
    std::fs::read(cluster.tls_file(name)).expect("a TLS file")
}

/// The cluster's CA and the client certificate it takes.
fn cluster_tls(cluster: &RedisCluster) -> RedisTls {
    RedisTls {
        root_certs: Some(read(cluster, "ca.crt")),
        client_identity: Some((read(cluster, "redis.crt"), read(cluster, "redis.key"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_commits_go_over_tls_on_the_direct_routes_too() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_tls)
        .await
        .expect("start");
    assert!(cluster.nodes().iter().all(|n| n.starts_with("rediss://")));
    let redis = store_with(&cluster, cluster_tls(&cluster));
    let store = SharedStore::Redis(redis.clone());
    store.ping().await.expect("the cluster over TLS");

    claim_until_served(&redis, 1).await;
    let (served, failed) = redis.direct_counts();
    let key = unique("tls");
    claim_and_commit(&store, &key).await;
    assert_eq!(
        store.claim(&key, "ev-3").await.expect("claim"),
        Claim::Done("ev-1".into())
    );
    let (served_now, failed_now) = redis.direct_counts();
    assert_eq!(
        (served_now - served, failed_now - failed),
        (4, 0),
        "every command on the direct TLS connection to the key's primary"
    );
    // What the nodes hold, read with redis-cli over TLS: the committed key.
    let port = (cluster.base..cluster.base + 3)
        .find(|&p| cluster.cli(p, &["exists", &key]).trim() == "1")
        .expect("a primary holds the key");
    assert!(
        cluster.cli(port, &["get", &key]).contains("ev-1"),
        "the commit on the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_right_certificates_is_refused() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start_tls)
        .await
        .expect("start");
    let other_ca_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = LocalCa::write(other_ca_dir.path());
    let refused = [
        (
            "no client certificate",
            "CertificateRequired",
            RedisTls {
                root_certs: Some(read(&cluster, "ca.crt")),
                client_identity: None,
            },
        ),
        (
            "another CA trusted",
            "invalid peer certificate",
            RedisTls {
                root_certs: Some(std::fs::read(&other_ca.ca_file).expect("the other CA")),
                client_identity: Some((read(&cluster, "redis.crt"), read(&cluster, "redis.key"))),
            },
        ),
        (
            "the system's roots",
            "invalid peer certificate: UnknownIssuer",
            RedisTls::default(),
        ),
    ];
    // Refused by the handshake, for the reason the case names, not by a timeout.
    for (what, reason, tls) in refused {
        let store = SharedStore::Redis(store_with(&cluster, tls));
        let claimed = store.claim(&unique("refused"), "ev-1").await;
        assert!(
            matches!(&claimed, Err(StoreError::Unavailable { source, .. }) if source.to_string().contains(reason)),
            "{what}: {claimed:?}"
        );
    }
    // The same cluster with its own certificates answers.
    let store = SharedStore::Redis(store_with(&cluster, cluster_tls(&cluster)));
    assert!(matches!(
        store.claim(&unique("accepted"), "ev-1").await,
        Ok(Claim::Claimed(_))
    ));
}
