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

// --- settlement ---

#[tokio::test(start_paused = true)]
async fn a_2xx_settles_with_nothing_parked() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Delivered {
            status: 204,
        }));
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    assert!(kit.kafka.records().is_empty(), "{:?}", kit.kafka.records());
    let asked = kit.subscribers.deliveries();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].subscription.as_str(), asked[0].attempt),
        ("s1", 1)
    );
    assert_eq!(asked[0].event.event_id, "e-7");
    assert_eq!(&asked[0].event.body[..], br#"{"seq":7}"#);
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_parked_in_the_first_tier_with_the_next_attempt_and_its_due_time() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    let before = now_ms();
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    let records = kit.kafka.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let parked = &records[0];
    assert_eq!(parked.topic, tier(1));
    assert_eq!(parked.header(ATTEMPT), Some("2"));
    assert!(due_after(number(parked, NOT_BEFORE), before, 1_000));
    assert_eq!(parked.header(SUBSCRIPTION), Some("s1"));
    assert_eq!(parked.header(LAST_STATUS), Some("500"));
    assert_eq!(parked.header(LAST_ERROR), Some("answered 500"));
    assert_eq!(parked.header(DEAD_REASON), None);
    // The record itself is kept: key, value and the ingress's headers.
    assert_eq!(parked.key.as_deref(), Some(b"key-1".as_slice()));
    assert_eq!(parked.value.as_deref(), Some(br#"{"seq":7}"#.as_slice()));
    assert_eq!(parked.header(headers::EVENT_ID), Some("e-7"));
    assert_eq!(parked.header(headers::SOURCE), Some("github"));
    assert_eq!(parked.header(headers::TRACEPARENT), Some(TRACEPARENT));
    assert_eq!(parked.header("x-github-event"), Some("push"));
}

#[tokio::test(start_paused = true)]
async fn later_failures_wait_in_longer_tiers() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(502)));
    for (n, secs) in [(1, 1), (2, 2), (3, 4)] {
        let before = now_ms();
        assert!(attempt(&kit, &source_record(n.into()), &sub, n).await);
        let parked = kit.kafka.records().pop().expect("parked");
        assert_eq!(parked.topic, tier(secs), "after attempt {n}");
        assert_eq!(parked.header(ATTEMPT), Some((n + 1).to_string().as_str()));
        assert!(due_after(number(&parked, NOT_BEFORE), before, secs * 1_000));
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_s_retry_after_sets_a_later_due_time() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Failed {
            reason: "answered 503".into(),
            status: Some(503),
            retry_after: Some(Duration::from_secs(6)),
        }));
    let before = now_ms();
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    let parked = kit.kafka.records().pop().expect("parked");
    // Six seconds wait in the shortest tier at least that long, exactly its delay: due times
    // within a tier rise with its offsets (M-12).
    assert_eq!(parked.topic, tier(8));
    assert!(due_after(number(&parked, NOT_BEFORE), before, 8_000));
    assert_eq!(parked.header(ATTEMPT), Some("2"));
}

#[tokio::test(start_paused = true)]
async fn one_subscriber_s_long_retry_after_does_not_hold_up_another_s_retries_in_its_tier() {
    let (slow, quick) = (subscription("slow"), subscription("quick"));
    let kit = kit(vec![slow.clone(), quick.clone()]);
    kit.subscribers
        .then(MemoryAnswer::Now(DeliveryOutcome::Failed {
            reason: "answered 429".into(),
            status: Some(429),
            retry_after: Some(Duration::from_secs(7)),
        }))
        .then(MemoryAnswer::Now(failed(500)));
    // The slow one asks for 7 s; the quick one's third attempt fails and waits 4 s.
    assert!(attempt(&kit, &source_record(0), &slow, 2).await);
    assert!(attempt(&kit, &source_record(1), &quick, 3).await);
    // Within a tier, a later record is never due before an earlier one: a lane waiting for
    // its head holds up nothing that is due sooner.
    let records = kit.kafka.records();
    assert_eq!(records.len(), 2, "{records:?}");
    for (i, earlier) in records.iter().enumerate() {
        for later in &records[i + 1..] {
            if later.topic == earlier.topic {
                assert!(
                    number(earlier, NOT_BEFORE) <= number(later, NOT_BEFORE),
                    "{earlier:?} is due after {later:?}"
                );
            }
        }
    }
    assert_eq!(records[0].topic, tier(8), "7 s wait in the 8 s tier");
    assert_eq!(records[1].topic, tier(4));
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_are_dead_lettered_with_the_attempt_count() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    let before = now_ms();
    assert!(attempt(&kit, &source_record(3), &sub, MAX_ATTEMPTS).await);
    let records = kit.kafka.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let dead = &records[0];
    assert_eq!(dead.topic, DEAD_LETTER);
    assert_eq!(dead.header(DEAD_REASON), Some("attempts_exhausted"));
    assert_eq!(
        dead.header(ATTEMPT),
        Some(MAX_ATTEMPTS.to_string().as_str())
    );
    assert!((before..=now_ms()).contains(&number(dead, DEAD_AT)));
    assert_eq!(dead.header(NOT_BEFORE), None);
    assert_eq!(dead.header(LAST_STATUS), Some("500"));
    assert_eq!(dead.header(SUBSCRIPTION), Some("s1"));
    assert_eq!(dead.header(headers::EVENT_ID), Some("e-3"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_target_is_dead_lettered_at_once() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    let reason = "10.0.0.1 is not an allowed address";
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Refused {
            reason: reason.into(),
        }));
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    let records = kit.kafka.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].topic, DEAD_LETTER);
    assert_eq!(records[0].header(DEAD_REASON), Some("target_refused"));
    assert_eq!(records[0].header(ATTEMPT), Some("1"), "no retries");
    assert_eq!(records[0].header(LAST_ERROR), Some(reason));
    assert_eq!(records[0].header(LAST_STATUS), None);
}

#[tokio::test(start_paused = true)]
async fn a_long_failure_reason_is_cut_short() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Failed {
            reason: "é".repeat(2_000),
            status: None,
            retry_after: None,
        }));
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    let parked = kit.kafka.records().pop().expect("parked");
    let kept = parked.header(LAST_ERROR).expect("last error");
    assert_eq!(kept.chars().count(), 512, "cut by characters, not bytes");
}

// --- circuit breaker ---

#[tokio::test(start_paused = true)]
async fn an_open_circuit_postpones_keeping_the_attempt_number() {
    let sub = subscription("s1");
    let kit = kit_with(vec![sub.clone()], 1);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    // The failure opened the circuit for 30 s: the next attempt is not made but postponed.
    let before = now_ms();
    assert!(attempt(&kit, &source_record(1), &sub, 2).await);
    assert_eq!(kit.subscribers.deliveries().len(), 1, "no second delivery");
    let records = kit.kafka.records();
    assert_eq!(records.len(), 2, "{records:?}");
    let postponed = &records[1];
    assert_eq!(postponed.topic, tier(8), "30 s wait in the longest tier");
    assert_eq!(
        postponed.header(ATTEMPT),
        Some("2"),
        "the attempt is not spent"
    );
    assert_eq!(
        postponed.header(LAST_ERROR),
        Some("postponed: circuit open")
    );
    assert!(due_after(number(postponed, NOT_BEFORE), before, 8_000));
    assert!(due_after(number(postponed, POSTPONED_SINCE), before, 0));
}

/// `produced` as read back, postponed since `ago` before now.
fn postponed_since(produced: &spillway_kafka::ProducedRecord, ago: Duration) -> OwnedMessage {
    let mut produced = produced.clone();
    let since = now_ms() - ago.as_millis() as u64;
    produced.headers.retain(|(k, _)| k != POSTPONED_SINCE);
    produced
        .headers
        .push((POSTPONED_SINCE.into(), since.to_string().into_bytes()));
    record_of(&produced)
}

#[tokio::test(start_paused = true)]
async fn a_delivery_postponed_again_keeps_when_it_was_first_postponed_and_waits_longer() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    let cancel = CancellationToken::new();
    let before = now_ms();
    let one_second = Duration::from_secs(1);
    assert!(
        kit.handling
            .postpone(&source_record(0), &sub, 1, one_second, "x", &cancel)
            .await
    );
    let first = kit.kafka.records().pop().expect("parked");
    assert_eq!(first.topic, tier(1));
    let since = number(&first, POSTPONED_SINCE);
    assert!(due_after(since, before, 0));
    // Postponed again: it keeps its first postponement, and waits as long as it has waited.
    assert!(
        kit.handling
            .postpone(&record_of(&first), &sub, 1, one_second, "x", &cancel)
            .await
    );
    let again = kit.kafka.records().pop().expect("parked");
    assert_eq!(number(&again, POSTPONED_SINCE), since);
    for (ago_secs, tier_secs) in [(3, 4), (7, 8), (600, 8)] {
        let waited = postponed_since(&first, Duration::from_secs(ago_secs));
        assert!(
            kit.handling
                .postpone(&waited, &sub, 1, one_second, "x", &cancel)
                .await
        );
        let parked = kit.kafka.records().pop().expect("parked again");
        assert_eq!(parked.topic, tier(tier_secs), "postponed {ago_secs} s ago");
        assert_eq!(parked.header(ATTEMPT), Some("1"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_delivery_postponed_past_the_bound_is_dead_lettered_with_its_reason() {
    let sub = subscription("s1");
    let kit = kit_with(vec![sub.clone()], 1);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    // The circuit is open: its retry is postponed, not attempted.
    let cancel = CancellationToken::new();
    let retry = kit.kafka.records().pop().expect("parked");
    assert!(kit.handling.retry(&record_of(&retry), &cancel).await);
    let postponed = kit.kafka.records().pop().expect("postponed");
    assert_eq!(postponed.topic, tier(8));
    // Still open when it has been postponed for worker.max_postponement: a dead letter.
    let too_long = postponed_since(&postponed, MAX_POSTPONEMENT);
    assert!(kit.handling.retry(&too_long, &cancel).await);
    let dead = kit.kafka.records().pop().expect("dead letter");
    assert_eq!(dead.topic, DEAD_LETTER);
    assert_eq!(dead.header(DEAD_REASON), Some("postponed_too_long"));
    assert_eq!(dead.header(SUBSCRIPTION), Some("s1"));
    assert_eq!(dead.header(ATTEMPT), Some("1"), "attempts made");
    assert_eq!(dead.header(NOT_BEFORE), None);
    assert_eq!(
        kit.subscribers.deliveries().len(),
        1,
        "only the first attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_target_does_not_open_the_circuit() {
    let sub = subscription("s1");
    let kit = kit_with(vec![sub.clone()], 1);
    kit.subscribers
        .then(MemoryAnswer::Now(DeliveryOutcome::Refused {
            reason: "no".into(),
        }));
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    assert!(attempt(&kit, &source_record(1), &sub, 1).await);
    assert_eq!(kit.subscribers.deliveries().len(), 2, "not postponed");
    assert_eq!(kit.kafka.records_in(DEAD_LETTER).len(), 1);
    assert_eq!(kit.kafka.records().len(), 1);
}

// --- parking ---

#[tokio::test(start_paused = true)]
async fn park_keeps_trying_until_kafka_takes_the_record() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    kit.kafka
        .then(MemoryBehaviour::Fail(MemoryFault::QueueFull))
        .then(MemoryBehaviour::Fail(MemoryFault::Refused))
        .then(MemoryBehaviour::TimeOut(Duration::from_secs(5)));
    let started = Instant::now();
    assert!(attempt(&kit, &source_record(0), &sub, 1).await);
    // 1 s, then 2 s between tries (backing off), the time-out's own five, then 4 s.
    assert_eq!(started.elapsed(), Duration::from_secs(12));
    let records = kit.kafka.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].topic, tier(1));
}

#[tokio::test(start_paused = true)]
async fn park_gives_up_only_when_cancelled() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    kit.kafka
        .behave(MemoryBehaviour::Fail(MemoryFault::Refused));
    let cancel = CancellationToken::new();
    let task = attempt_in_task(&kit, source_record(0), sub, &cancel);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!task.is_finished(), "still trying after ten minutes");
    cancel.cancel();
    assert!(!task.await.expect("task"), "not settled");
    assert!(kit.kafka.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_park_whose_acknowledgement_was_lost_is_written_again() {
    // At least once: the record may be in the tier twice; the subscriber dedupes on its id.
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    kit.kafka
        .then(MemoryBehaviour::Fail(MemoryFault::AcknowledgementLost));
    assert!(attempt(&kit, &source_record(4), &sub, 1).await);
    let parked = kit.kafka.records_in(&tier(1));
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].headers, parked[1].headers);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_in_hand_is_abandoned_when_cancelled() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    let cancel = CancellationToken::new();
    let task = attempt_in_task(&kit, source_record(0), sub, &cancel);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished());
    cancel.cancel();
    assert!(!task.await.expect("task"), "handed back, not settled");
    assert!(kit.kafka.records().is_empty(), "nothing parked");
}

// --- postponing ---

#[tokio::test(start_paused = true)]
async fn a_slow_subscription_s_delivery_is_postponed_as_its_first_attempt() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    let before = now_ms();
    let postponed = kit
        .handling
        .postpone(
            &source_record(2),
            &sub,
            1,
            Duration::from_secs(1),
            "the subscription is slow",
            &CancellationToken::new(),
        )
        .await;
    assert!(postponed);
    assert!(kit.subscribers.deliveries().is_empty());
    let parked = kit.kafka.records().pop().expect("parked");
    assert_eq!(parked.topic, tier(1));
    assert_eq!(parked.header(ATTEMPT), Some("1"));
    assert_eq!(
        parked.header(LAST_ERROR),
        Some("postponed: the subscription is slow")
    );
    assert!(due_after(number(&parked, NOT_BEFORE), before, 1_000));
    assert_eq!(parked.header(headers::EVENT_ID), Some("e-2"));
}

#[tokio::test(start_paused = true)]
async fn a_postponement_waits_at_least_as_long_as_its_tier() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    for (wait_ms, topic, due_ms) in [(500, tier(1), 1_000), (3_000, tier(4), 4_000)] {
        let before = now_ms();
        let wait = Duration::from_millis(wait_ms);
        let cancel = CancellationToken::new();
        let message = source_record(0);
        assert!(
            kit.handling
                .postpone(&message, &sub, 1, wait, "x", &cancel)
                .await
        );
        let parked = kit.kafka.records().pop().expect("parked");
        assert_eq!(parked.topic, topic, "waiting {wait_ms} ms");
        assert!(due_after(number(&parked, NOT_BEFORE), before, due_ms));
    }
}

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
