//! Kafka faults: the broker killed and restarted, and the broker too slow to answer before
//! the produce timeout.

use std::time::Duration;

use serde_json::json;
use spillway_testkit::delay_proxy::DelayProxy;
use spillway_testkit::spillway::source;
use spillway_testkit::{redis_nodes, Tansu, TestSubscriber};

use crate::harness::{record, stack, start, Load};

/// Fails if the broker process died. tansu's storage can panic inside a request (see
/// docs/development.md) and the broker may live on or not; the panics are printed, so that a
/// later failure to read the topics back can be told from a Spillway fault.
fn assert_broker_alive(tansu: &mut Tansu) {
    assert!(tansu.is_running(), "tansu died:\n{}", tansu.log_text());
    let log = tansu.log_text();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    if !panics.is_empty() {
        eprintln!("the broker panicked (its bug, not Spillway's): {panics:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_mid_load_and_restarted_on_its_data() {
    let mut tansu = Tansu::start_sqlite();
    let subscriber = TestSubscriber::ok().await;
    let setup = stack(
        &tansu.brokers(),
        &redis_nodes(),
        &[source("github"), source("stripe")],
        json!({ "kafka": { "delivery_timeout": "2s" } }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.3).await;
    tansu.kill();
    load.at(0.6).await;
    tansu.start();
    load.at(1.0).await;
    assert_broker_alive(&mut tansu);
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let refused = finished.count_error(503, "kafka_unavailable");
    assert!(
        refused > 0,
        "requests during the outage are refused, never accepted:\n{}",
        finished.report.summary().text()
    );
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "broker_killed",
        "broker SIGKILL at 30% of the load, restarted on its sqlite data at 60%",
        &finished,
        &[("inbox", delivery)],
        "503 kafka_unavailable while the broker is down: at once once the producer knows no broker \
         is reachable, after kafka.delivery_timeout (2 s here) for the requests in flight",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_slower_than_the_produce_timeout() {
    // The broker advertises the proxy, so every connection of every client goes through it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_port = listener.local_addr().expect("addr").port();
    let mut tansu = Tansu::start_sqlite_behind(Some(proxy_port));
    let proxy = DelayProxy::serve(listener, tansu.listen_addr());
    let subscriber = TestSubscriber::ok().await;
    let setup = stack(
        &tansu.brokers(),
        &redis_nodes(),
        &[source("github"), source("stripe")],
        json!({ "kafka": { "delivery_timeout": "1s" } }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(0.3).await;
    proxy.set_delay(Duration::from_secs(2));
    load.at(0.6).await;
    proxy.set_delay(Duration::ZERO);
    load.at(1.0).await;
    assert_broker_alive(&mut tansu);
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    let refused = finished.count_error(503, "kafka_unavailable");
    assert!(
        refused > 0,
        "a produce slower than kafka.delivery_timeout is answered 503:\n{}",
        finished.report.summary().text()
    );
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "broker_slow",
        "every byte to and from the broker held 2 s (delivery timeout 1 s) from 30% to 60% of the load",
        &finished,
        &[("inbox", delivery)],
        "503 kafka_unavailable when the acknowledgement is late; such a record may be in Kafka all \
         the same (counted as unconfirmed), and the sender's retry is written again: at least \
         once, never lost",
    );
}
