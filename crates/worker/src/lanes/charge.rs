//! What a record costs a lane and the worker while a lane holds it: its charge in bytes,
//! counted against the lane's load and the worker's record memory from dispatch until the
//! record is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::message::{Headers, Message, OwnedMessage};

/// What a lane holds: records and their bytes, counted until it is done with them.
#[derive(Debug, Default)]
pub(crate) struct LaneLoad {
    pub(super) records: AtomicUsize,
    pub(super) bytes: AtomicUsize,
    /// A retry lane is waiting for a head record that is not due yet.
    pub(super) waiting: std::sync::atomic::AtomicBool,
}

/// The bytes of records every lane of a worker holds, against `worker.max_record_memory`.
#[derive(Debug, Clone)]
pub(crate) struct RecordMemory {
    held: Arc<AtomicUsize>,
    pub(super) limit: usize,
}

impl RecordMemory {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            held: Arc::default(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
        }
    }

    /// What one lane may hold before its partition is paused: an eighth of the whole, so a
    /// few busy partitions cannot take it all.
    pub(super) fn lane_share(&self) -> usize {
        (self.limit / 8).max(1)
    }

    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// A record in a lane's hands, counted against the lane and the worker's record memory until
/// it is dropped (which the last of its deliveries or parks does).
pub(crate) struct Held {
    pub(crate) message: OwnedMessage,
    _charge: Charge,
}

struct Charge {
    bytes: usize,
    lane: Arc<LaneLoad>,
    memory: Arc<AtomicUsize>,
}

impl Held {
    pub(super) fn new(message: OwnedMessage, lane: Arc<LaneLoad>, memory: &RecordMemory) -> Self {
        let headers = message.headers().map_or(0, |headers| {
            headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum()
        });
        let bytes = record_charge(
            message.payload().map_or(0, <[u8]>::len),
            message.key().map_or(0, <[u8]>::len) + headers,
        );
        lane.records.fetch_add(1, Ordering::Relaxed);
        lane.bytes.fetch_add(bytes, Ordering::Relaxed);
        memory.held.fetch_add(bytes, Ordering::Relaxed);
        Self {
            message,
            _charge: Charge {
                bytes,
                lane,
                memory: memory.held.clone(),
            },
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.lane.records.fetch_sub(1, Ordering::Relaxed);
        self.lane.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.memory.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Held {
    type Target = OwnedMessage;

    fn deref(&self) -> &OwnedMessage {
        &self.message
    }
}

/// What a record costs beside its key, headers and payload: the allocations around them.
pub(super) const RECORD_OVERHEAD_BYTES: usize = 1024;

/// The bytes a record counts against its lane and the worker: the record (`payload`, and
/// `key_and_headers`: its key and its headers' keys and values), and the event built from its
/// payload for the subscribers. Headers are counted as they come: forwarded ones can make
/// up most of a record with a small body.
pub(super) fn record_charge(payload: usize, key_and_headers: usize) -> usize {
    payload * 2 + key_and_headers + RECORD_OVERHEAD_BYTES
}
