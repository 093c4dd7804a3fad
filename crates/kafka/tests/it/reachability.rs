//! Sends fail at once while no broker is reachable, and go through once one is (again).

use std::time::Duration;

use futures::FutureExt;
use spillway_kafka::{EventProducer, ProduceError, STATISTICS_INTERVAL};
use spillway_testkit::delay_proxy::DelayProxy;
use spillway_testkit::eventually;

use crate::{brokers, closed_port, new_topic, producer_of};

/// Far longer than any wait here: a send that reached librdkafka would still be waiting.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls one send once: the refusal of an unreachable cluster is there on the first poll, since
/// nothing is handed to librdkafka. A send that is still waiting is dropped (its record stays
/// queued in librdkafka until the producer goes).
fn refused_at_once(producer: &EventProducer, topic: &str) -> Result<(), String> {
    match producer
        .send_record::<&str, &[u8]>(topic, None, b"x", &[])
        .now_or_never()
    {
        Some(Err(ProduceError::Unreachable)) => Ok(()),
        Some(other) => Err(format!("the send answered {other:?}")),
        None => Err("the send waits for the broker".into()),
    }
}

#[tokio::test]
async fn a_send_fails_at_once_when_no_broker_listens() {
    let producer = producer_of(&closed_port().to_string(), DELIVERY_TIMEOUT, &[]);
    eventually("a send refused as unreachable", async || {
        refused_at_once(&producer, "spillway.it.nowhere")
    })
    .await;
    // Still so well after the first report would be stale (three statistics intervals):
    // librdkafka keeps confirming it (statistics listing no broker up, repeated reports).
    tokio::time::sleep(STATISTICS_INTERVAL * 5).await;
    eventually("a later send refused as unreachable", async || {
        refused_at_once(&producer, "spillway.it.nowhere")
    })
    .await;
}

#[tokio::test]
async fn sends_go_through_again_once_a_broker_is_back() {
    let topic = new_topic().await;
    let addr = closed_port();
    let producer = producer_of(&addr.to_string(), DELIVERY_TIMEOUT, &[]);
    eventually("a send refused as unreachable", async || {
        refused_at_once(&producer, &topic)
    })
    .await;

    // The broker is back at that address: a proxy to the local one. Nothing is sent meanwhile,
    // so only librdkafka's own reconnection can end the outage.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let upstream = tokio::net::lookup_host(brokers())
        .await
        .expect("resolve the local broker")
        .next()
        .expect("an address");
    let _proxy = DelayProxy::serve(listener, upstream);
    eventually("a send acknowledged", async || {
        producer
            .send_record::<&str, &[u8]>(&topic, None, b"back", &[])
            .await
            .map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn sends_keep_going_through_on_a_healthy_broker() {
    let topic = new_topic().await;
    let producer = producer_of(&brokers(), DELIVERY_TIMEOUT, &[]);
    // Spread over several statistics reports (one a second), none of which may stop them.
    for i in 0..12u8 {
        let sent = producer
            .send_record::<&str, &[u8]>(&topic, None, &[i], &[])
            .await;
        assert!(sent.is_ok(), "send {i}: {sent:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
