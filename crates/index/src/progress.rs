//! What the indexer has done, shared with the console for its status and metrics.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use spillway_core::time::now_ms;

use crate::writer::Batch;

/// Counters of the indexer; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    leading: AtomicBool,
    events: AtomicU64,
    attempts: AtomicU64,
    dead_letters: AtomicU64,
    skipped: AtomicU64,
    expired: AtomicU64,
    /// When the last batch was written, ms since the epoch; 0 before the first.
    last_batch_ms: AtomicI64,
    /// The newest event's receipt time the index holds, ms since the epoch.
    newest_event_ms: AtomicI64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ProgressSnapshot {
    /// Whether this process holds the index lock and writes (one console at a time does).
    pub leading: bool,
    /// Rows this process has indexed since it started (those of records read again after a
    /// restart count again, though the tables keep one).
    pub events: u64,
    pub attempts: u64,
    pub dead_letters: u64,
    /// Records that were not Spillway's (no event id, an attempt record that did not parse).
    pub skipped: u64,
    /// Rows deleted by retention.
    pub expired: u64,
    /// When the last batch was written, ms since the epoch.
    pub last_batch_ms: Option<i64>,
    /// The newest event this process indexed, ms since the epoch.
    pub newest_event_ms: Option<i64>,
}

impl Progress {
    pub(crate) fn set_leading(&self, leading: bool) {
        self.0.leading.store(leading, Ordering::Relaxed);
    }

    pub(crate) fn indexed(&self, batch: &Batch) {
        let c = &self.0;
        c.events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        c.attempts
            .fetch_add(batch.attempts.len() as u64, Ordering::Relaxed);
        c.dead_letters
            .fetch_add(batch.dead_letters.len() as u64, Ordering::Relaxed);
        c.last_batch_ms.store(now_ms() as i64, Ordering::Relaxed);
        if let Some(newest) = batch.events.iter().map(|e| e.received_ms).max() {
            c.newest_event_ms.fetch_max(newest, Ordering::Relaxed);
        }
    }

    pub(crate) fn skipped(&self) {
        self.0.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn expired(&self, rows: u64) {
        self.0.expired.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let c = &self.0;
        let when = |v: &AtomicI64| Some(v.load(Ordering::Relaxed)).filter(|v| *v > 0);
        ProgressSnapshot {
            leading: c.leading.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            attempts: c.attempts.load(Ordering::Relaxed),
            dead_letters: c.dead_letters.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            last_batch_ms: when(&c.last_batch_ms),
            newest_event_ms: when(&c.newest_event_ms),
        }
    }
}
