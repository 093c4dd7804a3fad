//! An ingress process stopped with SIGTERM mid-load behind a load balancer (HAProxy on
//! loopback): its in-flight requests finish, the balancer sends the rest to the other one.

use serde_json::json;
use spillway_testkit::balancer::{Backend, Haproxy};
use spillway_testkit::spillway::source;
use spillway_testkit::{redis_nodes, TestSubscriber};

use crate::harness::{record, stack, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_ingress_terminated_behind_haproxy() {
    let subscriber = TestSubscriber::ok().await;
    let setup = stack(
        &spillway_testkit::kafka_brokers(),
        &redis_nodes(),
        &[source("github"), source("shopify")],
        json!({}),
        &[("inbox", &subscriber)],
    )
    .await;
    let mut first = setup.spawn_ingress("ingress-1");
    let second = setup.spawn_ingress("ingress-2");
    first.wait_ready().await;
    second.wait_ready().await;
    let haproxy = Haproxy::start(&[
        Backend {
            hooks: first.addr,
            admin: first.admin,
        },
        Backend {
            hooks: second.addr,
            admin: second.admin,
        },
    ]);
    let mut worker = setup.spawn_worker("worker");

    let load = Load::start(&setup.config, &haproxy.url(), 0.05);
    load.at(0.4).await;
    first.terminate();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = first.wait_exit();
        (status, first.log_text())
    })
    .await
    .expect("join");
    assert!(status.success(), "clean exit after the drain:\n{log}");
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    // 503s with an error code are the ingress's own (Kafka too slow, say); the balancer's
    // 502, 503 and 504 carry none.
    let at_the_balancer = finished
        .report
        .answers()
        .iter()
        .filter(|a| matches!(&a.result, Ok((502..=504, None))))
        .count();
    assert_eq!(
        at_the_balancer,
        0,
        "the balancer moved on without failing a request:\n{}\nhaproxy:\n{}",
        finished.report.summary().text(),
        haproxy.log_text()
    );
    let delivery = finished
        .wait_delivered(&subscriber, &mut [&mut worker])
        .await;
    record(
        "ingress_sigterm_behind_balancer",
        "one of two ingress processes behind HAProxy sent SIGTERM at 40% of the load",
        &finished,
        &[("inbox", delivery)],
        "HAProxy checks /readyz every 200 ms and retries a request on the other server when a \
         connection is refused or closed without an answer",
    );
}
