//! When to try a failed delivery again: exponential backoff with a cap, an attempt limit, and
//! the subscriber's own Retry-After.
//!
//! No jitter: a retry waits exactly the delay of the tier it is parked in, so that due times
//! rise with offsets within a tier (see [`crate::topics::tier_for`]); random delays would let
//! one record hold up later ones that are due sooner. The failures' own spread in time spreads
//! the retries.

use std::time::Duration;

use spillway_config::WorkerConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl From<&WorkerConfig> for RetryPolicy {
    fn from(c: &WorkerConfig) -> Self {
        Self {
            initial: c.retry_initial,
            max_delay: c.retry_max_delay,
            max_attempts: c.max_attempts,
        }
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// The delay before attempt `next` (2 is the first retry), or `None` once `max_attempts`
    /// have been made. A Retry-After from the subscriber (429, 503) is honoured when it asks
    /// for longer, up to `max_delay`.
    pub fn delay_before(&self, next: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if next < 2 || next > self.max_attempts {
            return None;
        }
        let doublings = (next - 2).min(31);
        let base = self
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        let wanted = retry_after.unwrap_or_default().min(self.max_delay);
        Some(base.max(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 10,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_stop_after_the_last_attempt() {
        let p = policy();
        let delays: Vec<u64> = (2..=10)
            .map(|n| p.delay_before(n, None).expect("delay").as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay_before(11, None), None);
        assert_eq!(p.delay_before(1, None), None, "attempt 1 is not a retry");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay_before(2, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.delay_before(5, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(8)),
            "the longer wait wins"
        );
        assert_eq!(
            p.delay_before(2, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(60))
        );
    }
}
