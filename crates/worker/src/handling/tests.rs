//! The handling of one delivery against the memory producer and the memory deliverer, on
//! tokio's paused clock: what is parked where, with which headers, and what settles.

use std::num::NonZeroU32;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use spillway_config::ResolvedSubscription;
use spillway_core::headers;
use spillway_core::time::now_ms;
use spillway_kafka::{MemoryBehaviour, MemoryFault};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::{
    ATTEMPT, DEAD_AT, DEAD_REASON, LAST_ERROR, LAST_STATUS, NOT_BEFORE, POSTPONED_SINCE,
    SUBSCRIPTION,
};
use crate::delivery::{DeliveryOutcome, MemoryAnswer};
use crate::handling::Attempted;
use crate::test_support::{
    all_headers, failed, kit, kit_with, number, record, record_of, retry_record, source_record,
    subscription, tier, Kit, DEAD_LETTER, MAX_ATTEMPTS, MAX_POSTPONEMENT, SOURCE_TOPIC,
};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Attempt number `n` of delivering `message` to `sub`, never cancelled.
async fn attempt(kit: &Kit, message: &OwnedMessage, sub: &ResolvedSubscription, n: u32) -> bool {
    let event = kit.handling.outbound(message);
    kit.handling
        .attempt(message, sub, &event, n, &CancellationToken::new())
        .await
}

/// Attempt 1 of `message` to `sub` in its own task, cancelled by `cancel`.
fn attempt_in_task(
    kit: &Kit,
    message: OwnedMessage,
    sub: ResolvedSubscription,
    cancel: &CancellationToken,
) -> tokio::task::JoinHandle<bool> {
    let (handling, cancel) = (kit.handling.clone(), cancel.clone());
    tokio::spawn(async move {
        let event = handling.outbound(&message);
        handling.attempt(&message, &sub, &event, 1, &cancel).await
    })
}

/// Whether `due` is `delay_ms` after a moment between `before` and now.
fn due_after(due: u64, before: u64, delay_ms: u64) -> bool {
    (before + delay_ms..=now_ms() + delay_ms).contains(&due)
}

// The settlement of an attempt: where it is parked, postponed, or dead-lettered.
mod settling;

// The record of each attempt on the attempts topic.
mod recording;

// --- retries ---

#[tokio::test(start_paused = true)]
async fn a_retry_for_a_subscription_the_registry_removed_is_dropped_and_settles() {
    let kit = kit(vec![subscription("s1")]);
    kit.handling.subscriptions.apply(
        spillway_kafka::Delivered {
            partition: 0,
            offset: 0,
        },
        crate::registry::Change::Remove("gone".into()),
    );
    let message = retry_record(0, "gone", 2, 0);
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    assert!(kit.subscribers.deliveries().is_empty());
    assert!(kit.kafka.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_retry_for_a_subscription_this_worker_does_not_know_is_dead_lettered() {
    let kit = kit(vec![subscription("s1")]);
    let message = retry_record(0, "unknown", 3, 0);
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    assert!(kit.subscribers.deliveries().is_empty());
    let dead = kit.kafka.records_in(DEAD_LETTER);
    assert_eq!(dead.len(), 1, "{:?}", kit.kafka.records());
    assert_eq!(dead[0].header(DEAD_REASON), Some("subscription_unknown"));
    assert_eq!(dead[0].header(SUBSCRIPTION), Some("unknown"));
    assert_eq!(dead[0].header(ATTEMPT), Some("2"), "attempts made");
    assert_eq!(dead[0].header(headers::EVENT_ID), Some("e-0"));
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_the_attempt_its_record_names() {
    let kit = kit(vec![subscription("s1"), subscription("s2")]);
    let message = retry_record(5, "s2", 3, 0);
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    let asked = kit.subscribers.deliveries();
    assert_eq!(asked.len(), 1, "only its own subscription");
    assert_eq!(
        (asked[0].subscription.as_str(), asked[0].attempt),
        ("s2", 3)
    );
    assert_eq!(asked[0].event.event_id, "e-5");
    assert_eq!(asked[0].event.event_type.as_deref(), Some("push"));
    assert!(kit.kafka.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_retry_record_without_an_attempt_is_the_first_retry() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    let message = record(
        &tier(1),
        0,
        &[(headers::SOURCE, b"github"), (SUBSCRIPTION, b"s1")],
        b"{}",
    );
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    assert_eq!(kit.subscribers.deliveries()[0].attempt, 2);
    let parked = kit.kafka.records().pop().expect("parked");
    assert_eq!(
        (parked.topic.as_str(), parked.header(ATTEMPT)),
        (tier(2).as_str(), Some("3"))
    );
}

#[tokio::test(start_paused = true)]
async fn control_headers_of_an_earlier_park_are_stripped() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Failed {
            reason: "no answer within 1s".into(),
            status: None,
            retry_after: None,
        }));
    // Parked before with attempt 2, due at 1 ms since the epoch, after a 500.
    let message = retry_record(0, "s1", 2, 1);
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    let parked = kit.kafka.records().pop().expect("parked");
    assert_eq!(all_headers(&parked, SUBSCRIPTION), ["s1"]);
    assert_eq!(all_headers(&parked, ATTEMPT), ["3"]);
    assert_eq!(all_headers(&parked, LAST_ERROR), ["no answer within 1s"]);
    assert!(
        all_headers(&parked, LAST_STATUS).is_empty(),
        "the old 500 is gone"
    );
    let due = all_headers(&parked, NOT_BEFORE);
    assert_eq!(due.len(), 1);
    assert_ne!(due[0], "1");
    assert_eq!(parked.header(headers::EVENT_ID), Some("e-0"));
    assert_eq!(parked.header("x-github-event"), Some("push"));
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_of_a_retry_carries_no_due_time() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    let message = retry_record(0, "s1", MAX_ATTEMPTS, now_ms());
    assert!(
        kit.handling
            .retry(&message, &CancellationToken::new())
            .await
    );
    let dead = kit.kafka.records().pop().expect("dead letter");
    assert_eq!(dead.topic, DEAD_LETTER);
    assert!(all_headers(&dead, NOT_BEFORE).is_empty());
    assert_eq!(all_headers(&dead, ATTEMPT), [MAX_ATTEMPTS.to_string()]);
    assert_eq!(all_headers(&dead, LAST_STATUS), ["500"]);
}

// --- due times ---

#[tokio::test(start_paused = true)]
async fn wait_until_due_waits_for_the_not_before_time() {
    let kit = kit(vec![]);
    let message = retry_record(0, "s1", 2, now_ms() + 30_000);
    let started = Instant::now();
    assert!(
        kit.handling
            .wait_until_due(&message, &CancellationToken::new())
            .await
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(29)..=Duration::from_secs(30)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_record_already_due_or_without_a_due_time_is_not_waited_for() {
    let kit = kit(vec![]);
    let cancel = CancellationToken::new();
    for message in [retry_record(0, "s1", 2, now_ms() - 5_000), source_record(0)] {
        let started = Instant::now();
        assert!(kit.handling.wait_until_due(&message, &cancel).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn wait_until_due_gives_up_when_cancelled() {
    let kit = kit(vec![]);
    let message = retry_record(0, "s1", 2, now_ms() + 60_000);
    let cancel = CancellationToken::new();
    let handling = kit.handling.clone();
    let waiting = tokio::spawn({
        let cancel = cancel.clone();
        async move { handling.wait_until_due(&message, &cancel).await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    cancel.cancel();
    assert!(!waiting.await.expect("task"));
}

// --- the outbound event ---

#[tokio::test(start_paused = true)]
async fn the_outbound_event_is_read_from_the_record() {
    let kit = kit(vec![]);
    let message = record(
        SOURCE_TOPIC,
        0,
        &[
            (headers::EVENT_ID, b"e-9"),
            (headers::SOURCE, b"github"),
            (headers::CONTENT_TYPE, b"application/x-www-form-urlencoded"),
            (headers::TRACEPARENT, TRACEPARENT.as_bytes()),
            (headers::HOP, b"2"),
            ("x-github-event", b"issues"),
        ],
        b"payload=1",
    );
    let event = kit.handling.outbound(&message);
    assert_eq!(event.event_id, "e-9");
    assert_eq!(event.source, "github");
    assert_eq!(event.event_type.as_deref(), Some("issues"));
    assert_eq!(
        event.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(event.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(event.hops, 2);
    assert_eq!(&event.body[..], b"payload=1");
}

#[tokio::test(start_paused = true)]
async fn a_record_of_an_unknown_source_has_no_event_type() {
    let kit = kit(vec![]);
    let message = record(
        SOURCE_TOPIC,
        0,
        &[(headers::SOURCE, b"elsewhere"), ("x-github-event", b"push")],
        b"{}",
    );
    let event = kit.handling.outbound(&message);
    assert_eq!(
        (event.source.as_str(), event.event_type),
        ("elsewhere", None)
    );
    assert_eq!((event.event_id.as_str(), event.hops), ("", 0));
}

#[tokio::test(start_paused = true)]
async fn the_subscriber_gets_the_record_s_traceparent_without_trace_export() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    let asked = kit.subscribers.deliveries();
    assert_eq!(asked[0].event.traceparent.as_deref(), Some(TRACEPARENT));
}

#[test]
fn a_limiter_is_kept_while_its_rate_stays_and_made_anew_when_it_changes() {
    let kit = kit(vec![]);
    let limited = |per_second: u32| ResolvedSubscription {
        rate_limit: NonZeroU32::new(per_second),
        ..subscription("s1")
    };
    assert!(kit.handling.limiter(&limited(0)).is_none(), "no limit");
    let first = kit.handling.limiter(&limited(5)).expect("limiter");
    let again = kit.handling.limiter(&limited(5)).expect("limiter");
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    let changed = kit.handling.limiter(&limited(10)).expect("limiter");
    assert!(!std::sync::Arc::ptr_eq(&first, &changed));
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_out_of_its_budget_counts_as_a_failure_for_the_breaker() {
    let sub = subscription("s1");
    let kit = kit_with(vec![sub.clone()], 1);
    kit.subscribers.behave(MemoryAnswer::Hang);
    let message = source_record(0);
    let event = kit.handling.outbound(&message);
    let attempted = kit
        .handling
        .first_attempt(&message, &sub, &event, &CancellationToken::new())
        .await;
    assert_eq!(
        attempted,
        Attempted {
            settled: true,
            slow: true
        }
    );
    // Parked unattempted, and the hang opened the circuit: the next one is postponed at once.
    assert!(kit.handling.breakers.is_open("s1"));
    assert_eq!(kit.kafka.records().len(), 1);
    assert!(attempt(&kit, &source_record(1), &sub, 1).await);
    assert_eq!(kit.subscribers.deliveries().len(), 1, "no second request");
}

#[tokio::test(start_paused = true)]
async fn only_a_subscriber_that_did_not_answer_in_time_makes_a_first_attempt_slow() {
    let mut sub = subscription("s1");
    sub.rate_limit = NonZeroU32::new(1);
    let kit = kit(vec![sub.clone()]);
    let timed_out = MemoryAnswer::After(sub.timeout, failed(504));
    kit.subscribers
        .then(MemoryAnswer::Now(DeliveryOutcome::Delivered {
            status: 200,
        }))
        .then(MemoryAnswer::Now(DeliveryOutcome::Delivered {
            status: 200,
        }))
        .then(MemoryAnswer::Now(failed(500)))
        .then(timed_out);
    let cancel = CancellationToken::new();
    let mut slow = Vec::new();
    for offset in 0..4 {
        let message = source_record(offset);
        let event = kit.handling.outbound(&message);
        let attempted = kit
            .handling
            .first_attempt(&message, &sub, &event, &cancel)
            .await;
        assert!(attempted.settled);
        slow.push(attempted.slow);
    }
    // The second waited a second for the rate limit, the third failed at once: neither is a
    // subscriber too slow to answer; the fourth took its whole timeout.
    assert_eq!(slow, [false, false, false, true]);
}
