//! A Kafka cluster losing a broker while the others keep serving: three tansu brokers over one
//! PostgreSQL store behind a TCP balancer, the one every client uses killed mid-load.

use serde_json::json;
use spillway_testkit::balancer::Haproxy;
use spillway_testkit::spillway::source;
use spillway_testkit::{eventually, free_port, redis_nodes, Postgres, Tansu, TestSubscriber, Wait};

use crate::harness::{load_shape, record, stack, start, Load};

/// When the broker is killed, as a share of the load's duration (or later, when the first
/// delivery takes longer).
const KILLED_AT: f64 = 0.3;

/// `kafka.delivery_timeout`: how long a record in flight at the kill may wait.
const DELIVERY_TIMEOUT_SECS: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_lost_while_two_others_serve() {
    let postgres = Postgres::start();
    let front = free_port();
    let mut brokers: Vec<Tansu> = (0..3)
        .map(|_| Tansu::on_postgres_behind(&postgres, front))
        .collect();
    let addrs: Vec<_> = brokers.iter().map(Tansu::listen_addr).collect();
    let balancer = Haproxy::start_tcp(front, &addrs);
    // Only the first broker is up until the ingress has written and the worker delivered, so
    // every connection of the ingress's producer and of the worker's consumers goes to it: the
    // kill takes the broker that all of them use, and each must reconnect to one of the others.
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
            "delivery_timeout": format!("{DELIVERY_TIMEOUT_SECS}s"),
            "properties": { "batch.num.messages": "10000" },
        } }),
        &[("inbox", &subscriber)],
    )
    .await;
    let (ingress, mut worker) = start(&setup).await;

    let load = Load::start(&setup.config, &format!("http://{}", ingress.addr), 0.05);
    eventually("a first delivery through the first broker", async || {
        !subscriber.delivered_bodies().is_empty()
    })
    .await;
    brokers[1].start();
    brokers[2].start();
    load.at(KILLED_AT).await;
    let logged_before_kill = (ingress.log_text().len(), worker.log_text().len());
    let killed_at = load.elapsed_share();
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
    // The kill cut both processes' connections: librdkafka reports it through their logs, as
    // a disconnection, a transport failure or every known broker down.
    let broken = [
        "Disconnected",
        "Broker transport failure",
        "brokers are down",
    ];
    // Logs only grow, so an earlier length ends on a character boundary; `get` guards against
    // a read that failed (an empty text).
    let tail = |log: String, from: usize| log.get(from..).unwrap_or_default().to_owned();
    let after_kill = [
        ("ingress", tail(ingress.log_text(), logged_before_kill.0)),
        ("worker", tail(worker.log_text(), logged_before_kill.1)),
    ];
    for (process, log) in &after_kill {
        assert!(
            broken.iter().any(|b| log.contains(b)),
            "the {process}'s connection to the killed broker broke:\n{log}"
        );
    }
    // The others serve: requests due after the kill and a delivery timeout are accepted. A
    // sequence number is due no earlier than seq / rate (the load's repeats reuse their
    // original's number), so this bound leans late.
    let (rate, duration) = load_shape();
    let settled = killed_at * duration.as_secs_f64() + DELIVERY_TIMEOUT_SECS;
    assert!(
        settled < duration.as_secs_f64(),
        "the broker was killed at {killed_at:.2} of the load, too late to see the others serve: \
         the first delivery took that long"
    );
    let accepted_after = finished
        .acknowledged()
        .range((rate * settled) as u64..)
        .count();
    assert!(
        accepted_after > 0,
        "requests due after the kill and a delivery timeout are accepted\n{}",
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
         balancer, to the two others; requests whose records were in flight at the kill and not \
         acknowledged within kafka.delivery_timeout (2 s here) are answered 503 \
         kafka_unavailable, which senders retry",
    );
}
