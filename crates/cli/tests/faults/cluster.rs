//! A Kafka cluster losing a broker while the others keep serving: three tansu brokers over one
//! PostgreSQL store behind a TCP balancer, the one every client uses killed mid-load.

use serde_json::json;
use spillway_testkit::balancer::{free_port, Haproxy};
use spillway_testkit::spillway::source;
use spillway_testkit::{redis_nodes, Postgres, Tansu, TestSubscriber, Wait};

use crate::harness::{load_shape, record, stack, start, Load};

/// When the broker is killed, as a share of the load's duration.
const KILLED_AT: f64 = 0.3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_lost_while_two_others_serve() {
    let postgres = Postgres::start();
    let front = free_port();
    let mut brokers: Vec<Tansu> = (0..3)
        .map(|_| Tansu::on_postgres_behind(&postgres, front))
        .collect();
    let addrs: Vec<_> = brokers.iter().map(Tansu::listen_addr).collect();
    let balancer = Haproxy::start_tcp(front, &addrs);
    // Only the first broker is up while the clients connect, so every connection of the
    // ingress's producer and of the worker's consumers goes to it: the kill below takes the
    // broker that all of them use, and each must reconnect to one of the other two.
    brokers[0].start();
    let subscriber = TestSubscriber::ok().await;
    let setup = stack(
        &brokers[0].brokers(),
        &redis_nodes(),
        &[source("github"), source("stripe")],
        // Batches as the producer makes them, even under `make faults`: the one-record batches
        // there work around the memory storage's fetch bug, which the PostgreSQL storage (one
        // row per record, fetched from the offset asked for) does not have.
        json!({ "kafka": {
            "delivery_timeout": "2s",
            "properties": { "batch.num.messages": "10000" },
        } }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;
    brokers[1].start();
    brokers[2].start();

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    load.at(KILLED_AT).await;
    brokers[0].kill();
    load.at(1.0).await;
    for broker in &mut brokers[1..] {
        assert!(
            broker.is_running(),
            "a serving broker died:\n{}",
            broker.log_text()
        );
    }
    let finished = load.finish().await;

    finished.assert_nothing_lost();
    // Requests are due at a steady rate, so a sequence number says when a request was due.
    let (rate, duration) = load_shape();
    let killed_seq = (rate * duration.as_secs_f64() * KILLED_AT) as u64;
    let accepted_after = finished.acknowledged().range(killed_seq..).count();
    assert!(
        accepted_after > 0,
        "the two other brokers take over: requests due after the kill are accepted\n{}",
        finished.report.summary().text()
    );
    let delivery = match finished
        .try_wait_delivered(&subscriber, &mut [&mut worker], Wait::new().times(2))
        .await
    {
        Ok(delivery) => delivery,
        Err(missing) => panic!(
            "{} acknowledged events never reached the subscriber;\nworker log:\n{}\n\
             balancer log:\n{}\nbrokers' logs:\n{}",
            missing.len(),
            worker.log_text(),
            balancer.log_text(),
            brokers
                .iter()
                .map(|b| format!("--- {}\n{}", b.listen_addr(), b.log_text()))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    record(
        "broker_lost",
        "three brokers over one PostgreSQL store behind a TCP balancer; the one all clients use \
         SIGKILLed at 30% of the load",
        &finished,
        &[("inbox", delivery)],
        "the clients' connections to the killed broker break and they connect again through the \
         balancer, to the two others; requests in flight at the kill are answered 503 \
         kafka_unavailable (after kafka.delivery_timeout, 2 s here, at most) and the sender's \
         retry is written on another broker",
    );
}
