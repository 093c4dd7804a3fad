//! Settlement: what an attempt leaves behind (nothing, a retry in its tier, a dead letter), the
//! circuit breaker's postponements and their bound, and the park that writes them.

use super::*;

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
