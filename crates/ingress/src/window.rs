//! Fixed-window counters in the shared store: the per-source rate limits and the per-address
//! verification failures both count hits in the window the current time falls in, one key
//! per window, so every pod adds to the same count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spillway_idempotency::{DedupeStore, StoreError};
use spillway_telemetry::{IngressMetrics, RedisCommand};

use crate::pipeline::timed;

/// One hit counted in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The window's count, this hit included.
    pub count: u64,
    /// Until the window ends.
    pub left: Duration,
}

/// Counts a hit on `name` in the current `window` (key `<name>:<window index>`).
pub async fn count_hit(
    store: &DedupeStore,
    metrics: &IngressMetrics,
    command: RedisCommand,
    name: &str,
    window: Duration,
) -> Result<Hit, StoreError> {
    let window_ms = millis(window);
    let now = millis_since_epoch(SystemTime::now());
    let index = now / window_ms;
    let key = format!("{name}:{index}");
    let count = timed(metrics, command, store.count(&key, window)).await?;
    Ok(Hit {
        count,
        left: Duration::from_millis((index + 1) * window_ms - now),
    })
}

/// A duration in whole milliseconds, at least 1.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
