//! Waiting in tests: poll a check until it holds, within one patience shared by every wait.
//!
//! No test depends on speed (docs/development.md): a test waits for the state it needs by
//! polling for it, and gives up only after a generous limit that guards against hangs. That
//! limit is one setting, `SPILLWAY_TEST_PATIENCE_SECS` (60 s by default), so that a slow or
//! heavily shared machine raises every wait at once instead of a constant per test.
//!
//! A check answers `true`/`Some(value)`/`Ok(value)` when it holds, and `false`/`None`/
//! `Err(state)` when it does not yet; with a `Result` the state it last saw is in the message
//! of a wait that runs out, which says more than "timed out".
//!
//! ```ignore
//! let dead = eventually("the dead letter", async || {
//!     let dead = read_topic(&brokers, &topic).await;
//!     if dead.is_empty() { Err(format!("{} records", dead.len())) } else { Ok(dead) }
//! })
//! .await;
//! ```

use std::collections::HashSet;
use std::fmt::{self, Debug, Display};
use std::hash::Hash;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that sets the patience, in seconds (fractions allowed).
pub const PATIENCE_VAR: &str = "SPILLWAY_TEST_PATIENCE_SECS";

/// The patience when [`PATIENCE_VAR`] is not set: generous, since it only guards against hangs.
const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// How often a wait checks again, unless it says otherwise: most checks look at local memory
/// or a loopback port; a heavier one says [`Wait::every`].
const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// How long any wait may take before the test fails: [`PATIENCE_VAR`], or 60 s.
///
/// # Panics
///
/// When the variable is set to something other than a positive number of seconds: a typo
/// there would otherwise silently fall back to the default.
pub fn patience() -> Duration {
    static PATIENCE: OnceLock<Duration> = OnceLock::new();
    *PATIENCE.get_or_init(|| match std::env::var(PATIENCE_VAR) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| {
                panic!("{PATIENCE_VAR}={text:?}: expected a positive number of seconds")
            }),
        Err(_) => DEFAULT_PATIENCE,
    })
}

/// What one poll of a check found: done with a value, or not yet with the state it saw.
pub trait Check {
    /// What the wait returns once the check holds.
    type Value;
    /// What the check saw while it did not hold yet.
    type State;
    /// `Ok` when the check holds.
    fn settle(self) -> Result<Self::Value, Self::State>;
}

impl Check for bool {
    type Value = ();
    type State = &'static str;
    fn settle(self) -> Result<(), &'static str> {
        if self {
            Ok(())
        } else {
            Err("the check was still false")
        }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    type State = &'static str;
    fn settle(self) -> Result<T, &'static str> {
        self.ok_or("the check still found nothing")
    }
}

impl<T, S> Check for Result<T, S> {
    type Value = T;
    type State = S;
    fn settle(self) -> Self {
        self
    }
}

/// How long and how often a wait polls: [`patience`] and every 50 ms unless changed.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    limit: Duration,
    interval: Duration,
}

impl Default for Wait {
    fn default() -> Self {
        Self {
            limit: patience(),
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl Wait {
    /// The default wait: [`patience`], polling every 50 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Polls every `interval` instead: shorter for a condition that does not last, longer for
    /// a check that loads a shared service (reading a topic, querying Prometheus).
    pub fn every(self, interval: Duration) -> Self {
        Self { interval, ..self }
    }

    /// `factor` times the patience, for a wait that covers several others in a row.
    pub fn times(self, factor: u32) -> Self {
        Self {
            limit: self.limit * factor,
            ..self
        }
    }

    /// How long this wait lasts at most.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Polls `check` until it holds and returns its value, or, once the limit has passed, the
    /// state it last saw. The check runs once more at the limit, so a slow poll never misses
    /// a condition that holds by then.
    pub async fn poll<C: Check>(
        self,
        mut check: impl AsyncFnMut() -> C,
    ) -> Result<C::Value, C::State> {
        let started = Instant::now();
        loop {
            let state = match check().await.settle() {
                Ok(value) => return Ok(value),
                Err(state) => state,
            };
            let left = self.limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(state);
            }
            tokio::time::sleep(self.interval.min(left)).await;
        }
    }

    /// Polls `check` until it holds and returns its value; the test fails once the limit has
    /// passed, naming `what` it waited for and the state the check last saw.
    pub async fn until<C>(self, what: impl Display, check: impl AsyncFnMut() -> C) -> C::Value
    where
        C: Check,
        C::State: Display,
    {
        self.poll(check)
            .await
            .unwrap_or_else(|state| self.give_up(&what, &state))
    }

    /// [`Wait::poll`] for synchronous code: the thread sleeps between polls.
    pub fn poll_blocking<C: Check>(
        self,
        mut check: impl FnMut() -> C,
    ) -> Result<C::Value, C::State> {
        let started = Instant::now();
        loop {
            let state = match check().settle() {
                Ok(value) => return Ok(value),
                Err(state) => state,
            };
            let left = self.limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(state);
            }
            std::thread::sleep(self.interval.min(left));
        }
    }

    /// [`Wait::until`] for synchronous code: the thread sleeps between polls.
    pub fn until_blocking<C>(self, what: impl Display, check: impl FnMut() -> C) -> C::Value
    where
        C: Check,
        C::State: Display,
    {
        self.poll_blocking(check)
            .unwrap_or_else(|state| self.give_up(&what, &state))
    }

    fn give_up(&self, what: &dyn Display, state: &dyn Display) -> ! {
        panic!(
            "gave up waiting for {what} after {:?} ({PATIENCE_VAR} sets the patience); \
             last seen: {state}",
            self.limit
        )
    }
}

/// Polls `check` every 50 ms until it holds and returns its value; fails the test after
/// [`patience`], naming `what` it waited for and the state the check last saw.
pub async fn eventually<C>(what: impl Display, check: impl AsyncFnMut() -> C) -> C::Value
where
    C: Check,
    C::State: Display,
{
    Wait::new().until(what, check).await
}

/// [`eventually`] for synchronous code: the thread sleeps between polls.
pub fn eventually_blocking<C>(what: impl Display, check: impl FnMut() -> C) -> C::Value
where
    C: Check,
    C::State: Display,
{
    Wait::new().until_blocking(what, check)
}

/// A check that `count` has reached `wanted`; the state says how far it got.
pub fn at_least(count: usize, wanted: usize) -> Result<usize, String> {
    if count >= wanted {
        Ok(count)
    } else {
        Err(format!("{count} of {wanted}"))
    }
}

/// A check that `have` holds every item of `wanted`; the state counts the missing ones and
/// names a few.
pub fn all_of<T: Eq + Hash + Debug>(have: &HashSet<T>, wanted: &HashSet<T>) -> Result<(), Missing> {
    let missing: Vec<String> = wanted
        .difference(have)
        .map(|item| format!("{item:?}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing {
            missing,
            of: wanted.len(),
        })
    }
}

/// What [`all_of`] still misses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The missing items, formatted.
    pub missing: Vec<String>,
    /// How many were wanted.
    pub of: usize,
}

impl Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.missing.len().min(5);
        write!(
            f,
            "{} of {} missing, e.g. {}",
            self.missing.len(),
            self.of,
            self.missing[..shown].join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_check_holds() {
        let mut polls = 0;
        let value = Wait::new()
            .every(Duration::from_millis(1))
            .until("the third poll", async || {
                polls += 1;
                if polls == 3 {
                    Ok(polls)
                } else {
                    Err(format!("poll {polls}"))
                }
            })
            .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn the_last_state_is_returned_at_the_limit() {
        let mut polls = 0;
        let last = Wait::new()
            .every(Duration::from_millis(1))
            .times(0)
            .poll(async || {
                polls += 1;
                Err::<(), _>(polls)
            })
            .await;
        assert_eq!(last, Err(1), "a zero limit still checks once");
    }

    #[tokio::test]
    #[should_panic(expected = "gave up waiting for the impossible after 0ns")]
    async fn a_wait_that_runs_out_names_what_and_the_last_state() {
        Wait::new()
            .times(0)
            .until("the impossible", async || false)
            .await;
    }

    #[test]
    fn blocking_waits_poll_too() {
        let mut polls = 0;
        let value =
            Wait::new()
                .every(Duration::from_millis(1))
                .until_blocking("the second poll", || {
                    polls += 1;
                    (polls == 2).then_some("done")
                });
        assert_eq!(value, "done");
    }

    #[test]
    fn counts_and_sets_say_what_is_missing() {
        assert_eq!(at_least(3, 2), Ok(3));
        assert_eq!(at_least(1, 2), Err("1 of 2".into()));
        let wanted: HashSet<u8> = [1, 2, 3].into();
        let have: HashSet<u8> = [1, 3].into();
        assert_eq!(
            all_of(&have, &wanted).map_err(|m| m.to_string()),
            Err("1 of 3 missing, e.g. 2".into())
        );
        assert_eq!(all_of(&wanted, &have), Ok(()));
    }
}
