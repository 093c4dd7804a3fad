//! The producer's replacement, size and reachability decisions, without a broker.

use super::*;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use spillway_testkit::eventually_blocking;
use std::collections::BTreeMap;

/// A producer pointed at a closed loopback port: creating one needs no broker.
fn producer(properties: &[(&str, &str)]) -> KafkaProducer {
    let settings = ProducerSettings {
        brokers: "127.0.0.1:1".into(),
        delivery_timeout: Duration::from_secs(1),
        linger: Duration::from_millis(1),
        max_queued_messages: 10,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        recreate_on_timeout: true,
    };
    match KafkaProducer::new(&settings) {
        Ok(p) => p,
        Err(e) => panic!("producer: {e}"),
    }
}

#[test]
fn message_max_bytes_is_the_property_or_librdkafkas_default() {
    assert_eq!(producer(&[]).message_max_bytes(), 1_000_000);
    let set = producer(&[("message.max.bytes", "2000000")]);
    assert_eq!(set.message_max_bytes(), 2_000_000);
}

#[test]
fn the_outage_hold_follows_the_statistics_interval() {
    assert_eq!(
        producer(&[]).shared.unreachable_hold,
        Duration::from_secs(3)
    );
    let slow = producer(&[("statistics.interval.ms", "10000")]);
    assert_eq!(slow.shared.unreachable_hold, Duration::from_secs(30));
    let off = producer(&[("statistics.interval.ms", "0")]);
    assert_eq!(off.shared.unreachable_hold, Duration::from_secs(3));
}

#[test]
fn too_large_is_told_apart_from_other_refusals() {
    let code = |e: RDKafkaErrorCode| refused(KafkaError::MessageProduction(e)).code();
    assert_eq!(code(RDKafkaErrorCode::MessageSizeTooLarge), "too_large");
    // A batch too large for the broker is not the record's fault: a retry may go through.
    assert_eq!(
        code(RDKafkaErrorCode::MessageBatchTooLarge),
        "not_acknowledged"
    );
    assert_eq!(code(RDKafkaErrorCode::QueueFull), "queue_full");
    assert_eq!(code(RDKafkaErrorCode::MessageTimedOut), "not_acknowledged");
}

#[test]
fn only_timeouts_and_fatal_errors_replace_the_producer() {
    let failed = |e: RDKafkaErrorCode| refused(KafkaError::MessageProduction(e));
    let timed_out = failed(RDKafkaErrorCode::MessageTimedOut);
    assert!(replaces(&timed_out, || false, true));
    assert!(!replaces(&timed_out, || false, false));
    let other = failed(RDKafkaErrorCode::TopicAuthorizationFailed);
    assert!(!replaces(&other, || false, true));
    assert!(replaces(&other, || true, false), "a fatal error");
    for e in [
        failed(RDKafkaErrorCode::MessageSizeTooLarge),
        ProduceError::QueueFull,
        ProduceError::Unreachable,
        ProduceError::Canceled,
    ] {
        assert!(!replaces(&e, || true, true), "{e:?}");
    }
}

#[test]
fn concurrent_failed_sends_of_one_generation_create_one_producer() {
    let p = producer(&[]);
    let callers = 32;
    let start = std::sync::Barrier::new(callers);
    std::thread::scope(|scope| {
        for _ in 0..callers {
            scope.spawn(|| {
                start.wait();
                p.replace(0);
            });
        }
    });
    // The replacement is created on a thread of its own; the callers did not wait for it.
    eventually_blocking("the replacement", || match p.current().0 {
        0 => Err("generation 0"),
        1 => Ok(()),
        more => panic!("{more} replacements"),
    });
    assert_eq!(p.shared.created.load(Ordering::Relaxed), 2);
    // A late failure of the replaced generation changes nothing.
    p.replace(0);
    assert_eq!(p.current().0, 1);
    let replacing = p.shared.current.read().map(|c| c.replacing);
    assert_eq!(replacing.ok(), Some(false));
    assert_eq!(p.shared.created.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_send_fails_at_once_while_every_broker_is_down() {
    let p = producer(&[]);
    let (_, client) = p.current();
    client.producer.context().error(
        KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
        "1/1 brokers are down",
    );
    // No await inside: the answer is there on the first poll.
    let sent = p
        .send_record::<&str, &[u8]>("t", None, b"x", &[])
        .now_or_never();
    assert!(
        matches!(sent, Some(Err(ProduceError::Unreachable))),
        "{sent:?}"
    );
    // (librdkafka's queue length also counts its own events, such as the error just raised,
    // so it says nothing about whether the record was handed over.)
    assert_eq!(p.current().0, 0, "no replacement");
}
