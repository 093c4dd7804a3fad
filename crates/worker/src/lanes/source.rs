//! A source partition's lane: each record is fanned out to the queue of every subscription that
//! wants it, and each subscription's task delivers its share in order, so subscriptions proceed
//! independently. A subscription whose queue stays full is slow: its deliveries are deferred to
//! the first retry tier instead of holding up the lane.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::Message;
use spillway_config::ResolvedSubscription;
use spillway_core::headers;
use tokio::sync::{mpsc, Notify};

use tokio_util::sync::CancellationToken;

use super::{Held, LaneContext};
use crate::control::header_text;
use crate::delivery::OutboundEvent;
use crate::handling::Handling;
use crate::ledger::{Ledger, Progress};

/// One delivery of one record to one subscription.
struct Job {
    /// Counted against the lane until the last of the record's deliveries lets it go.
    message: Arc<Held>,
    event: Arc<OutboundEvent>,
    /// As it stood when the record was read: a later change applies to later records.
    subscription: Arc<ResolvedSubscription>,
    progress: Arc<Progress>,
}

/// A subscription's queue within a source lane.
struct SubscriptionQueue {
    tx: mpsc::Sender<Job>,
    /// Its queue stayed full for `slow_after`: deliveries are deferred until it drains to half.
    slow: bool,
}

/// Reads the partition's records until the lane is handed back or its records end, storing
/// the settled offsets as deliveries settle.
pub(super) async fn run_source_lane(
    lane: LaneContext,
    mut rx: mpsc::UnboundedReceiver<Held>,
    ledger: &mut Ledger,
) {
    let mut queues: HashMap<String, SubscriptionQueue> = HashMap::new();
    let settled = ledger.settled();
    let capacity = lane.limits.subscription_queue.max(1);
    loop {
        tokio::select! {
            biased;
            () = lane.handback.cancelled() => return,
            () = settled.notified() => {}
            received = rx.recv() => {
                let Some(message) = received else { return };
                let event = Arc::new(lane.handling.outbound(&message));
                // A record that failed its source's schema is never for subscribers, whatever
                // topic it is found in (a quarantine topic named as a source's by mistake).
                let quarantined = header_text(&message, headers::INVALID_REASON).is_some();
                let message = Arc::new(message);
                let matching: Vec<Arc<ResolvedSubscription>> = lane
                    .handling
                    .subscriptions
                    .snapshot()
                    .iter()
                    .filter(|s| !quarantined && event.is_for(s))
                    .cloned()
                    .collect();
                let progress = ledger.open(message.offset(), matching.len());
                for subscription in matching {
                    let queue = queues.entry(subscription.id.clone()).or_insert_with(|| SubscriptionQueue {
                        tx: subscription_task(&lane, settled.clone()),
                        slow: false,
                    });
                    if queue.slow && queue.tx.capacity() >= capacity / 2 {
                        queue.slow = false;
                    }
                    let job = Job { message: message.clone(), event: event.clone(), subscription: subscription.clone(), progress: progress.clone() };
                    let refused = if queue.slow {
                        Some(job)
                    } else {
                        match queue.tx.send_timeout(job, lane.limits.slow_after).await {
                            Ok(()) => None,
                            Err(mpsc::error::SendTimeoutError::Timeout(job)) => {
                                tracing::info!(subscription = %subscription.id, "slow subscriber: deferring its deliveries");
                                queue.slow = true;
                                Some(job)
                            }
                            // Its task stopped: the lane is being handed back.
                            Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                        }
                    };
                    if let Some(job) = refused {
                        defer(&lane, job, settled.clone());
                    }
                }
            }
        }
        ledger.store_settled(lane.offsets.as_ref());
    }
}

/// Parks a slow subscription's delivery in the first retry tier, still as its first attempt,
/// in a task of its own.
fn defer(lane: &LaneContext, job: Job, settled: Arc<Notify>) {
    let (handling, abandon) = (lane.handling.clone(), lane.abandon.clone());
    lane.tracker.spawn(async move {
        if park_as_slow(&handling, &job, &abandon).await {
            job.progress.settle_one(&settled);
        }
    });
}

/// Postpones `job` to the first retry tier as a first attempt still to make; false when
/// cancelled first.
async fn park_as_slow(handling: &Handling, job: &Job, abandon: &CancellationToken) -> bool {
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

/// The task delivering one subscription's share of a partition, in order. When the lane is
/// handed back it finishes the delivery in hand and leaves the queued ones to the next owner.
fn subscription_task(lane: &LaneContext, settled: Arc<Notify>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(lane.limits.subscription_queue.max(1));
    let (handling, handback, abandon) = (
        lane.handling.clone(),
        lane.handback.clone(),
        lane.abandon.clone(),
    );
    lane.tracker.spawn(async move {
        // The last attempt ran out of `worker.first_attempt_budget` or timed out: the
        // subscriber is slow, so what is queued behind it is deferred, not each given the
        // whole wait in turn. A probe goes out when the queue has emptied, or a first tier's
        // delay after the last attempt ended while it has not (a backlog read after a restart
        // keeps it full).
        let probe_every = handling
            .tiers
            .first()
            .map_or(Duration::from_secs(1), |t| t.delay);
        let mut behind = false;
        let mut last_attempt = tokio::time::Instant::now();
        loop {
            let job = tokio::select! {
                biased;
                () = handback.cancelled() => return,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let defer = behind && !rx.is_empty() && last_attempt.elapsed() < probe_every;
            let done = if defer {
                park_as_slow(&handling, &job, &abandon).await
            } else {
                let attempted = handling
                    .first_attempt(&job.message, &job.subscription, &job.event, &abandon)
                    .await;
                last_attempt = tokio::time::Instant::now();
                behind = attempted.slow;
                attempted.settled
            };
            if !done {
                return;
            }
            job.progress.settle_one(&settled);
        }
    });
    tx
}
