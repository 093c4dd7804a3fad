//! Health as the index sees it over a recent window: per subscription the attempts, success
//! rate, latency percentiles, deliveries waiting for another attempt (and the oldest one's
//! age) and dead letters; per source the events accepted and quarantined.

use deadpool_postgres::Pool;
use serde::Serialize;
use utoipa::ToSchema;

use crate::IndexError;

/// One subscription over the window. Test webhooks are left out.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionFigures {
    pub subscription: String,
    /// Attempts made in the window (postponements not counted).
    pub attempts: i64,
    /// Of those, answered 2xx.
    pub delivered: i64,
    /// `delivered / attempts`; absent without attempts.
    pub success_rate: Option<f64>,
    /// Attempt latency percentiles in milliseconds; absent without attempts.
    pub latency_ms: Option<Percentiles>,
    /// Deliveries waiting in a retry tier now.
    pub pending: i64,
    /// When the oldest of those events was received, milliseconds since the Unix epoch.
    pub oldest_pending_received_ms: Option<i64>,
    /// Deliveries dead-lettered in the window (those redriven since too), from their attempt
    /// records (none with `worker.record_attempts: false`).
    pub dead_letters: i64,
}

impl SubscriptionFigures {
    /// A subscription with nothing in the window.
    pub fn empty(subscription: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            attempts: 0,
            delivered: 0,
            success_rate: None,
            latency_ms: None,
            pending: 0,
            oldest_pending_received_ms: None,
            dead_letters: 0,
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One source over the window, as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SourceFigures {
    pub source: String,
    /// Events accepted (received in the window and not quarantined).
    pub accepted: i64,
    /// Records its schema refused, kept in the quarantine.
    pub quarantined: i64,
}

const ATTEMPTS: &str = "\
SELECT subscription, count(*), count(*) FILTER (WHERE outcome = 'delivered'),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY latency_ms)
FROM spillway.attempts
WHERE at_ms >= $1 AND NOT test AND outcome <> 'postponed'
GROUP BY subscription";

const PENDING: &str = "\
SELECT d.subscription, count(*), min(e.received_ms)
FROM spillway.deliveries d JOIN spillway.events e ON e.event_id = d.event_id
WHERE d.status = 'retrying' AND e.test_for IS NULL
GROUP BY d.subscription";

// Dead letters as the attempts that led to them: a delivery redriven since still counts.
const DEAD: &str = "\
SELECT subscription, count(*)
FROM spillway.attempts
WHERE at_ms >= $1 AND NOT test AND next_kind = 'dead_letter'
GROUP BY subscription";

const SOURCES: &str = "\
SELECT source, count(*) FILTER (WHERE quarantine_reason IS NULL),
       count(*) FILTER (WHERE quarantine_reason IS NOT NULL)
FROM spillway.events
WHERE received_ms >= $1 AND test_for IS NULL
GROUP BY source ORDER BY source";

/// Every subscription with attempts in the window since `since_ms`, deliveries pending or
/// dead letters in it, by id.
pub async fn subscriptions(
    pool: &Pool,
    since_ms: i64,
) -> Result<Vec<SubscriptionFigures>, IndexError> {
    let client = pool.get().await?;
    let mut out: std::collections::BTreeMap<String, SubscriptionFigures> = Default::default();
    let blank = SubscriptionFigures::empty;
    for row in client.query(ATTEMPTS, &[&since_ms]).await? {
        let id: String = row.try_get(0)?;
        let figures = out.entry(id.clone()).or_insert_with(|| blank(&id));
        figures.attempts = row.try_get(1)?;
        figures.delivered = row.try_get(2)?;
        if figures.attempts > 0 {
            figures.success_rate = Some(figures.delivered as f64 / figures.attempts as f64);
        }
        let p: Option<Vec<f64>> = row.try_get(3)?;
        figures.latency_ms = p.and_then(|p| match p[..] {
            [p50, p95, p99] => Some(Percentiles { p50, p95, p99 }),
            _ => None,
        });
    }
    for row in client.query(PENDING, &[]).await? {
        let id: String = row.try_get(0)?;
        let figures = out.entry(id.clone()).or_insert_with(|| blank(&id));
        figures.pending = row.try_get(1)?;
        figures.oldest_pending_received_ms = row.try_get(2)?;
    }
    for row in client.query(DEAD, &[&since_ms]).await? {
        let id: String = row.try_get(0)?;
        let figures = out.entry(id.clone()).or_insert_with(|| blank(&id));
        figures.dead_letters = row.try_get(1)?;
    }
    Ok(out.into_values().collect())
}

/// Every source with events received since `since_ms`, by name.
pub async fn sources(pool: &Pool, since_ms: i64) -> Result<Vec<SourceFigures>, IndexError> {
    let client = pool.get().await?;
    client
        .query(SOURCES, &[&since_ms])
        .await?
        .iter()
        .map(|row| {
            Ok(SourceFigures {
                source: row.try_get(0)?,
                accepted: row.try_get(1)?,
                quarantined: row.try_get(2)?,
            })
        })
        .collect()
}
