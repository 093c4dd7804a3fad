//! A partition's offsets, stored in order as its records settle: never past a record whose
//! deliveries are still unsettled, whatever order they settle in. This is the at-least-once
//! rule of the workers; storage goes through [`OffsetStore`] so the rule is unit-tested
//! without a broker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use tokio::sync::Notify;

/// Where a partition's handled offsets go: the consumer, which commits them every second and
/// on revoke or shutdown (or, in tests, a recorder).
pub(crate) trait OffsetStore {
    /// Stores `offset` as handled: the next read of the partition starts after it.
    fn store(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError>;
}

impl<C: ConsumerContext, R> OffsetStore for StreamConsumer<C, R> {
    fn store(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        // rd_kafka_offset_store stores offset + 1: the next record to read.
        self.store_offset(topic, partition, offset)
    }
}

/// A record's deliveries that are not settled yet.
#[derive(Debug)]
pub(crate) struct Progress {
    offset: i64,
    unsettled: AtomicUsize,
}

// === impl Progress ===

impl Progress {
    /// One of the record's deliveries is settled: delivered, or parked with Kafka's
    /// acknowledgement. Wakes the lane so it stores what can be stored.
    pub(crate) fn settle_one(&self, settled: &Notify) {
        self.unsettled.fetch_sub(1, Ordering::AcqRel);
        settled.notify_one();
    }

    fn is_settled(&self) -> bool {
        self.unsettled.load(Ordering::Acquire) == 0
    }
}

/// The records of one partition in the order read, each with its unsettled deliveries.
#[derive(Debug)]
pub(crate) struct Ledger {
    topic: String,
    partition: i32,
    in_order: VecDeque<Arc<Progress>>,
    /// Woken whenever a delivery settles.
    settled: Arc<Notify>,
}

// === impl Ledger ===

impl Ledger {
    pub(crate) fn new(topic: String, partition: i32) -> Self {
        Self {
            topic,
            partition,
            in_order: VecDeque::new(),
            settled: Arc::new(Notify::new()),
        }
    }

    /// What settling deliveries notify: the lane waits on it to store offsets.
    pub(crate) fn settled(&self) -> Arc<Notify> {
        self.settled.clone()
    }

    /// Follows the record at `offset`, which has `deliveries` to settle (none: it is settled).
    /// Records must be opened in the order they were read.
    pub(crate) fn open(&mut self, offset: i64, deliveries: usize) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            offset,
            unsettled: AtomicUsize::new(deliveries),
        });
        self.in_order.push_back(progress.clone());
        progress
    }

    /// Stores the offset of every settled record at the front, stopping at the first one that
    /// is not settled.
    pub(crate) fn store_settled(&mut self, store: &(impl OffsetStore + ?Sized)) {
        while self.in_order.front().is_some_and(|p| p.is_settled()) {
            let Some(done) = self.in_order.pop_front() else {
                break;
            };
            if let Err(e) = store.store(&self.topic, self.partition, done.offset) {
                // The partition was revoked: its new owner handles the record again.
                tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "offset not stored");
            }
        }
    }
}

#[cfg(test)]
mod tests;
