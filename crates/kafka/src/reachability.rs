//! Whether any broker is reachable, from librdkafka's own signals, so that a send fails at once
//! with [`crate::ProduceError::Unreachable`] during an outage instead of waiting out
//! `delivery_timeout` with a record that can only time out.
//!
//! - librdkafka's error callback reports `AllBrokersDown` when the last broker connection it
//!   knows of fails: the outage begins (librdkafka 2.12 reports it again on failed reconnects).
//! - Its statistics (every `statistics.interval.ms`, [`STATISTICS_INTERVAL`] unless
//!   `kafka.properties` says otherwise) list each broker's connection state: one broker `UP`
//!   ends the outage; none confirms it. librdkafka keeps trying to connect to some broker every
//!   second while none is up, whether or not anything is sent, so the outage ends on its own:
//!   a refused send is never what would have ended it.
//! - An acknowledged record ends it too.
//! - An outage nothing confirmed for [`hold`] is forgotten, so that without statistics (set to
//!   0) sends go back to waiting for librdkafka rather than failing for ever.
//!
//! Before the first signal the state is unknown, which counts as reachable: a starting producer
//! sends, and waits, as it always did. A replacement producer starts from what the producer it
//! replaces saw.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::{Broker, Statistics};

/// How often librdkafka reports its brokers' states (`statistics.interval.ms`, its granularity
/// being a second): the longest a recovered cluster goes unnoticed, on top of librdkafka's own
/// reconnect backoff (`reconnect.backoff.max.ms`, 1 s as the producer sets it). The outage
/// itself is noticed as soon as the last connection fails, whatever this says.
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);

/// How many statistics intervals an outage is believed without a fresh confirmation: a late or
/// lost report does not end it, a producer whose statistics stopped does not keep it.
const HOLD_INTERVALS: u32 = 3;

/// How long an unconfirmed outage lasts, given the effective statistics interval (`None` when
/// statistics are off, which leaves only the `AllBrokersDown` report, for [`STATISTICS_INTERVAL`]
/// times [`HOLD_INTERVALS`]).
pub(crate) fn hold(statistics_interval: Option<Duration>) -> Duration {
    statistics_interval.unwrap_or(STATISTICS_INTERVAL) * HOLD_INTERVALS
}

/// What the signals said last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No signal yet: reachable, as far as anyone knows.
    Unknown,
    /// A broker was up.
    Up,
    /// Every broker was down, last confirmed at `confirmed`.
    Down { confirmed: Instant },
}

impl Seen {
    fn all_brokers_down(self, now: Instant) -> Self {
        Self::Down { confirmed: now }
    }

    /// A statistics report: whether it listed a broker up. Only an outage already reported
    /// is confirmed by a report without one, since brokers are not up yet while a producer
    /// starts or reconnects after an idle period.
    fn statistics(self, any_up: bool, now: Instant) -> Self {
        match (any_up, self) {
            (true, _) => Self::Up,
            (false, Self::Down { .. }) => Self::Down { confirmed: now },
            (false, other) => other,
        }
    }

    fn delivered(self) -> Self {
        Self::Up
    }

    fn unreachable(self, now: Instant, hold: Duration) -> bool {
        match self {
            Self::Down { confirmed } => now.saturating_duration_since(confirmed) < hold,
            Self::Unknown | Self::Up => false,
        }
    }
}

/// One librdkafka client's view of the cluster, fed by its [`Signals`].
#[derive(Debug)]
pub(crate) struct Reachability {
    seen: Mutex<Seen>,
    hold: Duration,
}

impl Reachability {
    pub(crate) fn new(hold: Duration) -> Self {
        Self {
            seen: Mutex::new(Seen::Unknown),
            hold,
        }
    }

    /// Whether sends should fail at once: every broker is down, as recently confirmed.
    pub(crate) fn unreachable(&self, now: Instant) -> bool {
        self.update(|seen| seen).1.unreachable(now, self.hold)
    }

    pub(crate) fn delivered(&self) {
        self.update(Seen::delivered);
    }

    /// Takes over what `other` (the client this one replaces) saw, unless this one has seen
    /// something itself already, which is newer.
    pub(crate) fn inherit(&self, other: &Self) {
        let (_, theirs) = other.update(|seen| seen);
        self.update(|mine| if mine == Seen::Unknown { theirs } else { mine });
    }

    /// Applies `change`; the state before and after.
    fn update(&self, change: impl FnOnce(Seen) -> Seen) -> (Seen, Seen) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let before = *seen;
        *seen = change(before);
        (before, *seen)
    }
}

/// A real broker's connection is up. The internal broker (always "up") and the logical ones
/// (coordinators, without a connection of their own) say nothing about the cluster.
fn connected(broker: &Broker) -> bool {
    broker.state == "UP" && broker.source != "internal" && broker.source != "logical"
}

/// The producer's librdkafka context: passes the error and statistics callbacks to its
/// [`Reachability`], and logs librdkafka's errors through `tracing`.
pub(crate) struct Signals {
    reachability: Arc<Reachability>,
}

impl Signals {
    pub(crate) fn new(reachability: Arc<Reachability>) -> Self {
        Self { reachability }
    }
}

impl ClientContext for Signals {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            let (before, _) = self
                .reachability
                .update(|seen| seen.all_brokers_down(Instant::now()));
            // Once per outage: librdkafka repeats the report with every failed reconnect.
            if !matches!(before, Seen::Down { .. }) {
                tracing::warn!(%reason, "kafka: every broker is down; sends fail until one is up");
            }
        } else {
            // At error, as librdkafka's default context logs them.
            tracing::error!(error = %error, %reason, "kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let any_up = statistics.brokers.values().any(connected);
        let (before, after) = self
            .reachability
            .update(|seen| seen.statistics(any_up, Instant::now()));
        if matches!(before, Seen::Down { .. }) && after == Seen::Up {
            tracing::info!("kafka: a broker is up again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(3);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn unknown_counts_as_reachable_and_reports_without_brokers_up_change_nothing() {
        let t = Instant::now();
        let seen = Seen::Unknown;
        assert!(!seen.unreachable(t, HOLD));
        // A starting producer's first reports list its bootstrap broker still connecting.
        let seen = seen.statistics(false, at(t, 1)).statistics(false, at(t, 2));
        assert_eq!(seen, Seen::Unknown);
        assert!(!seen.unreachable(at(t, 2), HOLD));
        assert!(!Seen::Up.statistics(false, t).unreachable(t, HOLD));
    }

    #[test]
    fn all_brokers_down_makes_sends_fail_until_a_broker_is_up() {
        let t = Instant::now();
        let seen = Seen::Up.all_brokers_down(t);
        assert!(seen.unreachable(t, HOLD));
        // Reports confirm it for as long as they list no broker up.
        let seen = (1..=10).fold(seen, |seen, s| seen.statistics(false, at(t, s)));
        assert!(seen.unreachable(at(t, 11), HOLD));
        // One report with a broker up ends it: librdkafka reconnects on its own, so this
        // needs no send.
        let seen = seen.statistics(true, at(t, 11));
        assert_eq!(seen, Seen::Up);
        assert!(!seen.unreachable(at(t, 11), HOLD));
    }

    #[test]
    fn an_acknowledged_record_ends_the_outage() {
        let t = Instant::now();
        let seen = Seen::Unknown.all_brokers_down(t).delivered();
        assert!(!seen.unreachable(t, HOLD));
    }

    #[test]
    fn an_unconfirmed_outage_is_forgotten_after_the_hold() {
        let t = Instant::now();
        let seen = Seen::Unknown.all_brokers_down(t);
        assert!(seen.unreachable(at(t, 2), HOLD));
        assert!(!seen.unreachable(at(t, 3), HOLD), "statistics stopped");
        // Without statistics, three default intervals.
        assert_eq!(hold(None), Duration::from_secs(3));
        assert_eq!(hold(Some(Duration::from_secs(5))), Duration::from_secs(15));
    }

    #[test]
    fn only_real_broker_connections_count() {
        let broker = |source: &str, state: &str| Broker {
            source: source.into(),
            state: state.into(),
            ..Broker::default()
        };
        assert!(connected(&broker("configured", "UP")));
        assert!(connected(&broker("learned", "UP")));
        assert!(!connected(&broker("learned", "DOWN")));
        assert!(!connected(&broker("configured", "CONNECT")));
        assert!(!connected(&broker("internal", "UP")));
        assert!(!connected(&broker("logical", "UP")));
    }

    #[test]
    fn the_context_follows_the_callbacks() {
        let reachability = Arc::new(Reachability::new(HOLD));
        let signals = Signals::new(reachability.clone());
        signals.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(reachability.unreachable(Instant::now()));
        // Other errors say nothing about reachability.
        signals.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "x",
        );
        assert!(reachability.unreachable(Instant::now()));
        let report = |state: &str| {
            let mut statistics = Statistics::default();
            let broker = Broker {
                source: "configured".into(),
                state: state.into(),
                ..Broker::default()
            };
            statistics
                .brokers
                .insert("127.0.0.1:9092/bootstrap".into(), broker);
            statistics
        };
        signals.stats(report("CONNECT"));
        assert!(reachability.unreachable(Instant::now()), "confirmed");
        signals.stats(report("UP"));
        assert!(!reachability.unreachable(Instant::now()));
        signals.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let replacement = Reachability::new(HOLD);
        replacement.inherit(&reachability);
        assert!(replacement.unreachable(Instant::now()), "inherited");
        // Its own signals win over what it would inherit.
        reachability.delivered();
        assert!(!reachability.unreachable(Instant::now()));
        let down = Reachability::new(HOLD);
        down.update(|seen| seen.all_brokers_down(Instant::now()));
        down.inherit(&reachability);
        assert!(down.unreachable(Instant::now()), "its own outage stays");
    }
}
