//! Network partitions between the ingress and Kafka, and between the ingress and Redis: every
//! connection reset, or every byte dropped on connections held open (a black-hole), by a proxy
//! in front of a private broker or cluster that advertises the proxy, then healed without
//! restarting anything. The ingress must refuse what it cannot make durable or deduplicate,
//! and recover by itself.

use std::time::{Duration, Instant};

use serde_json::json;
use spillway_testkit::delay_proxy::DelayProxy;
use spillway_testkit::redis_cluster::ProxiedRedisCluster;
use spillway_testkit::spillway::source;
use spillway_testkit::{redis_nodes, Tansu, TestSubscriber};

use crate::harness::{record, stack, start, Finished, Load};
use crate::probe::{dedupe_works, probe_refused, probe_until};

/// Long, so that a 503 that comes "at once" cannot be one that waited for the delivery
/// timeout.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the network is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Every connection reset, and every new one.
    Reset,
    /// Every byte dropped, both ways; connections, open and new, held open.
    BlackHole,
}

impl Cut {
    fn apply(self, proxy: &DelayProxy) {
        match self {
            Self::Reset => proxy.reset_all(),
            Self::BlackHole => proxy.black_hole(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::BlackHole => "black_hole",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Reset => "every connection reset",
            Self::BlackHole => "every byte dropped on connections held open",
        }
    }
}

/// The load's 503s by error code and the slowest of them, for the notes.
fn refusals(finished: &Finished) -> String {
    match finished.slowest(503, None) {
        None => "no 503".to_owned(),
        Some(slowest) => format!(
            "503s: {} (the slowest after {} ms)",
            finished.error_codes(503),
            slowest.as_millis()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_connections_reset_then_healed() {
    kafka_partition(Cut::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_black_holed_then_healed() {
    kafka_partition(Cut::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_connections_reset_then_healed() {
    redis_partition(Cut::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_black_holed_then_healed() {
    redis_partition(Cut::BlackHole).await;
}

/// A private broker (memory storage: it is never restarted) that advertises a proxy, cut from
/// 30% to 60% of the load.
async fn kafka_partition(cut: Cut) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut tansu = Tansu::start_memory_behind(listener.local_addr().expect("addr").port());
    let proxy = DelayProxy::serve(listener, tansu.listen_addr());
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = stack(
        &tansu.brokers(),
        &redis_nodes(),
        &[github.clone(), source("stripe")],
        json!({
            "kafka": { "delivery_timeout": format!("{}s", DELIVERY_TIMEOUT.as_secs()) },
            // Longer than the delivery timeout, as the config requires.
            "redis": { "claim_ttl": "60s" },
        }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.3).await;
    let cut_at = Instant::now();
    cut.apply(&proxy);
    let refused = match cut {
        Cut::Reset => {
            probe_refused(&ingress, &github, "kafka_unavailable").await;
            Some(cut_at.elapsed())
        }
        // Nothing tells the producer: its connections stay open, its requests unanswered.
        Cut::BlackHole => None,
    };
    load.at(0.6).await;
    proxy.heal();
    let recovered = probe_until(&ingress, &github, 202).await;
    let finished = load.finish().await;
    assert!(tansu.is_running(), "tansu died:\n{}", tansu.log_text());

    finished.assert_nothing_lost();
    let summary = finished.report.summary().text();
    if cut == Cut::Reset {
        assert!(
            finished.count_error(503, "kafka_unavailable") > 0,
            "requests while no broker is reachable are refused:\n{summary}"
        );
    }
    // At once: with the delivery timeout this long, a refusal that waited for it would show.
    // Requests whose records were handed to the producer before the cut wait for the heal
    // instead, and are accepted then.
    if let Some(slowest) = finished.slowest(503, None) {
        assert!(
            slowest < DELIVERY_TIMEOUT / 2,
            "a 503 took {slowest:?}, as if it waited for the delivery timeout \
             ({DELIVERY_TIMEOUT:?}):\n{summary}"
        );
    }
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    let first_refusal = refused.map_or(String::new(), |d| {
        format!("first probe refused {} ms after the cut; ", d.as_millis())
    });
    record(
        &format!("kafka_partition_{}", cut.name()),
        &format!(
            "ingress and worker cut from a private broker ({}) from 30% to 60% of the load, \
             then healed; delivery timeout {} s",
            cut.what(),
            DELIVERY_TIMEOUT.as_secs()
        ),
        &finished,
        &[("inbox", delivery)],
        &format!(
            "{first_refusal}{}; a probe accepted {} ms after the heal; the proxy reset {} \
             connections",
            refusals(&finished),
            recovered.as_millis(),
            proxy.resets()
        ),
    );
}

/// A private Redis Cluster whose six nodes announce a proxy each, all cut from 30% to 60% of
/// the load; both sources fail closed (the default).
async fn redis_partition(cut: Cut) {
    let redis = ProxiedRedisCluster::start().await;
    let subscriber = TestSubscriber::ok().await;
    let github = source("github");
    let setup = stack(
        &spillway_testkit::kafka_brokers(),
        &redis.nodes(),
        &[github.clone(), source("stripe")],
        json!({}),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;
    dedupe_works(&ingress, &github).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.3).await;
    let cut_at = Instant::now();
    redis.each(|proxy| cut.apply(proxy));
    probe_refused(&ingress, &github, "dedupe_unavailable").await;
    let first_refusal = cut_at.elapsed();
    load.at(0.6).await;
    redis.each(DelayProxy::heal);
    let recovered = probe_until(&ingress, &github, 202).await;
    let dedupe = dedupe_works(&ingress, &github).await;
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let summary = finished.report.summary().text();
    assert!(
        finished.count_error(503, "dedupe_unavailable") > 0,
        "fail-closed sources refuse while Redis is cut off:\n{summary}"
    );
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        &format!("redis_partition_{}", cut.name()),
        &format!(
            "ingress cut from every node of a private Redis Cluster ({}) from 30% to 60% of \
             the load, then healed; both sources fail closed",
            cut.what()
        ),
        &finished,
        &[("inbox", delivery)],
        &format!(
            "first probe refused {} ms after the cut; {}; after the heal a probe accepted in {} \
             ms, and dedupe confirmed (an event accepted, its repeat answered duplicate) within \
             {} ms",
            first_refusal.as_millis(),
            refusals(&finished),
            recovered.as_millis(),
            dedupe.as_millis()
        ),
    );
}
