//! A source partition's lane: each record is fanned out to the queue of every subscription that
//! wants it, and each subscription's task ([`subscription`]) delivers its share, in order per
//! record key, so subscriptions proceed independently. A subscription whose queue stays full
//! is slow: its deliveries are deferred to the first retry tier instead of holding up the lane.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::Message;
use spillway_config::ResolvedSubscription;
use spillway_core::headers;
use tokio::sync::{mpsc, Notify};

use super::subscription::{self, park_as_slow, Job};
use super::{Held, LaneContext};
use crate::control::header_text;
use crate::ledger::Ledger;

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
                        tx: subscription::spawn(&lane, settled.clone()),
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
