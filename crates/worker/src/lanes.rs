//! One lane (a task) per partition, fed by a dispatcher that never blocks on it, and drained
//! when its partition is revoked or the worker stops.
//!
//! Partitions progress in parallel and the records of one key, which share a partition, are
//! handled in order. Memory is bounded in records and in bytes (H-6): a record counts against
//! its lane from the moment it is dispatched until the lane is done with it (delivered, or
//! parked in a retry tier; deferred and parked work included, M-2), and a lane holding more
//! than `worker.partition_backlog` records or its share of `worker.max_record_memory` bytes,
//! or a worker holding all of that memory, has its partition paused until it has worked it
//! down to half. A retry lane waiting for a head record that is not due yet has its partition
//! paused once it holds more than a little behind that head, so it holds its head and little
//! more while it waits, however long the wait.
//! What a lane does with its records is in [`source`] (first attempts, fanned out to
//! subscriptions, each delivering its share in [`subscription`]) and [`retry`] (due retry
//! records); what a record counts against them is in [`charge`].

mod charge;
mod retry;
mod source;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handling::Handling;
use crate::ledger::{Ledger, OffsetStore};
pub(crate) use charge::RecordMemory;
use charge::{Held, LaneLoad};

/// Which records a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Source topics: first attempts, fanned out to every matching subscription.
    Source,
    /// Retry tiers: one subscription per record, once it is due.
    Retry,
}

/// The worker's knobs that lanes apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneLimits {
    pub(crate) subscription_queue: usize,
    pub(crate) delivery_concurrency: usize,
    pub(crate) slow_after: Duration,
    pub(crate) retry_concurrency: usize,
}

/// A partition's lane as the dispatcher and the rebalance callback see it.
pub(crate) struct Lane {
    tx: mpsc::UnboundedSender<Held>,
    load: Arc<LaneLoad>,
    /// Cancelled when the partition is revoked or the worker stops: the lane starts nothing
    /// new and hands back what it has not started.
    handback: CancellationToken,
    /// Cancelled when the drain bound has passed: deliveries in hand are abandoned.
    abandon: CancellationToken,
    /// Disconnected once the lane and its tasks have finished and stored their offsets.
    finished: std::sync::mpsc::Receiver<()>,
}

/// The lanes of one consumer, shared by its dispatcher and its rebalance callback.
pub(crate) type Lanes = Arc<std::sync::Mutex<HashMap<(String, i32), Lane>>>;

pub(crate) type WorkerConsumer = StreamConsumer<DrainingContext>;

/// The consumer's context: when partitions are revoked, their lanes finish what they have in
/// hand (within `drain`) and their offsets are committed before the partitions move on, so
/// the next owner neither loses nor repeats that work.
pub(crate) struct DrainingContext {
    lanes: Lanes,
    drain: Duration,
}

// === impl DrainingContext ===

impl DrainingContext {
    pub(crate) fn new(lanes: Lanes, drain: Duration) -> Self {
        Self { lanes, drain }
    }
}

impl ClientContext for DrainingContext {}

impl ConsumerContext for DrainingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let lanes: Vec<Lane> = {
            let Ok(mut map) = self.lanes.lock() else {
                return;
            };
            revoked
                .elements()
                .iter()
                .filter_map(|e| map.remove(&(e.topic().to_owned(), e.partition())))
                .collect()
        };
        if lanes.is_empty() {
            return;
        }
        let count = lanes.len();
        // This runs inside the consumer's poll on a runtime thread: let the runtime move its
        // other tasks (the lanes among them) elsewhere while this one waits.
        let abandoned = match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| drain_lanes(lanes, self.drain))
            }
            _ => drain_lanes(lanes, self.drain),
        };
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "nothing committed on revoke");
        }
        tracing::info!(
            partitions = count,
            abandoned,
            "partitions revoked: in-hand work drained"
        );
    }
}

/// Closes `lanes` and waits up to `bound` for them to finish their deliveries in hand; the
/// lanes still busy then abandon theirs. Returns how many lanes had to abandon work.
fn drain_lanes(lanes: Vec<Lane>, bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    let waiting: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            lane.handback.cancel();
            (lane.abandon, lane.finished)
        })
        .collect();
    let mut abandoned = 0;
    for (abandon, finished) in &waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            abandon.cancel();
            abandoned += 1;
        }
    }
    // An abandoning lane stops at once; its settled offsets are still worth storing.
    for (_, finished) in &waiting {
        let _ = finished.recv_timeout(Duration::from_secs(1));
    }
    abandoned
}

/// The dispatcher of one consumer: hands each record to its partition's lane (made on first
/// use), pauses a partition whose lane falls behind and resumes it once drained to half. On
/// `stop` it drains every lane as a revocation would and commits what was stored.
#[allow(clippy::too_many_arguments)] // the dispatcher's whole context, passed once
pub(crate) async fn consume(
    consumer: Arc<WorkerConsumer>,
    lanes: Lanes,
    role: Role,
    handling: Arc<Handling>,
    stop: CancellationToken,
    backlog: usize,
    limits: LaneLimits,
    memory: RecordMemory,
) {
    let mut paused: HashSet<(String, i32)> = HashSet::new();
    let tracker = TaskTracker::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let bounds = Bounds::new(backlog, &memory);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                let Ok(map) = lanes.lock() else { break };
                let held = memory.held();
                paused.retain(|id| {
                    let drained = map.get(id).is_none_or(|l| bounds.worked_down(&l.load, held));
                    if drained {
                        let _ = consumer.resume(&partition_list(id));
                    }
                    !drained
                });
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(error = %e, ?role, "kafka consumer error");
                        continue;
                    }
                };
                let id = (message.topic().to_owned(), message.partition());
                let Ok(mut map) = lanes.lock() else { break };
                let lane = map.entry(id.clone()).or_insert_with(|| {
                    // A partition assigned again starts unpaused, whatever its old lane was.
                    paused.remove(&id);
                    let (context, lane, rx, finished_tx) = LaneContext::open(role, consumer.clone(), handling.clone(), limits);
                    let ledger = Ledger::new(id.0.clone(), id.1);
                    tracker.spawn(async move {
                        let _finished = finished_tx;
                        run_lane(context, rx, ledger).await;
                    });
                    lane
                });
                if lane.tx.send(Held::new(message, lane.load.clone(), &memory)).is_err() {
                    tracing::error!(topic = %id.0, partition = id.1, "lane stopped; the partition is re-read after a restart");
                }
                if bounds.over(&lane.load, memory.held()) && paused.insert(id.clone()) {
                    let _ = consumer.pause(&partition_list(&id));
                }
            }
        }
    }
    // Stopping drains every lane as a revocation would.
    let all: Vec<Lane> = lanes
        .lock()
        .map(|mut map| map.drain().map(|(_, lane)| lane).collect())
        .unwrap_or_default();
    let drain = consumer.context().drain;
    let abandoned = tokio::task::spawn_blocking(move || drain_lanes(all, drain))
        .await
        .unwrap_or_default();
    tracing::info!(?role, abandoned, "in-hand work drained");
    tracker.close();
    tracker.wait().await;
    let committing = consumer.clone();
    // Nothing stored yet is not an error worth reporting.
    let _ = tokio::task::spawn_blocking(move || committing.commit_consumer_state(CommitMode::Sync))
        .await;
}

/// Records a retry lane waiting for its head may hold behind it before its partition is
/// paused (or 1/[`WAITING_SLACK_SHARE`] of the worker's record memory, so that the waiting
/// lanes of every tier and partition together stay well under half of it, where the source
/// partitions would pause too). Not zero: every pause makes the consumer fetch again
/// from the lane's position, which costs a round trip, and tansu 0.6 answers a fetch from
/// inside a record batch without the rest of that batch (docs/development.md), so pausing on
/// every record behind a waiting head would make that bug an everyday event in tests.
const WAITING_SLACK_RECORDS: usize = 64;
const WAITING_SLACK_SHARE: usize = 512;

/// When a partition is paused, and when it resumes.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    records: usize,
    lane_bytes: usize,
    worker_bytes: usize,
}

impl Bounds {
    fn new(records: usize, memory: &RecordMemory) -> Self {
        Self {
            records,
            lane_bytes: memory.lane_share(),
            worker_bytes: memory.limit,
        }
    }

    /// Whether a lane holding `load`, in a worker holding `held` bytes, must pause: over
    /// its records or its bytes, the worker over its memory, or (a retry lane waiting for a
    /// head that is not due) holding more than a little behind its head.
    fn over(&self, load: &LaneLoad, held: usize) -> bool {
        let (records, bytes) = (
            load.records.load(Ordering::Relaxed),
            load.bytes.load(Ordering::Relaxed),
        );
        let waiting = load.waiting.load(Ordering::Relaxed)
            && (records > WAITING_SLACK_RECORDS || bytes > self.worker_bytes / WAITING_SLACK_SHARE);
        records > self.records || bytes > self.lane_bytes || held > self.worker_bytes || waiting
    }

    /// Whether a paused lane has worked its load down to half (and is not waiting).
    fn worked_down(&self, load: &LaneLoad, held: usize) -> bool {
        load.records.load(Ordering::Relaxed) <= self.records / 2
            && load.bytes.load(Ordering::Relaxed) <= self.lane_bytes / 2
            && held <= self.worker_bytes / 2
            && !load.waiting.load(Ordering::Relaxed)
    }
}

fn partition_list((topic, partition): &(String, i32)) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    list
}

/// A lane: the records of one partition, in order. Once handed back, it waits for the
/// deliveries it started (or their abandonment), then stores the offsets that settled.
async fn run_lane(lane: LaneContext, rx: mpsc::UnboundedReceiver<Held>, mut ledger: Ledger) {
    let (offsets, tracker) = (lane.offsets.clone(), lane.tracker.clone());
    match lane.role {
        Role::Source => source::run_source_lane(lane, rx, &mut ledger).await,
        Role::Retry => retry::run_retry_lane(lane, rx, &mut ledger).await,
    }
    tracker.close();
    tracker.wait().await;
    ledger.store_settled(offsets.as_ref());
}

/// What a lane and its tasks share.
#[derive(Clone)]
struct LaneContext {
    role: Role,
    load: Arc<LaneLoad>,
    /// Where settled offsets are stored: the consumer (a recorder in tests).
    offsets: Arc<dyn OffsetStore + Send + Sync>,
    handling: Arc<Handling>,
    /// Start nothing new: the partition is revoked or the worker stops.
    handback: CancellationToken,
    /// Give up the deliveries in hand: the drain bound has passed.
    abandon: CancellationToken,
    /// The lane's own tasks (subscription queues, concurrent retries, postponements).
    tracker: TaskTracker,
    limits: LaneLimits,
}

// === impl LaneContext ===

impl LaneContext {
    /// A new lane: its context, the handle the dispatcher keeps, the receiving end of its
    /// records and the sender whose drop tells the drain that the lane has finished.
    fn open(
        role: Role,
        offsets: Arc<dyn OffsetStore + Send + Sync>,
        handling: Arc<Handling>,
        limits: LaneLimits,
    ) -> (
        Self,
        Lane,
        mpsc::UnboundedReceiver<Held>,
        std::sync::mpsc::SyncSender<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (finished_tx, finished) = std::sync::mpsc::sync_channel(0);
        let context = Self {
            role,
            load: Arc::default(),
            offsets,
            handling,
            handback: CancellationToken::new(),
            abandon: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limits,
        };
        let lane = Lane {
            tx,
            load: context.load.clone(),
            handback: context.handback.clone(),
            abandon: context.abandon.clone(),
            finished,
        };
        (context, lane, rx, finished_tx)
    }
}

#[cfg(test)]
mod tests;
