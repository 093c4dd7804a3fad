//! One subscription's share of a source partition: up to `worker.delivery_concurrency` of its
//! deliveries in hand at once, those of one record key one at a time and in the partition's
//! order, so a partition's throughput is not one round trip at a time while each key keeps
//! its order.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::Message;
use spillway_config::ResolvedSubscription;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Held, LaneContext};
use crate::delivery::OutboundEvent;
use crate::handling::Handling;
use crate::ledger::Progress;

/// One delivery of one record to one subscription.
pub(super) struct Job {
    /// Counted against the lane until the last of the record's deliveries lets it go.
    pub(super) message: Arc<Held>,
    pub(super) event: Arc<OutboundEvent>,
    /// As it stood when the record was read: a later change applies to later records.
    pub(super) subscription: Arc<ResolvedSubscription>,
    pub(super) progress: Arc<Progress>,
}

/// Parks a slow subscription's delivery in the first retry tier, still as its first attempt;
/// false when cancelled first.
pub(super) async fn park_as_slow(
    handling: &Handling,
    job: &Job,
    abandon: &CancellationToken,
) -> bool {
    let wait = handling.tiers.first().map(|t| t.delay).unwrap_or_default();
    handling
        .postpone(
            &job.message,
            &job.subscription,
            1,
            wait,
            "the subscription is slow",
            abandon,
        )
        .await
}

/// What a job in hand came to.
struct Finished {
    job: Job,
    key: Option<u64>,
    /// Delivered, or parked with Kafka's acknowledgement; false when abandoned first.
    settled: bool,
    /// When a request went out (not for a deferred job): when it started, and whether the
    /// subscriber was slow.
    attempt: Option<(Instant, bool)>,
}

/// What the task shares with the deliveries it has in hand.
struct Shared {
    handling: Arc<Handling>,
    abandon: CancellationToken,
    /// Hashes record keys. Two keys with one hash only wait for each other; they never
    /// change order, so a hash stands in for the key without copying it.
    keys: RandomState,
}

/// Whether the next delivery goes out or is deferred. A subscriber is slow when the newest
/// attempt that has ended (the one started last) ran out of `worker.first_attempt_budget` or
/// timed out: what is queued behind it is then deferred, not each given the whole wait in turn. An older request that times out after a newer one
/// was answered says nothing new.
/// A probe goes out when nothing else is in hand or queued, or a first tier's delay after the
/// last attempt ended while something is (a backlog read after a restart keeps it full); and
/// only one at a time, not a request in every place in hand.
struct Pace {
    behind: bool,
    /// When the attempt that last set `behind` started.
    behind_from: Instant,
    last_attempt: Instant,
    probe_every: Duration,
    /// Requests in hand (deliveries being deferred are not).
    attempts: usize,
}

impl Pace {
    /// Whether the delivery about to start is deferred rather than attempted. `others`:
    /// deliveries in hand or queued besides it.
    fn start(&mut self, others: bool) -> bool {
        let defer = self.behind
            && (self.attempts > 0 || (others && self.last_attempt.elapsed() < self.probe_every));
        if !defer {
            self.attempts += 1;
        }
        defer
    }

    fn attempt_ended(&mut self, started: Instant, slow: bool) {
        self.attempts = self.attempts.saturating_sub(1);
        self.last_attempt = Instant::now();
        if started >= self.behind_from {
            self.behind_from = started;
            self.behind = slow;
        }
    }
}

/// Starts the task delivering one subscription's share of a partition and returns its queue.
/// When the lane is handed back the task finishes the deliveries in hand and leaves the
/// others to the next owner; when its queue closes it finishes everything it was given.
pub(super) fn spawn(lane: &LaneContext, settled: Arc<Notify>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>(lane.limits.subscription_queue.max(1));
    let shared = Shared {
        handling: lane.handling.clone(),
        abandon: lane.abandon.clone(),
        keys: RandomState::new(),
    };
    let concurrency = lane.limits.delivery_concurrency.max(1);
    lane.tracker
        .spawn(run(shared, rx, lane.handback.clone(), settled, concurrency));
    tx
}

async fn run(
    shared: Shared,
    mut rx: mpsc::Receiver<Job>,
    handback: CancellationToken,
    settled: Arc<Notify>,
    concurrency: usize,
) {
    let mut pace = Pace {
        behind: false,
        behind_from: Instant::now(),
        last_attempt: Instant::now(),
        probe_every: shared
            .handling
            .tiers
            .first()
            .map_or(Duration::from_secs(1), |t| t.delay),
        attempts: 0,
    };
    let shared = &shared;
    let start = |job: Job, key: Option<u64>, defer: bool| async move {
        let (settled, attempt) = if defer {
            (
                park_as_slow(&shared.handling, &job, &shared.abandon).await,
                None,
            )
        } else {
            let started = Instant::now();
            let attempted = shared
                .handling
                .first_attempt(&job.message, &job.subscription, &job.event, &shared.abandon)
                .await;
            (attempted.settled, Some((started, attempted.slow)))
        };
        Finished {
            job,
            key,
            settled,
            attempt,
        }
    };
    let mut in_hand = FuturesUnordered::new();
    // The keys with a delivery in hand, and the jobs waiting behind it in order.
    let mut busy: HashMap<u64, VecDeque<Job>> = HashMap::new();
    // In hand or waiting behind their key: at most `concurrency`.
    let mut held = 0usize;
    let mut open = true;
    while open || held > 0 {
        tokio::select! {
            biased;
            () = handback.cancelled() => break,
            Some(done) = in_hand.next(), if !in_hand.is_empty() => {
                // Named, as `select!` leaves the stream's item type to be inferred.
                let done: Finished = done;
                held -= 1;
                if let Some((started, slow)) = done.attempt {
                    pace.attempt_ended(started, slow);
                }
                if !done.settled {
                    // Abandoned: what is still in hand is given up too.
                    break;
                }
                done.job.progress.settle_one(&settled);
                let Some(key) = done.key else { continue };
                let Entry::Occupied(mut waiting) = busy.entry(key) else { continue };
                match waiting.get_mut().pop_front() {
                    Some(next) => {
                        let others = held > 1 || !rx.is_empty();
                        in_hand.push(start(next, Some(key), pace.start(others)));
                    }
                    None => {
                        waiting.remove();
                    }
                }
            }
            received = rx.recv(), if open && held < concurrency => {
                let Some(job) = received else {
                    open = false;
                    continue;
                };
                held += 1;
                let key = job.message.message.key().map(|k| shared.keys.hash_one(k));
                if let Some(key) = key {
                    match busy.entry(key) {
                        Entry::Occupied(mut waiting) => {
                            waiting.get_mut().push_back(job);
                            continue;
                        }
                        Entry::Vacant(free) => {
                            free.insert(VecDeque::new());
                        }
                    }
                }
                let others = held > 1 || !rx.is_empty();
                in_hand.push(start(job, key, pace.start(others)));
            }
        }
    }
    // Handed back (or abandoned): what was not started is the next owner's, and let go now,
    // not after the deliveries in hand (its record memory, and a lane waiting for room in the
    // queue learns at once that it is closed instead of deferring a record the next owner
    // will deliver again). The deliveries in hand finish, or give up once the lane abandons
    // them.
    drop(rx);
    drop(busy);
    while let Some(done) = in_hand.next().await {
        if done.settled {
            done.job.progress.settle_one(&settled);
        }
    }
}

#[cfg(test)]
mod tests;
