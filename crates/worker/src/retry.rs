//! When to try a failed delivery again: exponential backoff with jitter, a cap, an attempt
//! limit, and the subscriber's own Retry-After.

use std::time::Duration;

use rand::Rng;
use spillway_config::WorkerConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
    /// Fraction of spread around each delay, in [0, 1).
    pub jitter: f64,
}

impl From<&WorkerConfig> for RetryPolicy {
    fn from(c: &WorkerConfig) -> Self {
        Self {
            initial: c.retry_initial,
            max_delay: c.retry_max_delay,
            max_attempts: c.max_attempts,
            jitter: c.retry_jitter,
        }
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// The delay before attempt `next` (2 is the first retry), or `None` once `max_attempts`
    /// have been made. A Retry-After from the subscriber (429, 503) is honoured when it asks
    /// for longer, up to `max_delay`.
    pub fn delay_before(
        &self,
        next: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if next < 2 || next > self.max_attempts {
            return None;
        }
        let doublings = (next - 2).min(31);
        let base = self
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        let spread = if self.jitter > 0.0 {
            rng.random_range(-self.jitter..self.jitter)
        } else {
            0.0
        };
        let jittered = base.mul_f64(1.0 + spread).min(self.max_delay);
        let wanted = retry_after.unwrap_or_default().min(self.max_delay);
        Some(jittered.max(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 10,
            jitter,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_and_stop_after_the_last_attempt() {
        let p = policy(0.0);
        let mut rng = rand::rng();
        let delays: Vec<u64> = (2..=10)
            .map(|n| p.delay_before(n, None, &mut rng).expect("delay").as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay_before(11, None, &mut rng), None);
        assert_eq!(
            p.delay_before(1, None, &mut rng),
            None,
            "attempt 1 is not a retry"
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = policy(0.2);
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = p
                .delay_before(4, None, &mut rng)
                .expect("delay")
                .as_secs_f64();
            assert!((3.2..=4.8).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy(0.0);
        let mut rng = rand::rng();
        assert_eq!(
            p.delay_before(2, Some(Duration::from_secs(7)), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.delay_before(5, Some(Duration::from_secs(1)), &mut rng),
            Some(Duration::from_secs(8)),
            "the longer wait wins"
        );
        assert_eq!(
            p.delay_before(2, Some(Duration::from_secs(3600)), &mut rng),
            Some(Duration::from_secs(60))
        );
    }
}
