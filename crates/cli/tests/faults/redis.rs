//! Redis faults: a primary of the cluster killed (its replica takes over), then the whole
//! cluster down, with a fail-open and a fail-closed source under the same load.

use std::time::{Duration, Instant};

use spillway_testkit::{Client, IngressProcess, RedisCluster, TestSubscriber};

use crate::harness::{record, stack, start, Load};
use crate::support::{post_event, source, TestSource, PATIENCE};

/// Posts fresh events to `source` until one gets `status`; the status of the last answer.
async fn probe_until(ingress: &IngressProcess, source: &TestSource, status: u16) -> u16 {
    let client = Client::http1();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let id = spillway_testkit::unique("probe-");
        let reply = post_event(&client, ingress, source, &id, 1).await;
        if reply.status == status || Instant::now() > deadline {
            return reply.status.as_u16();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        "",
        "",
        &[("inbox", &subscriber)],
    )
    .await;
    setup.set_source_option("open", "on_redis_unavailable", "fail_open");
    setup.set_source_option("closed", "on_redis_unavailable", "fail_closed");
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
    tokio::task::block_in_place(|| cluster.wait_failover(primary, PATIENCE));
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
