//! Dead letters: listing them, and redriving them into the retry path for a fresh set of
//! attempts (after the subscriber is fixed).
//!
//! The dead-letter topic is append-only: a redriven record stays there too. Redriving the same
//! filter twice delivers twice; subscribers dedupe on `webhook-id` as for any retry.

use std::time::Duration;

use spillway_config::Config;
use spillway_core::headers;
use spillway_kafka::reader::{read_topic_where, ReadRecord};

use crate::control;
use crate::replay::requeue;
use crate::topics::dead_letter_topic;
use crate::WorkerError;

/// Which dead letters a command applies to; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subscription: Option<String>,
    pub source: Option<String>,
    /// Dead since (inclusive), milliseconds since the epoch.
    pub since_ms: Option<u64>,
    /// Dead until (exclusive), milliseconds since the epoch.
    pub until_ms: Option<u64>,
    /// Only dead letters of these subscriptions (those that still exist, say).
    pub known: Option<Vec<String>>,
    /// Hold at most this many, and one more to tell that there are more.
    pub max: Option<usize>,
}

/// A dead letter as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: ReadRecord,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.record.header(name)
    }

    pub fn dead_at_ms(&self) -> u64 {
        dead_at_ms(&self.record)
    }
}

// === impl Filter ===

impl Filter {
    fn matches(&self, record: &ReadRecord) -> bool {
        let same = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        let dead_at = dead_at_ms(record);
        let subscription = record.header(control::SUBSCRIPTION);
        same(&self.subscription, subscription)
            && self
                .known
                .as_ref()
                .is_none_or(|known| subscription.is_some_and(|s| known.iter().any(|k| k == s)))
            && same(&self.source, record.header(headers::SOURCE))
            && self.since_ms.is_none_or(|s| dead_at >= s)
            && self.until_ms.is_none_or(|u| dead_at < u)
    }
}

fn dead_at_ms(record: &ReadRecord) -> u64 {
    record
        .header(control::DEAD_AT)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// The dead letters matching `filter`, oldest first. Blocking: call from `spawn_blocking`.
pub fn list(
    config: &Config,
    filter: &Filter,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, WorkerError> {
    let topic = dead_letter_topic(config);
    // Filtered as read: only the matching dead letters are held, up to the cap.
    let mut cap = crate::replay::Cap::new(filter.max);
    let mut all: Vec<DeadLetter> =
        read_topic_where(&(&config.kafka).into(), &topic, timeout, |r| {
            cap.keep(filter.matches(r))
        })?
        .into_iter()
        .map(|record| DeadLetter { record })
        .collect();
    all.sort_by_key(DeadLetter::dead_at_ms);
    Ok(all)
}

/// Puts dead letters back into the first retry tier, due now, as attempt 1 of a fresh series.
/// Returns how many were redriven.
pub async fn redrive(config: &Config, letters: &[DeadLetter]) -> Result<usize, WorkerError> {
    let items = letters.iter().map(|l| {
        (
            &l.record,
            l.header(control::SUBSCRIPTION).unwrap_or_default(),
        )
    });
    requeue(config, items, "redrive", None).await
}
