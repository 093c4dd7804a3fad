//! Redis faults: a primary of the cluster killed (its replica takes over), then the whole
//! cluster down, with a fail-open and a fail-closed source under the same load; and every node
//! slow rather than down, first below `redis.command_timeout`, then above it, then fast again.

use std::time::Duration;

use serde_json::json;
use spillway_testkit::redis_cluster::ProxiedRedisCluster;
use spillway_testkit::spillway::source;
use spillway_testkit::{RedisCluster, TestSubscriber};

use crate::harness::{record, stack, start, Load};
use crate::probe::{dedupe_works, probe_refused, probe_until};

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
    // After the failover the fail-closed source accepts again.
    probe_until(&ingress, &closed, 202).await;
    load.at(0.6).await;
    cluster.stop();
    // Without Redis the fail-closed source refuses...
    probe_refused(&ingress, &closed, "dedupe_unavailable").await;
    // ...and the fail-open source accepts. A probe, not one request: under a heavy load a
    // request may also meet a slow broker.
    probe_until(&ingress, &open, 202).await;
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

/// `redis.command_timeout` in the slow case: the default.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_slow_below_then_above_the_command_timeout() {
    let redis = ProxiedRedisCluster::start().await;
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = stack(
        &spillway_testkit::kafka_brokers(),
        &redis.nodes(),
        &[github.clone(), source("stripe")],
        json!({ "redis": { "command_timeout": format!("{}ms", COMMAND_TIMEOUT.as_millis()) } }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    // Each proxy holds every byte this long each way: a round trip takes twice as long more.
    let slower = |round_trip: Duration| redis.each(|p| p.set_delay(round_trip / 2));
    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.2).await;
    slower(Duration::from_millis(300));
    // Below the command timeout: slower (each claim and commit waits 300 ms more), and still
    // accepted.
    probe_until(&ingress, &github, 202).await;
    load.at(0.45).await;
    slower(Duration::from_millis(800));
    // Above it: every command times out, and the fail-closed sources refuse.
    probe_refused(&ingress, &github, "dedupe_unavailable").await;
    load.at(0.7).await;
    redis.each(|p| p.set_delay(Duration::ZERO));
    let recovered = probe_until(&ingress, &github, 202).await;
    let dedupe = dedupe_works(&ingress, &github).await;
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    assert!(
        finished.count_error(503, "dedupe_unavailable") > 0,
        "commands slower than redis.command_timeout count as Redis unavailable:\n{}",
        finished.report.summary().text()
    );
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "redis_slow",
        "every Redis round trip 300 ms slower from 20% of the load, 800 ms slower from 45% \
         (redis.command_timeout 500 ms), fast again at 70%; both sources fail closed",
        &finished,
        &[("inbox", delivery)],
        &format!(
            "503s: {}; fast again, a probe accepted after {} ms, and dedupe confirmed (an event \
             accepted, its repeat answered duplicate) within {} ms",
            finished.error_codes(503),
            recovered.as_millis(),
            dedupe.as_millis()
        ),
    );
}
