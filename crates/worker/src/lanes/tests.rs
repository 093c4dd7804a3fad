//! Lanes over the memory producer and deliverer, their offsets recorded: which offsets are
//! stored when deliveries settle, when the lane is handed back and when it abandons its work.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use spillway_core::time::now_ms;
use tokio::task::JoinHandle;

use super::charge::{record_charge, RECORD_OVERHEAD_BYTES};
use super::*;
use crate::control::{ATTEMPT, LAST_ERROR};
use crate::delivery::{DeliveryOutcome, MemoryAnswer};
use crate::test_support::{
    kit, record, retry_record, source_record, subscription, tier, Kit, OffsetRecorder,
    FIRST_ATTEMPT_BUDGET, SOURCE_TOPIC,
};
use spillway_kafka::{MemoryBehaviour, MemoryFault};

const DELIVERED: MemoryAnswer = MemoryAnswer::Now(DeliveryOutcome::Delivered { status: 200 });

pub(super) fn limits() -> LaneLimits {
    LaneLimits {
        subscription_queue: 8,
        delivery_concurrency: 4,
        slow_after: Duration::from_secs(1),
        retry_concurrency: 4,
    }
}

/// A lane running in its own task, its offsets recorded.
pub(super) struct Running {
    pub(super) lane: Lane,
    pub(super) task: JoinHandle<()>,
    pub(super) offsets: Arc<OffsetRecorder>,
    memory: RecordMemory,
}

pub(super) fn start(kit: &Kit, role: Role, limits: LaneLimits) -> Running {
    let offsets = Arc::new(OffsetRecorder::default());
    let (context, lane, rx, finished) =
        LaneContext::open(role, offsets.clone(), kit.handling.clone(), limits);
    let ledger = Ledger::new("t.lane".into(), 0);
    let task = tokio::spawn(async move {
        let _finished = finished;
        run_lane(context, rx, ledger).await;
    });
    Running {
        lane,
        task,
        offsets,
        memory: RecordMemory::new(64 << 20),
    }
}

impl Running {
    pub(super) fn send(&self, message: OwnedMessage) {
        let held = Held::new(message, self.lane.load.clone(), &self.memory);
        assert!(self.lane.tx.send(held).is_ok(), "the lane is running");
    }

    /// The records the lane holds, and their bytes in the worker's record memory.
    pub(super) fn holds(&self) -> (usize, usize) {
        (
            self.lane.load.records.load(Ordering::Relaxed),
            self.memory.held(),
        )
    }
}

/// A source lane allowed one delivery in hand and one queued per subscription (the tests of
/// [`super::subscription`] have several in hand), sent records 0, 1 and 2 of one key.
pub(super) fn one_in_hand_one_queued(kit: &Kit) -> Running {
    let tight = LaneLimits {
        subscription_queue: 1,
        delivery_concurrency: 1,
        ..limits()
    };
    let running = start(kit, Role::Source, tight);
    for offset in 0..3 {
        running.send(source_record(offset));
    }
    running
}

/// Lets the lane's tasks run for `secs` of the paused clock.
pub(super) async fn run_for(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

// --- source lanes ---

#[tokio::test(start_paused = true)]
async fn a_source_lane_stores_each_record_once_every_subscription_has_it() {
    let kit = kit(vec![subscription("s1"), subscription("s2")]);
    let running = start(&kit, Role::Source, limits());
    for offset in 0..3 {
        running.send(source_record(offset));
    }
    run_for(1).await;
    assert_eq!(running.offsets.offsets(), [0, 1, 2]);
    assert_eq!(kit.subscribers.deliveries().len(), 6);
    assert_eq!(running.holds(), (0, 0), "nothing held once delivered");
    drop(running.lane);
    running.task.await.expect("lane");
    assert_eq!(running.offsets.offsets(), [0, 1, 2], "nothing stored twice");
}

#[tokio::test(start_paused = true)]
async fn a_record_no_subscription_wants_is_stored_without_a_delivery() {
    let elsewhere = spillway_config::ResolvedSubscription {
        sources: vec!["stripe".into()],
        ..subscription("s1")
    };
    let kit = kit(vec![elsewhere]);
    let running = start(&kit, Role::Source, limits());
    running.send(source_record(0));
    run_for(1).await;
    assert_eq!(running.offsets.offsets(), [0]);
    assert!(kit.subscribers.deliveries().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_record_that_failed_its_schema_is_stored_and_never_delivered() {
    let kit = kit(vec![subscription("s1")]);
    let running = start(&kit, Role::Source, limits());
    let quarantined = record(
        SOURCE_TOPIC,
        0,
        &[
            (spillway_core::headers::EVENT_ID, b"e-0"),
            (spillway_core::headers::SOURCE, b"github"),
            (spillway_core::headers::INVALID_REASON, b"required"),
        ],
        b"{}",
    );
    running.send(quarantined);
    running.send(source_record(1));
    run_for(1).await;
    assert_eq!(running.offsets.offsets(), [0, 1]);
    assert_eq!(
        kit.subscribers.delivered_ids(),
        ["e-1"],
        "only the valid record"
    );
}

#[tokio::test(start_paused = true)]
async fn an_offset_waits_for_the_slowest_subscription_of_its_record() {
    let kit = kit(vec![subscription("s1"), subscription("s2")]);
    // The first delivery (s1 or s2 of record 0) takes 10 s, the others none.
    kit.subscribers.then(MemoryAnswer::After(
        Duration::from_secs(10),
        DeliveryOutcome::Delivered { status: 200 },
    ));
    let running = start(&kit, Role::Source, limits());
    running.send(source_record(0));
    running.send(source_record(1));
    run_for(5).await;
    assert_eq!(
        kit.subscribers.deliveries().len(),
        3,
        "the other queue went on"
    );
    assert!(running.offsets.offsets().is_empty());
    run_for(10).await;
    assert_eq!(running.offsets.offsets(), [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_handed_back_source_lane_finishes_the_delivery_in_hand_and_leaves_the_queued_ones() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.then(DELIVERED).then(MemoryAnswer::After(
        Duration::from_secs(5),
        DeliveryOutcome::Delivered { status: 200 },
    ));
    let running = start(&kit, Role::Source, limits());
    for offset in 0..3 {
        running.send(source_record(offset));
    }
    run_for(1).await;
    running.lane.handback.cancel();
    running.task.await.expect("lane");
    assert_eq!(running.offsets.offsets(), [0, 1]);
    let delivered: Vec<_> = kit
        .subscribers
        .deliveries()
        .into_iter()
        .map(|d| d.event.event_id)
        .collect();
    assert_eq!(delivered, ["e-0", "e-1"], "record 2 is the next owner's");
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_source_lane_stores_nothing_past_the_delivery_it_gave_up() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.then(DELIVERED).then(MemoryAnswer::Hang);
    let running = start(&kit, Role::Source, limits());
    for offset in 0..3 {
        running.send(source_record(offset));
    }
    run_for(1).await;
    running.lane.handback.cancel();
    // Within worker.first_attempt_budget: the delivery is still in hand.
    run_for(10).await;
    assert!(
        !running.task.is_finished(),
        "waiting for the delivery in hand"
    );
    running.lane.abandon.cancel();
    running.task.await.expect("lane");
    assert_eq!(running.offsets.offsets(), [0]);
    assert!(kit.kafka.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_in_hand_past_its_budget_is_parked_and_the_offsets_move_on() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.then(MemoryAnswer::Hang).then(DELIVERED);
    let running = start(&kit, Role::Source, limits());
    for offset in 0..3 {
        running.send(source_record(offset));
    }
    run_for(FIRST_ATTEMPT_BUDGET.as_secs() - 1).await;
    assert!(running.offsets.offsets().is_empty(), "offset 0 is in hand");
    run_for(2).await;
    // Record 0 went to the first tier as a first attempt still to make; 1, queued behind a
    // subscriber known to be slow, was deferred without waiting its turn; 2, the last queued,
    // was attempted (a probe) and delivered.
    let parked = kit.kafka.records();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(parked[0].topic, tier(1));
    assert_eq!(parked[0].header(ATTEMPT), Some("1"));
    assert_eq!(
        parked[0].header(LAST_ERROR),
        Some("postponed: in hand past worker.first_attempt_budget")
    );
    assert_eq!(
        parked[1].header(LAST_ERROR),
        Some("postponed: the subscription is slow")
    );
    assert_eq!(kit.subscribers.delivered_ids(), ["e-0", "e-2"]);
    assert_eq!(running.offsets.offsets().last(), Some(&2));
}

#[tokio::test(start_paused = true)]
async fn after_a_first_attempt_timed_out_what_is_queued_behind_it_is_deferred() {
    let kit = kit(vec![subscription("s1")]);
    // Its timeout (1 s) is shorter than the budget: the attempt fails at the timeout.
    let timed_out = MemoryAnswer::After(
        Duration::from_secs(1),
        DeliveryOutcome::Failed {
            reason: "no answer within 1s".into(),
            status: None,
            retry_after: None,
        },
    );
    kit.subscribers.then(timed_out).then(DELIVERED);
    let running = start(&kit, Role::Source, limits());
    for offset in 0..4 {
        running.send(source_record(offset));
    }
    run_for(2).await;
    // 0 failed after its timeout and was parked as a retry; 1 and 2 were deferred without a
    // request; 3, the last queued, went out as a probe.
    let asked: Vec<String> = kit
        .subscribers
        .deliveries()
        .iter()
        .map(|d| d.event.event_id.clone())
        .collect();
    assert_eq!(asked, ["e-0", "e-3"]);
    assert_eq!(kit.kafka.records_in(&tier(1)).len(), 3);
    assert_eq!(running.offsets.offsets().last(), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscription_is_deferred_to_the_first_tier_as_its_first_attempt() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    // Record 0 hangs in hand, record 1 fills the queue, record 2 waits `slow_after` for room.
    let running = one_in_hand_one_queued(&kit);
    run_for(2).await;
    let deferred = kit.kafka.records_in(&tier(1));
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert_eq!(
        deferred[0].header(spillway_core::headers::EVENT_ID),
        Some("e-2")
    );
    assert_eq!(deferred[0].header(ATTEMPT), Some("1"));
    assert_eq!(
        deferred[0].header(LAST_ERROR),
        Some("postponed: the subscription is slow")
    );
    assert!(
        running.offsets.offsets().is_empty(),
        "record 2 settled, 0 and 1 not"
    );
    running.lane.handback.cancel();
    running.lane.abandon.cancel();
    running.task.await.expect("lane");
    assert!(running.offsets.offsets().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_deferred_delivery_counts_against_its_lane_until_kafka_takes_it() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    // Kafka refuses the deferral a few times (a missing tier, a broker down).
    for _ in 0..3 {
        kit.kafka.then(MemoryBehaviour::Fail(MemoryFault::Refused));
    }
    let running = one_in_hand_one_queued(&kit);
    run_for(3).await;
    // Record 0 in hand, 1 queued, 2 being deferred: all three still count (M-2).
    let (records, bytes) = running.holds();
    assert_eq!(records, 3);
    assert!(bytes > 3 * 2 * br#"{"seq":0}"#.len(), "{bytes}");
    run_for(10).await;
    assert_eq!(kit.kafka.records_in(&tier(1)).len(), 1, "deferred at last");
    assert_eq!(running.holds().0, 2, "the deferred record let go");
    running.lane.handback.cancel();
    running.lane.abandon.cancel();
    let (load, memory) = (running.lane.load.clone(), running.memory.clone());
    running.task.await.expect("lane");
    assert_eq!(load.records.load(Ordering::Relaxed), 0);
    assert_eq!(memory.held(), 0, "abandoned work is let go too");
}

#[test]
fn a_lane_pauses_over_its_records_its_bytes_the_worker_s_memory_or_a_head_not_due() {
    let bounds = Bounds {
        records: 100,
        lane_bytes: 1_000,
        worker_bytes: 8_000,
    };
    let load = |records: usize, bytes: usize, waiting: bool| LaneLoad {
        records: records.into(),
        bytes: bytes.into(),
        waiting: waiting.into(),
    };
    assert!(!bounds.over(&load(100, 1_000, false), 8_000));
    assert!(bounds.over(&load(101, 0, false), 0), "records");
    assert!(bounds.over(&load(1, 1_001, false), 0), "the lane's bytes");
    assert!(
        bounds.over(&load(1, 10, false), 8_001),
        "the worker's bytes"
    );
    assert!(
        !bounds.over(&load(1, 10, true), 0),
        "a retry head not due, alone"
    );
    let behind = WAITING_SLACK_RECORDS + 1;
    assert!(bounds.over(&load(behind, 10, true), 0), "records behind it");
    assert!(
        bounds.over(&load(2, 16, true), 0),
        "bytes behind it: 8_000 / 512"
    );
    assert!(
        !bounds.over(&load(behind, 10, false), 0),
        "not waiting: its backlog"
    );
    // Resumed at half of each.
    assert!(bounds.worked_down(&load(50, 500, false), 4_000));
    assert!(!bounds.worked_down(&load(51, 0, false), 0));
    assert!(!bounds.worked_down(&load(0, 501, false), 0));
    assert!(!bounds.worked_down(&load(0, 0, false), 4_001));
    assert!(!bounds.worked_down(&load(0, 0, true), 0));
}

#[tokio::test(start_paused = true)]
async fn a_record_is_charged_twice_its_body_its_key_its_headers_and_an_overhead() {
    let kit = kit(vec![subscription("s1")]);
    let running = start(&kit, Role::Source, limits());
    let forwarded = vec![b'x'; 4000];
    running.send(record(
        SOURCE_TOPIC,
        0,
        &[("x-forwarded", &forwarded), ("x-small", b"abc")],
        b"0123456789",
    ));
    // Charged when the dispatcher hands it over, before the lane has run: its key ("key-1"),
    // both headers' names and values, the body twice (record and event), the overhead.
    let expected = 5 + (11 + 4000) + (7 + 3) + 2 * 10 + RECORD_OVERHEAD_BYTES;
    assert_eq!(running.holds(), (1, expected));
}

/// Pausing a partition drops what librdkafka has read ahead for it, so the defaults must let a
/// lane take one whole fetch (librdkafka's `max.partition.fetch.bytes`, 1 MiB) of the records
/// the ingress writes with a key (dedupe or a partition key), from empty bodies up, without
/// pausing. (Keyless records with bodies under about 40 bytes are smaller, and a fetch of them
/// pauses at the record bound.) With the old bound of 256 records, a worker on a backlog
/// fetched each record many times over and delivered about 900 a second (2026-12-04,
/// `spillway-loadgen worker`).
#[test]
fn with_the_defaults_one_whole_fetch_does_not_pause_a_partition() {
    const FETCH: usize = 1 << 20;
    // The least a keyed record of the ingress carries besides its body: a 36-byte key, the
    // id, source, signature and trace headers, and Kafka's own framing.
    const KEY_AND_HEADERS: usize = 260;
    let config = spillway_config::WorkerConfig::default();
    let memory = RecordMemory::new(config.max_record_memory);
    let bounds = Bounds::new(config.partition_backlog, &memory);
    for payload in [0, 256, 1024, 64 << 10, FETCH - KEY_AND_HEADERS] {
        let records = FETCH / (payload + KEY_AND_HEADERS);
        let load = LaneLoad {
            records: records.into(),
            bytes: (records * record_charge(payload, KEY_AND_HEADERS)).into(),
            waiting: false.into(),
        };
        let held = load.bytes.load(Ordering::Relaxed);
        assert!(
            !bounds.over(&load, held),
            "{records} records of {payload} bytes pause the partition"
        );
    }
}

// --- retry lanes ---

#[tokio::test(start_paused = true)]
async fn a_retry_lane_waiting_for_its_head_says_so_until_it_is_due() {
    let kit = kit(vec![subscription("s1")]);
    let running = start(&kit, Role::Retry, limits());
    running.send(retry_record(0, "s1", 2, now_ms() + 3_000));
    run_for(1).await;
    assert!(running.lane.load.waiting.load(Ordering::Relaxed));
    run_for(3).await;
    assert!(!running.lane.load.waiting.load(Ordering::Relaxed));
    assert_eq!(kit.subscribers.deliveries().len(), 1);
    assert_eq!(running.holds(), (0, 0));
    // A record already due is not waited for: its partition is never paused for it.
    running.send(retry_record(1, "s1", 2, 0));
    tokio::task::yield_now().await;
    assert!(!running.lane.load.waiting.load(Ordering::Relaxed));
}

#[tokio::test(start_paused = true)]
async fn a_retry_lane_waits_until_its_head_record_is_due() {
    let kit = kit(vec![subscription("s1")]);
    let running = start(&kit, Role::Retry, limits());
    running.send(retry_record(0, "s1", 2, now_ms() + 3_000));
    run_for(2).await;
    assert!(kit.subscribers.deliveries().is_empty(), "not due yet");
    run_for(2).await;
    let asked = kit.subscribers.deliveries();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].attempt, 2);
    assert_eq!(running.offsets.offsets(), [0]);
}

#[tokio::test(start_paused = true)]
async fn retries_settling_out_of_order_are_stored_in_order() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.then(MemoryAnswer::After(
        Duration::from_secs(10),
        DeliveryOutcome::Delivered { status: 200 },
    ));
    let running = start(&kit, Role::Retry, limits());
    running.send(retry_record(0, "s1", 2, 0));
    running.send(retry_record(1, "s1", 2, 0));
    run_for(1).await;
    assert_eq!(
        kit.subscribers.deliveries().len(),
        2,
        "delivered concurrently"
    );
    assert!(running.offsets.offsets().is_empty(), "1 settled, 0 not yet");
    run_for(10).await;
    assert_eq!(running.offsets.offsets(), [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn retry_concurrency_bounds_the_retries_in_hand() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::After(
        Duration::from_secs(5),
        DeliveryOutcome::Delivered { status: 200 },
    ));
    let one_at_a_time = LaneLimits {
        retry_concurrency: 1,
        ..limits()
    };
    let running = start(&kit, Role::Retry, one_at_a_time);
    running.send(retry_record(0, "s1", 2, 0));
    running.send(retry_record(1, "s1", 2, 0));
    run_for(1).await;
    assert_eq!(kit.subscribers.deliveries().len(), 1);
    run_for(5).await;
    assert_eq!(kit.subscribers.deliveries().len(), 2);
    assert_eq!(running.offsets.offsets(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_handed_back_retry_lane_leaves_what_it_has_not_started() {
    let kit = kit(vec![subscription("s1")]);
    kit.subscribers.behave(MemoryAnswer::Hang);
    let running = start(&kit, Role::Retry, limits());
    running.send(retry_record(0, "s1", 2, 0));
    running.send(retry_record(1, "s1", 2, now_ms() + 60_000));
    run_for(1).await;
    running.lane.handback.cancel();
    run_for(1).await;
    assert!(!running.task.is_finished(), "record 0 is still in hand");
    running.lane.abandon.cancel();
    running.task.await.expect("lane");
    assert_eq!(
        kit.subscribers.deliveries().len(),
        1,
        "record 1 never started"
    );
    assert!(running.offsets.offsets().is_empty());
    assert!(kit.kafka.records().is_empty());
}

// --- draining ---

#[test]
fn draining_finished_lanes_hands_them_back_and_abandons_nothing() {
    let kit = kit(vec![]);
    let offsets = Arc::new(OffsetRecorder::default());
    let (context, lane, _rx, finished) =
        LaneContext::open(Role::Source, offsets, kit.handling.clone(), limits());
    drop(finished);
    assert_eq!(drain_lanes(vec![lane], Duration::ZERO), 0);
    assert!(context.handback.is_cancelled());
    assert!(!context.abandon.is_cancelled());
}

#[test]
fn a_lane_still_busy_at_the_drain_bound_abandons_its_work() {
    let kit = kit(vec![]);
    let offsets = Arc::new(OffsetRecorder::default());
    let (context, lane, _rx, finished) =
        LaneContext::open(Role::Retry, offsets, kit.handling.clone(), limits());
    // The lane finishes only once told to abandon its deliveries.
    let abandon = context.abandon.clone();
    let busy = std::thread::spawn(move || {
        while !abandon.is_cancelled() {
            std::thread::yield_now();
        }
        drop(finished);
    });
    assert_eq!(drain_lanes(vec![lane], Duration::ZERO), 1);
    assert!(context.handback.is_cancelled() && context.abandon.is_cancelled());
    busy.join().expect("lane thread");
}
