//! Several deliveries of one subscription in hand within a partition: different keys at once,
//! one key in order, the bound on what is in hand, a handback with several in hand, and a slow
//! subscriber (one probe at a time, the newest attempt's word).

use std::time::Duration;

use rdkafka::message::OwnedMessage;

use super::super::tests::{limits, one_in_hand_one_queued, run_for, start, Running};
use super::super::{LaneLimits, Role};
use crate::control::LAST_ERROR;
use crate::delivery::{DeliveryOutcome, MemoryAnswer};
use crate::test_support::{kit, source_record, subscription, tier, Kit, FIRST_ATTEMPT_BUDGET};

/// Answers 200 after `secs` of the paused clock.
fn delivered_after(secs: u64) -> MemoryAnswer {
    MemoryAnswer::After(
        Duration::from_secs(secs),
        DeliveryOutcome::Delivered { status: 200 },
    )
}

/// Record `offset` of the source topic, its record key `key`.
fn keyed(offset: i64, key: &str) -> OwnedMessage {
    source_record(offset).set_key(Some(key.as_bytes().to_vec()))
}

fn lane_of(kit: &Kit, delivery_concurrency: usize) -> Running {
    let limits = LaneLimits {
        delivery_concurrency,
        ..limits()
    };
    start(kit, Role::Source, limits)
}

#[tokio::test(start_paused = true)]
async fn records_of_different_keys_are_in_hand_at_once_and_stored_in_order() {
    let kit = kit(vec![subscription("s1")]);
    // Record 0 takes 3 s, the others 1 s.
    kit.subscribers.then(delivered_after(3));
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 4);
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c"), (3, "d")] {
        running.send(keyed(offset, key));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-2", "e-3"],
        "every key at once"
    );
    run_for(1).await;
    assert!(
        running.offsets.offsets().is_empty(),
        "1 to 3 are delivered, but 0 is still in hand"
    );
    run_for(2).await;
    assert_eq!(running.offsets.offsets().last(), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn records_of_one_key_go_one_at_a_time_in_order() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 5);
    for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "a")] {
        running.send(keyed(offset, key));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-3"],
        "2 and 4 wait for 0, their key's"
    );
    run_for(1).await;
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-3", "e-2"]
    );
    run_for(1).await;
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-3", "e-2", "e-4"]
    );
    run_for(1).await;
    assert_eq!(running.offsets.offsets().last(), Some(&4));
}

#[tokio::test(start_paused = true)]
async fn one_delivery_in_hand_delivers_a_partition_strictly_in_order() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 1);
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c")] {
        running.send(keyed(offset, key));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0"]);
    run_for(3).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1", "e-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_record_waiting_behind_its_key_takes_a_place_in_hand() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 2);
    // 0 in hand, 1 behind it: 2, of another key, waits for a place.
    for (offset, key) in [(0, "a"), (1, "a"), (2, "b")] {
        running.send(keyed(offset, key));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0"]);
    run_for(1).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1", "e-2"]);
}

#[tokio::test(start_paused = true)]
async fn records_without_a_key_are_in_hand_at_once() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 4);
    for offset in 0..3 {
        running.send(source_record(offset).set_key(None));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1", "e-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_handed_back_lane_finishes_every_delivery_in_hand_and_leaves_the_rest() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(5));
    let running = lane_of(&kit, 4);
    // 0 to 2 in hand, 3 behind 0 (its key's), 4 and 5 queued.
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "d"), (5, "e")] {
        running.send(keyed(offset, key));
    }
    run_for(1).await;
    assert_eq!(running.holds().0, 6);
    running.lane.handback.cancel();
    run_for(1).await;
    assert_eq!(
        running.holds().0,
        3,
        "what was not started is let go at once, not after the deliveries in hand"
    );
    running.task.await.expect("lane");
    assert_eq!(running.offsets.offsets().last(), Some(&2));
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-2"],
        "3 to 5 are the next owner's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_subscriber_with_several_in_hand_still_counts_as_slow() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    let tight = LaneLimits {
        subscription_queue: 1,
        delivery_concurrency: 2,
        ..limits()
    };
    let running = start(&kit, Role::Source, tight);
    // 0 and 1 hang in hand, 2 fills the queue, 3 waits `slow_after` for room and is deferred.
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c"), (3, "d")] {
        running.send(keyed(offset, key));
    }
    run_for(2).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1"]);
    let deferred = kit.kafka.records_in(&tier(1));
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert_eq!(
        deferred[0].header(spillway_core::headers::EVENT_ID),
        Some("e-3")
    );
    assert_eq!(
        deferred[0].header(LAST_ERROR),
        Some("postponed: the subscription is slow")
    );
    running.lane.handback.cancel();
    running.lane.abandon.cancel();
    running.task.await.expect("lane");
    assert!(running.offsets.offsets().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_closed_queue_still_delivers_what_waits_behind_its_key() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(delivered_after(1));
    let running = lane_of(&kit, 4);
    for offset in 0..3 {
        running.send(keyed(offset, "a"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The dispatcher lets the lane go (its records have ended), with 1 and 2 behind 0.
    drop(running.lane);
    running.task.await.expect("lane");
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1", "e-2"]);
    assert_eq!(running.offsets.offsets().last(), Some(&2));
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_gets_one_probe_at_a_time_however_many_places_are_free() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    let running = lane_of(&kit, 4);
    running.send(keyed(0, "a"));
    // 0 runs past its budget and is parked: the subscriber is slow.
    tokio::time::sleep(FIRST_ATTEMPT_BUDGET + Duration::from_millis(200)).await;
    // Nothing else in hand or queued: 1 goes out as a probe.
    running.send(keyed(1, "b"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The probe is still in hand: 2 is deferred, although a place is free.
    running.send(keyed(2, "c"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A first tier's delay after 0 ended a probe would be due, but one is still in hand.
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.send(keyed(3, "d"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-1"]);
    let parked: Vec<_> = kit
        .kafka
        .records_in(&tier(1))
        .iter()
        .map(|r| r.header(LAST_ERROR).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        parked,
        [
            "postponed: in hand past worker.first_attempt_budget",
            "postponed: the subscription is slow",
            "postponed: the subscription is slow"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_older_request_timing_out_after_a_newer_answer_does_not_make_the_subscriber_slow() {
    let kit = kit(vec![subscription("s1")]);
    // Record 0 hangs; every later request is answered at once.
    kit.subscribers.then(MemoryAnswer::Hang);
    let running = lane_of(&kit, 2);
    running.send(keyed(0, "a"));
    tokio::time::sleep(FIRST_ATTEMPT_BUDGET - Duration::from_secs(1)).await;
    running.send(keyed(1, "b"));
    // 0 runs past its budget after 1 was answered: 1, the newer, says the subscriber is fine.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (offset, key) in [(2, "c"), (3, "d")] {
        running.send(keyed(offset, key));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-0", "e-1", "e-2", "e-3"],
        "nothing deferred"
    );
    assert_eq!(
        kit.kafka.records_in(&tier(1)).len(),
        1,
        "only 0, past its budget"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lane_waiting_for_room_when_handed_back_defers_nothing() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    // 0 hangs in hand, 1 fills the queue, and the lane waits for room for 2.
    let running = one_in_hand_one_queued(&kit);
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.lane.handback.cancel();
    // Past `slow_after`: had the queue stayed open, 2 would now be deferred as slow, and the
    // next owner would deliver it again.
    run_for(2).await;
    assert!(kit.kafka.records_in(&tier(1)).is_empty());
    running.lane.abandon.cancel();
    running.task.await.expect("lane");
    assert!(running.offsets.offsets().is_empty());
}
