//! The producer and reader against the local tansu broker (`make up`; address from
//! SPILLWAY_TEST_KAFKA, default 127.0.0.1:9092), and the producer without one.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod durability;
mod fetch;
mod limits;
mod reachability;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use spillway_core::{headers, trace, Envelope, EventId};
use spillway_kafka::{admin, reader, Connection, EventProducer, ProducerSettings};

fn brokers() -> String {
    std::env::var("SPILLWAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A producer of `brokers` with a delivery timeout and extra properties.
fn producer_of(
    brokers: &str,
    delivery_timeout: Duration,
    properties: &[(&str, &str)],
) -> EventProducer {
    EventProducer::new(&ProducerSettings {
        brokers: brokers.to_owned(),
        delivery_timeout,
        linger: Duration::from_millis(2),
        max_queued_messages: 10_000,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        recreate_on_timeout: true,
    })
    .expect("producer")
}

/// A topic of its own on the local broker, created.
async fn new_topic() -> String {
    let topic = format!("spillway.it.{}", uuid::Uuid::new_v4());
    admin::ensure_topics(
        &Connection::plain(&brokers()),
        std::slice::from_ref(&topic),
        1,
        1,
    )
    .await
    .expect("the local broker is not reachable: run `make up` (dev/tansu.sh start) first");
    topic
}

/// A loopback address where nothing listens (a port just given up by the kernel's choice).
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

fn envelope(i: usize) -> Envelope {
    Envelope {
        id: EventId::new_v4(),
        source: "test".into(),
        received_at_ms: 1_700_000_000_000 + i as u64,
        dedupe_key: Some(format!("key-{i}")),
        scheme: "github".into(),
        key_id: Some("k1".into()),
        device_id: None,
        content_type: Some("application/json".into()),
        traceparent: trace::new_traceparent(),
        forwarded: vec![("x-github-event".into(), Bytes::from_static(b"push"))],
        record_key: Some(format!("key-{i}")),
        hops: 0,
        batch: None,
        invalid: None,
        stored: None,
        event_type: None,
        // Not valid UTF-8 on purpose: the value is bytes, never text.
        body: Bytes::from(vec![0xff, 0x00, i as u8, b'{', b'}']),
    }
}

#[tokio::test]
async fn produced_records_read_back_byte_identical_with_headers() {
    let brokers = brokers();
    let topic = format!("spillway.it.{}", uuid::Uuid::new_v4());
    admin::ensure_topics(
        &Connection::plain(&brokers),
        std::slice::from_ref(&topic),
        3,
        1,
    )
    .await
    .expect("the local broker is not reachable: run `make up` (dev/tansu.sh start) first");
    // Creating again is not an error.
    admin::ensure_topics(
        &Connection::plain(&brokers),
        std::slice::from_ref(&topic),
        3,
        1,
    )
    .await
    .expect("idempotent");

    let producer = EventProducer::new(&ProducerSettings {
        brokers: brokers.clone(),
        delivery_timeout: Duration::from_secs(10),
        linger: Duration::from_millis(2),
        max_queued_messages: 10_000,
        properties: BTreeMap::new(),
        recreate_on_timeout: true,
    })
    .expect("producer");
    let sent: Vec<Envelope> = (0..50).map(envelope).collect();
    // All in flight at once, as under load.
    let sends = sent.iter().map(|e| producer.send(&topic, e));
    for result in futures::future::join_all(sends).await {
        result.expect("acknowledged");
    }

    let (b, t) = (brokers.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || {
        reader::read_topic(&Connection::plain(&b), &t, Duration::from_secs(20))
    })
    .await
    .expect("join")
    .expect("read");
    assert_eq!(got.len(), sent.len());
    for e in &sent {
        let id = e.id.to_string();
        let r = got
            .iter()
            .find(|r| r.header(headers::EVENT_ID) == Some(id.as_str()))
            .expect("every sent event is in the topic");
        assert_eq!(r.value, e.body.to_vec());
        assert_eq!(r.key.as_deref(), e.record_key.as_deref().map(str::as_bytes));
        assert_eq!(r.header(headers::SOURCE), Some("test"));
        assert_eq!(r.header("x-github-event"), Some("push"));
        assert_eq!(r.header(headers::DEDUPE_KEY), e.dedupe_key.as_deref());
    }
}

#[tokio::test]
async fn a_read_goes_on_while_some_listed_brokers_are_down() {
    let topic = new_topic().await;
    let producer = producer_of(&brokers(), Duration::from_secs(10), &[]);
    for i in 0..10usize {
        producer
            .send_record::<&str, &str>(&topic, None, format!("{i}").as_bytes(), &[])
            .await
            .expect("produce");
    }
    // Brokers listed in `kafka.brokers` that are down, as when one of a cluster's is lost
    // (eight of them, so that the reader meets one whichever it tries first):
    // each refused connection is an error the consumer reports, not a reason to stop reading.
    let dead: Vec<String> = (0..8).map(|_| closed_port().to_string()).collect();
    let listed = format!("{},{}", dead.join(","), brokers());
    let records = tokio::task::spawn_blocking(move || {
        reader::read_topic(&Connection::plain(&listed), &topic, Duration::from_secs(20))
    })
    .await
    .expect("task")
    .expect("read with some brokers down");
    assert_eq!(records.len(), 10);
}

#[tokio::test]
async fn a_filtered_read_keeps_only_what_it_is_asked_for() {
    let topic = new_topic().await;
    let producer = producer_of(&brokers(), Duration::from_secs(10), &[]);
    for i in 0..40usize {
        let headers = [("n", i.to_string())];
        producer
            .send_record(&topic, None, format!("{i}").as_bytes(), &headers)
            .await
            .expect("produce");
    }
    let connection = Connection::plain(&brokers());
    let even = tokio::task::spawn_blocking(move || {
        reader::read_topic_where(&connection, &topic, Duration::from_secs(10), |r| {
            r.header("n")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n % 2 == 0)
        })
    })
    .await
    .expect("task")
    .expect("read");
    let kept: Vec<String> = even
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let wanted: Vec<String> = (0..40).step_by(2).map(|i| i.to_string()).collect();
    assert_eq!(kept, wanted);
}
