//! The attempt records: one per attempt, on the attempts topic, keyed by the event id, saying
//! how the attempt went and where the delivery went next.

use spillway_core::attempt::{AttemptNext, AttemptOutcome, AttemptRecord};

use std::sync::Arc;

use spillway_kafka::EventProducer;

use super::*;
use crate::attempts::AttemptLog;
use crate::test_support::ATTEMPTS;

/// The attempt records written so far, once their tasks have run.
async fn recorded(kit: &Kit) -> Vec<AttemptRecord> {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    kit.attempts
        .records_in(ATTEMPTS)
        .iter()
        .map(|r| {
            let record =
                AttemptRecord::from_json(r.value.as_deref().unwrap_or_default()).expect("json");
            assert_eq!(
                r.key.as_deref(),
                Some(record.event_id.as_bytes()),
                "keyed by the event id"
            );
            record
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_delivered_attempt_is_recorded_as_done_with_its_status_and_latency() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::After(
        Duration::from_millis(40),
        DeliveryOutcome::Delivered { status: 204 },
    ));
    let before = now_ms();
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    let records = recorded(&kit).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (
            r.event_id.as_str(),
            r.source.as_str(),
            r.subscription.as_str()
        ),
        ("e-7", "github", "s1")
    );
    assert_eq!(
        (r.attempt, r.outcome, r.http_status),
        (1, AttemptOutcome::Delivered, Some(204))
    );
    assert_eq!(r.latency_ms, 40);
    assert!((before..=now_ms()).contains(&r.at_ms));
    assert_eq!(
        (r.error.as_deref(), &r.next, r.test),
        (None, &AttemptNext::Done, false)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_recorded_with_its_error_and_the_retry_it_was_parked_as() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(503)));
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    let parked = kit.kafka.records();
    let records = recorded(&kit).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (r.outcome, r.http_status),
        (AttemptOutcome::Failed, Some(503))
    );
    assert_eq!(r.error.as_deref(), Some("answered 503"));
    let due = number(&parked[0], NOT_BEFORE);
    assert_eq!(
        r.next,
        AttemptNext::Retry { due_ms: due },
        "the due time it was parked with"
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_attempt_is_recorded_as_dead_lettered_with_the_reason() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    assert!(attempt(&kit, &source_record(7), &sub, MAX_ATTEMPTS).await);
    kit.subscribers
        .behave(MemoryAnswer::Now(DeliveryOutcome::Refused {
            reason: "10.0.0.1 is not an allowed address".into(),
        }));
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    let records = recorded(&kit).await;
    let next: Vec<(u32, AttemptOutcome, &AttemptNext)> = records
        .iter()
        .map(|r| (r.attempt, r.outcome, &r.next))
        .collect();
    let dead = |reason: &str| AttemptNext::DeadLetter {
        reason: reason.into(),
    };
    assert_eq!(
        next,
        [
            (
                MAX_ATTEMPTS,
                AttemptOutcome::Failed,
                &dead("attempts_exhausted")
            ),
            (1, AttemptOutcome::Refused, &dead("target_refused")),
        ]
    );
    assert_eq!(
        records[1].error.as_deref(),
        Some("10.0.0.1 is not an allowed address")
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_kafka_would_not_park_is_recorded_as_abandoned_when_the_worker_stops() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    kit.subscribers.behave(MemoryAnswer::Now(failed(500)));
    kit.kafka
        .behave(MemoryBehaviour::Fail(MemoryFault::Unreachable));
    let cancel = CancellationToken::new();
    let task = attempt_in_task(&kit, source_record(7), sub, &cancel);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cancel.cancel();
    assert!(!task.await.expect("joins"), "not settled");
    let records = recorded(&kit).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].next, AttemptNext::Abandoned);
}

#[tokio::test(start_paused = true)]
async fn no_record_is_written_when_attempts_are_not_recorded() {
    let sub = subscription("s1");
    let mut kit = kit(vec![sub.clone()]);
    let handling = Arc::get_mut(&mut kit.handling).expect("sole owner");
    handling.attempts = AttemptLog::new(
        None,
        EventProducer::memory(kit.attempts.clone()),
        handling.metrics.clone(),
    );
    assert!(attempt(&kit, &source_record(7), &sub, 1).await);
    assert!(recorded(&kit).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_postponement_is_recorded_without_a_request_and_with_its_due_time() {
    let sub = subscription("s1");
    let kit = kit(vec![sub.clone()]);
    let cancel = CancellationToken::new();
    assert!(
        kit.handling
            .postpone(
                &source_record(7),
                &sub,
                3,
                Duration::from_secs(1),
                "circuit open",
                &cancel
            )
            .await
    );
    let parked = kit.kafka.records();
    let records = recorded(&kit).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (r.event_id.as_str(), r.attempt, r.outcome),
        ("e-7", 3, AttemptOutcome::Postponed)
    );
    assert_eq!((r.http_status, r.latency_ms), (None, 0));
    assert_eq!(r.error.as_deref(), Some("postponed: circuit open"));
    assert_eq!(
        r.next,
        AttemptNext::Retry {
            due_ms: number(&parked[0], NOT_BEFORE)
        }
    );
}
