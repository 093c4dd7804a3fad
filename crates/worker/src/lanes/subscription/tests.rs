//! Several deliveries of one subscription in hand within a partition: different keys at once,
//! one key in order, the bound on what is in hand, and a handback with several in hand.

use std::time::Duration;

use rdkafka::message::OwnedMessage;

use super::super::tests::{limits, run_for, start, Running};
use super::super::{LaneLimits, Role};
use crate::control::LAST_ERROR;
use crate::delivery::{DeliveryOutcome, MemoryAnswer};
use crate::test_support::{kit, source_record, subscription, tier, Kit};

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
    let running = lane_of(&kit, 4);
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
    let running = lane_of(&kit, 3);
    // 0 to 2 in hand, 3 behind 0 (its key's), 4 and 5 queued.
    for (offset, key) in [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "d"), (5, "e")] {
        running.send(keyed(offset, key));
    }
    run_for(1).await;
    running.lane.handback.cancel();
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
