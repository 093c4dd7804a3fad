//! Redis faults: a primary of the cluster killed (its replica takes over), then the whole
//! cluster down, with a fail-open and a fail-closed source under the same load.

use std::time::Duration;

use serde_json::json;
use spillway_testkit::spillway::{post_event, source, TestSource};
use spillway_testkit::{Client, IngressProcess, RedisCluster, TestSubscriber, Wait};

use crate::harness::{record, stack, start, Load};

/// Posts fresh events to `source` until one gets `status` (within the patience); the status of
/// the last answer.
async fn probe_until(ingress: &IngressProcess, source: &TestSource, status: u16) -> u16 {
    let client = Client::http1();
    // Each probe is a request: not too many of them.
    let probed = Wait::new()
        .every(Duration::from_millis(100))
        .poll(async || {
            let id = spillway_testkit::unique("probe-");
            let answered = post_event(&client, ingress, source, &id, 1).await.status;
            if answered == status {
                Ok(answered.as_u16())
            } else {
                Err(answered.as_u16())
            }
        })
        .await;
    probed.unwrap_or_else(|last| last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_primary_killed_then_the_whole_cluster_down() {
    let cluster = RedisCluster::start();
    let mut open = source("github");
    open.name = "open";
    let mut closed = source("github");
    closed.name = "closed";
    let subscriber = TestSubscriber::ok().await;
    let setup = stack(
        &spillway_testkit::kafka_brokers(),
        &cluster.nodes(),
        &[open.clone(), closed.clone()],
        json!({
            "sources": {
                "open": { "on_redis_unavailable": "fail_open" },
                "closed": { "on_redis_unavailable": "fail_closed" },
            }
        }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    // No duplicates in this load: a fail-open source writes a sender's retry again while it
    // cannot check the key, which is its documented trade.
    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.0);
    load.at(0.2).await;
    let primary = cluster.base;
    assert_eq!(
        cluster.role(primary),
        "master",
        "the first node starts as a primary"
    );
    cluster.kill_node(primary);
    tokio::task::block_in_place(|| cluster.wait_failover(primary));
    assert_eq!(
        probe_until(&ingress, &closed, 202).await,
        202,
        "after the failover the fail-closed source accepts again"
    );
    load.at(0.6).await;
    cluster.stop();
    assert_eq!(
        probe_until(&ingress, &closed, 503).await,
        503,
        "without Redis the fail-closed source refuses"
    );
    // A probe, not one request: under a heavy load a request may also meet a slow broker.
    assert_eq!(
        probe_until(&ingress, &open, 202).await,
        202,
        "without Redis the fail-open source accepts"
    );
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let refused = finished.count_error(503, "dedupe_unavailable");
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "redis_failover_and_outage",
        "Redis Cluster primary SIGKILL at 20% of the load (its replica takes over), whole cluster stopped at 60%",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "source `open` fails open (accepts without dedupe, counted), source `closed` fails closed \
             ({refused} answered 503 dedupe_unavailable); both accept again once the replica is promoted"
        ),
    );
}
