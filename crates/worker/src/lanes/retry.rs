//! A retry tier partition's lane: records are waited for in order (their due times rise within
//! a tier), then delivered concurrently up to `retry_concurrency`, so one hanging subscriber
//! does not hold up the others' retries. While it waits for a head that is not due, it says so,
//! and the dispatcher pauses its partition: it holds its head, not the tier's backlog.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::message::Message;
use tokio::sync::mpsc;

use super::{Held, LaneContext};
use crate::ledger::Ledger;

/// Reads the partition's records until the lane is handed back or its records end, storing
/// the settled offsets as retries settle.
pub(super) async fn run_retry_lane(
    lane: LaneContext,
    mut rx: mpsc::UnboundedReceiver<Held>,
    ledger: &mut Ledger,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(
        lane.limits.retry_concurrency.max(1),
    ));
    let settled = ledger.settled();
    loop {
        tokio::select! {
            biased;
            () = lane.handback.cancelled() => return,
            () = settled.notified() => {}
            received = rx.recv() => {
                let Some(message) = received else { return };
                // Settled offsets are stored before a possibly long wait, not after it.
                ledger.store_settled(lane.offsets.as_ref());
                let waits = !lane.handling.due_in(&message).is_zero();
                lane.load.waiting.store(waits, Ordering::Relaxed);
                let due = lane.handling.wait_until_due(&message, &lane.handback).await;
                lane.load.waiting.store(false, Ordering::Relaxed);
                if !due {
                    return;
                }
                let permit = tokio::select! {
                    () = lane.handback.cancelled() => return,
                    permit = permits.clone().acquire_owned() => permit,
                };
                let Ok(permit) = permit else { return };
                let progress = ledger.open(message.offset(), 1);
                let (handling, abandon, settled) = (lane.handling.clone(), lane.abandon.clone(), settled.clone());
                lane.tracker.spawn(async move {
                    let _permit = permit;
                    if handling.retry(&message, &abandon).await {
                        progress.settle_one(&settled);
                    }
                });
            }
        }
        ledger.store_settled(lane.offsets.as_ref());
    }
}
