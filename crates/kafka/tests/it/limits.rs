//! What the cluster tells about itself: its id, and what is too large for it.

use std::time::Duration;

use futures::FutureExt;
use spillway_kafka::{admin, Connection, EventProducer, ProduceError};
use spillway_testkit::patience;

use crate::{brokers, closed_port, new_topic, producer_of};

async fn cluster_id(producer: &EventProducer, timeout: Duration) -> Option<String> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || producer.cluster_id(timeout))
        .await
        .expect("join")
}

#[tokio::test]
async fn a_record_over_message_max_bytes_is_too_large_at_once() {
    let topic = new_topic().await;
    let producer = producer_of(
        &brokers(),
        Duration::from_secs(10),
        &[("message.max.bytes", "10000")],
    );
    assert_eq!(producer.message_max_bytes(), 10_000);
    // librdkafka's own check, before anything is queued.
    let big = vec![b'x'; 20_000];
    let sent = producer
        .send_record::<&str, &[u8]>(&topic, None, &big, &[])
        .now_or_never();
    assert!(
        matches!(sent, Some(Err(ProduceError::TooLarge(_)))),
        "{sent:?}"
    );
    // The producer is as good as before.
    let small = producer
        .send_record::<&str, &[u8]>(&topic, None, b"small", &[])
        .await;
    assert!(small.is_ok(), "{small:?}");
}

#[tokio::test]
async fn the_cluster_id_is_the_clusters_and_none_without_one() {
    let first = producer_of(&brokers(), Duration::from_secs(10), &[]);
    let id = cluster_id(&first, patience())
        .await
        .expect("the local broker's cluster id: is the stack up? run `make up`");
    assert!(!id.is_empty());
    let second = producer_of(&brokers(), Duration::from_secs(10), &[]);
    assert_eq!(cluster_id(&second, patience()).await, Some(id));
    // Nothing listens: no id, once the timeout has passed.
    let nowhere = producer_of(&closed_port().to_string(), Duration::from_secs(10), &[]);
    assert_eq!(cluster_id(&nowhere, Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn a_topics_max_message_bytes_when_the_broker_tells_it() {
    let topic = new_topic().await;
    let topics = [topic.clone(), topic.clone()];
    let told = admin::topics_max_message_bytes(&Connection::plain(&brokers()), &topics, patience())
        .await
        .expect("describe configs");
    // tansu 0.6 answers DescribeConfigs without any entry; Apache Kafka with the topic's limit.
    // A topic named twice is asked once.
    assert_eq!(told.len(), 1, "{told:?}");
    match &told[&topic] {
        Ok(None) => {}
        Ok(Some(bytes)) => assert!(*bytes > 0),
        other => panic!("describe configs: {other:?}"),
    }
    // Without a broker the request fails rather than say "unknown".
    let nowhere = Connection::plain(&closed_port().to_string());
    let failed =
        admin::topics_max_message_bytes(&nowhere, &topics, Duration::from_millis(500)).await;
    assert!(failed.is_err(), "{failed:?}");
}
