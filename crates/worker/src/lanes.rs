//! One lane (a task) per partition, fed by a dispatcher that never blocks on it, and drained
//! when its partition is revoked or the worker stops.
//!
//! Partitions progress in parallel and the records of one key, which share a partition, are
//! handled in order. A lane whose backlog passes `worker.partition_backlog` has its partition
//! paused until it drains to half, so memory stays bounded and the consumer keeps polling (a
//! retry lane may wait minutes for its head record). What a lane does with its records is in
//! [`source`] (first attempts, fanned out to subscriptions) and [`retry`] (due retry records).

mod retry;
mod source;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handling::Handling;
use crate::ledger::{Ledger, OffsetStore};

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
    pub(crate) slow_after: Duration,
    pub(crate) retry_concurrency: usize,
}

/// A partition's lane as the dispatcher and the rebalance callback see it.
pub(crate) struct Lane {
    tx: mpsc::UnboundedSender<OwnedMessage>,
    queued: Arc<AtomicUsize>,
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
pub(crate) async fn consume(
    consumer: Arc<WorkerConsumer>,
    lanes: Lanes,
    role: Role,
    handling: Arc<Handling>,
    stop: CancellationToken,
    backlog: usize,
    limits: LaneLimits,
) {
    let mut paused: HashSet<(String, i32)> = HashSet::new();
    let tracker = TaskTracker::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                let Ok(map) = lanes.lock() else { break };
                paused.retain(|id| {
                    let drained = map.get(id).is_none_or(|l| l.queued.load(Ordering::Relaxed) <= backlog / 2);
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
                    let (context, lane, rx, finished_tx) = LaneContext::open(role, consumer.clone(), handling.clone(), limits);
                    let ledger = Ledger::new(id.0.clone(), id.1);
                    tracker.spawn(async move {
                        let _finished = finished_tx;
                        run_lane(context, rx, ledger).await;
                    });
                    lane
                });
                lane.queued.fetch_add(1, Ordering::Relaxed);
                if lane.tx.send(message).is_err() {
                    tracing::error!(topic = %id.0, partition = id.1, "lane stopped; the partition is re-read after a restart");
                }
                if lane.queued.load(Ordering::Relaxed) > backlog && paused.insert(id.clone()) {
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

fn partition_list((topic, partition): &(String, i32)) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    list
}

/// A lane: the records of one partition, in order. Once handed back, it waits for the
/// deliveries it started (or their abandonment), then stores the offsets that settled.
async fn run_lane(
    lane: LaneContext,
    rx: mpsc::UnboundedReceiver<OwnedMessage>,
    mut ledger: Ledger,
) {
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
    queued: Arc<AtomicUsize>,
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
        mpsc::UnboundedReceiver<OwnedMessage>,
        std::sync::mpsc::SyncSender<()>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (finished_tx, finished) = std::sync::mpsc::sync_channel(0);
        let context = Self {
            role,
            queued: Arc::new(AtomicUsize::new(0)),
            offsets,
            handling,
            handback: CancellationToken::new(),
            abandon: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limits,
        };
        let lane = Lane {
            tx,
            queued: context.queued.clone(),
            handback: context.handback.clone(),
            abandon: context.abandon.clone(),
            finished,
        };
        (context, lane, rx, finished_tx)
    }
}

#[cfg(test)]
mod tests;
