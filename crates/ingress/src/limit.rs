//! The in-flight limit, adapted to how fast Kafka and Redis answer: requests past their body
//! read may be in flight up to a limit that shrinks when the durable sections' p90 is longer
//! than `ingress.latency_target` and grows back while it is shorter (additive increase,
//! multiplicative decrease, as TCP's congestion window does), between a floor and
//! `ingress.max_in_flight`.
//!
//! A fixed count cannot shed in time: with 1,024 senders the count of 4,096 is never reached,
//! and every admitted request waits up to `delivery_timeout` behind a broker that is behind.
//! Following latency keeps what is admitted answered within the target and refuses the rest
//! at once rather than after a wait that costs both sides; while no place is free, requests
//! are refused before their body is read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

/// How far one slow window shrinks the limit.
const DECREASE: f64 = 0.7;
/// The limit never goes below this, nor below a 32nd of `max_in_flight`: requests can always
/// probe whether Kafka is fast again, and a few slow partitions cannot starve the rest.
const FLOOR: usize = 8;
/// A window is slow when more than this share of its sections were slower than the target
/// (its p90 is over it): one slow partition or a rare slow tail does not shrink the limit.
const SLOW_SHARE: f64 = 0.1;

/// The adaptive in-flight limit. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct InFlightLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    in_flight: AtomicUsize,
    /// The current limit, as a whole number of requests.
    limit: AtomicUsize,
    ceiling: usize,
    target: Duration,
    window: Mutex<Window>,
    /// `spillway_http_in_flight_limit_requests`.
    gauge: IntGauge,
}

/// What was seen since the limit last changed.
#[derive(Debug)]
struct Window {
    started: Instant,
    /// The limit as a real number: additive increase adds fractions.
    limit: f64,
    sections: u64,
    slow: u64,
}

/// A place under the limit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    shared: Arc<Shared>,
}

// === impl InFlightLimit ===

impl InFlightLimit {
    /// Starts at `ceiling` (`ingress.max_in_flight`): a process that has seen nothing slow
    /// admits as before.
    pub(crate) fn new(ceiling: usize, target: Duration, gauge: IntGauge) -> Self {
        let ceiling = ceiling.max(1);
        gauge.set(i64::try_from(ceiling).unwrap_or(i64::MAX));
        Self {
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                limit: AtomicUsize::new(ceiling),
                ceiling,
                target,
                window: Mutex::new(Window {
                    started: Instant::now(),
                    limit: ceiling as f64,
                    sections: 0,
                    slow: 0,
                }),
                gauge,
            }),
        }
    }

    /// Whether a place would be free now: checked before a body is read, so that a request
    /// that would be refused after it costs no read.
    pub(crate) fn has_room(&self) -> bool {
        self.shared.in_flight.load(Ordering::Relaxed) < self.shared.limit.load(Ordering::Relaxed)
    }

    /// A place, or None when as many requests as the limit are in flight.
    pub(crate) fn try_enter(&self) -> Option<Place> {
        let limit = self.shared.limit.load(Ordering::Relaxed);
        self.shared
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Place {
            shared: self.shared.clone(),
        })
    }

    /// Records how long one durable section (claim and produce) took. Once per target's
    /// length the limit changes: shrunk if more than a tenth of the window's sections were
    /// slower than the target, else grown by a tenth of itself (at least 1, at most 64).
    pub(crate) fn observe(&self, took: Duration) {
        let shared = &self.shared;
        let mut window = shared.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.sections += 1;
        window.slow += u64::from(took > shared.target);
        let now = Instant::now();
        if now.duration_since(window.started) < shared.target {
            return;
        }
        let ceiling = shared.ceiling as f64;
        let floor = FLOOR.max(shared.ceiling / 32).min(shared.ceiling) as f64;
        let slow = window.slow as f64 > SLOW_SHARE * window.sections as f64;
        window.limit = if slow {
            (window.limit * DECREASE).max(floor)
        } else {
            (window.limit + (window.limit / 10.0).clamp(1.0, 64.0)).min(ceiling)
        };
        window.started = now;
        window.sections = 0;
        window.slow = 0;
        // The limit is a count: rounding keeps it within [floor, ceiling].
        let limit = window.limit.round() as usize;
        shared.limit.store(limit, Ordering::Relaxed);
        shared.gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn gauge() -> IntGauge {
        IntGauge::new("limit", "test").expect("gauge")
    }

    #[tokio::test(start_paused = true)]
    async fn slow_sections_shrink_the_limit_to_the_floor_and_fast_ones_grow_it_back() {
        let limit = InFlightLimit::new(100, ms(500), gauge());
        for _ in 0..20 {
            tokio::time::advance(ms(500)).await;
            limit.observe(ms(2000));
        }
        assert_eq!(limit.limit(), FLOOR);
        let mut windows = 0;
        while limit.limit() < 100 {
            tokio::time::advance(ms(500)).await;
            limit.observe(ms(10));
            windows += 1;
        }
        assert!(windows < 40, "back to the ceiling in {windows} windows");
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_changes_once_per_window_not_per_section() {
        let limit = InFlightLimit::new(100, ms(500), gauge());
        for _ in 0..50 {
            limit.observe(ms(2000));
        }
        assert_eq!(
            limit.limit(),
            100,
            "a burst of slow answers within one window"
        );
        tokio::time::advance(ms(500)).await;
        limit.observe(ms(2000));
        assert_eq!(limit.limit(), 70);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_tail_does_not_shrink_the_limit() {
        let limit = InFlightLimit::new(4096, ms(500), gauge());
        for _ in 0..20 {
            tokio::time::advance(ms(50)).await;
            // One partition in twelve waits for its delivery timeout.
            for n in 0..12 {
                limit.observe(if n == 0 { ms(5000) } else { ms(5) });
            }
        }
        assert_eq!(limit.limit(), 4096);
        for _ in 0..30 {
            tokio::time::advance(ms(500)).await;
            limit.observe(ms(5000));
        }
        assert_eq!(limit.limit(), 128, "the floor is a 32nd of max_in_flight");
    }

    #[test]
    fn places_are_counted_and_given_back() {
        let limit = InFlightLimit::new(2, ms(500), gauge());
        let a = limit.try_enter().expect("first");
        let _b = limit.try_enter().expect("second");
        assert!(!limit.has_room());
        assert!(limit.try_enter().is_none());
        drop(a);
        assert!(limit.has_room());
        assert_eq!(limit.in_flight(), 1);
    }
}
