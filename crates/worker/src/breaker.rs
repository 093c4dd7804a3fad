//! A circuit breaker per subscription: after repeated failures, deliveries to it pause instead
//! of spending their attempts, and one probe per cooldown finds out whether it is back.
//!
//! Closed ──(N consecutive failures)──► Open ──(cooldown over: one probe)──► HalfOpen
//!   ▲                                   ▲                                    │
//!   └────────────(probe succeeds)───────┼──────────(probe fails)─────────────┘

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use spillway_telemetry::CircuitState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cooldown is over and one probe is in flight.
    HalfOpen {
        since: Instant,
    },
}

/// The breakers of all subscriptions of a worker.
#[derive(Debug)]
pub struct Breakers {
    /// 0: never open.
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            states: Mutex::default(),
        }
    }

    /// May a delivery to `subscription` be attempted now? `Err(wait)`: not for `wait`.
    pub fn admit(&self, subscription: &str, now: Instant) -> Result<(), Duration> {
        if self.threshold == 0 {
            return Ok(());
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = states
            .entry(subscription.to_owned())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { since: now };
                Ok(())
            }
            // A probe that never reported back (its worker stopped) is given up after a
            // cooldown, so the breaker cannot stay half-open for ever.
            State::HalfOpen { since } if now >= since + self.cooldown => {
                *state = State::HalfOpen { since: now };
                Ok(())
            }
            State::HalfOpen { .. } => Err(self.cooldown),
        }
    }

    /// Records how an admitted delivery went.
    pub fn record(&self, subscription: &str, success: bool, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = states
            .entry(subscription.to_owned())
            .or_insert(State::Closed { failures: 0 });
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => {
                tracing::warn!(
                    subscription,
                    failures = failures + 1,
                    "circuit opened: deliveries pause"
                );
                State::Open {
                    until: now + self.cooldown,
                }
            }
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { .. }, false) => State::Open {
                until: now + self.cooldown,
            },
            (open @ State::Open { .. }, false) => open,
        };
    }

    /// Forgets the circuit of a subscription that no longer exists.
    pub fn forget(&self, subscription: &str) {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(subscription);
    }

    /// Whether the circuit of `subscription` is open or half-open.
    pub fn is_open(&self, subscription: &str) -> bool {
        self.state(subscription) != CircuitState::Closed
    }

    /// The state of the circuit of `subscription`, as exported in the metrics.
    pub fn state(&self, subscription: &str) -> CircuitState {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        match states.get(subscription) {
            None | Some(State::Closed { .. }) => CircuitState::Closed,
            Some(State::HalfOpen { .. }) => CircuitState::HalfOpen,
            Some(State::Open { .. }) => CircuitState::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let b = Breakers::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit("s", t0), Ok(()));
            b.record("s", false, t0);
        }
        assert!(!b.is_open("s"));
        b.record("s", true, t0);
        for _ in 0..3 {
            assert_eq!(b.admit("s", t0), Ok(()));
            b.record("s", false, t0);
        }
        assert!(
            b.is_open("s"),
            "three in a row open it (a success in between reset the count)"
        );
        assert_eq!(
            b.admit("s", t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        assert_eq!(
            b.admit("other", t0),
            Ok(()),
            "one subscription's breaker is its own"
        );

        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit("s", t1), Ok(()), "the probe");
        assert_eq!(
            b.admit("s", t1),
            Err(Duration::from_secs(30)),
            "only one probe at a time"
        );
        b.record("s", false, t1);
        assert_eq!(
            b.admit("s", t1 + Duration::from_secs(1)),
            Err(Duration::from_secs(29)),
            "a failed probe reopens"
        );

        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(b.admit("s", t2), Ok(()));
        b.record("s", true, t2);
        assert!(!b.is_open("s"));
        assert_eq!(b.admit("s", t2), Ok(()), "a good probe closes it");
    }

    #[test]
    fn a_lost_probe_is_given_up_after_a_cooldown() {
        let b = Breakers::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        b.record("s", false, t0);
        assert_eq!(b.admit("s", t0 + Duration::from_secs(5)), Ok(()));
        // No record() for that probe.
        assert!(b.admit("s", t0 + Duration::from_secs(6)).is_err());
        assert_eq!(
            b.admit("s", t0 + Duration::from_secs(10)),
            Ok(()),
            "a new probe"
        );
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breakers::new(0, Duration::from_secs(5));
        let t0 = Instant::now();
        for _ in 0..100 {
            b.record("s", false, t0);
        }
        assert_eq!(b.admit("s", t0), Ok(()));
    }
}
