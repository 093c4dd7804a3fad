//! Searches over the index: events by id, dedupe key, source, type, time, status and last
//! HTTP status, newest first, a page at a time; one event with its deliveries and attempts;
//! and the deliveries a bulk retry would make again.

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};

use crate::IndexError;

/// The most events one page holds.
pub const MAX_PAGE: i64 = 500;

/// Which events to find. Every field given narrows the search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// The ingress's event id (the `event_id` of the 202 answer).
    pub event_id: Option<String>,
    /// The provider's delivery or event id the source deduplicates on (Stripe's `evt_...`,
    /// GitHub's `X-GitHub-Delivery`).
    pub dedupe_key: Option<String>,
    pub source: Option<String>,
    pub event_type: Option<String>,
    /// `pending`, `delivered`, `retrying`, `dead_lettered` or `quarantined`.
    pub status: Option<EventStatus>,
    /// The HTTP status of the event's latest attempt.
    pub http_status: Option<i32>,
    /// Events with a delivery to this subscription.
    pub subscription: Option<String>,
    /// Received at or after, milliseconds since the Unix epoch.
    pub from_ms: Option<i64>,
    /// Received before, milliseconds since the Unix epoch.
    pub to_ms: Option<i64>,
}

/// Where an event stands with its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// No attempt indexed yet (or no subscription wants it).
    Pending,
    /// Every subscription that had it got it.
    Delivered,
    /// At least one delivery waits for another attempt.
    Retrying,
    /// At least one delivery is a dead letter.
    DeadLettered,
    /// Its source's schema refused it: it was never delivered.
    Quarantined,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Quarantined => "quarantined",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "delivered" => Self::Delivered,
            "retrying" => Self::Retrying,
            "dead_lettered" => Self::DeadLettered,
            "quarantined" => Self::Quarantined,
            _ => Self::Pending,
        }
    }
}

/// An event as a search lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventSummary {
    pub event_id: String,
    pub source: String,
    pub event_type: Option<String>,
    pub dedupe_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub received_ms: i64,
    pub status: EventStatus,
    pub last_http_status: Option<i32>,
    pub body_bytes: i64,
    /// For a test event: the subscription it was sent to.
    pub test_for: Option<String>,
    pub quarantine_reason: Option<String>,
}

/// One page of a search, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// Pass as `before` for the next page; absent on the last one.
    pub next: Option<String>,
}

/// An event with where its record is and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub content_type: Option<String>,
    /// Where the body is when it was too large for its record.
    pub object_uri: Option<String>,
    pub batch_id: Option<String>,
    /// The record's headers in order, each `[name, value]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: serde_json::Value,
    pub deliveries: Vec<Delivery>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

/// Where an event stands with one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Delivery {
    pub subscription: String,
    /// `delivered`, `retrying` or `dead_lettered`.
    pub status: String,
    pub attempts: i32,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_ms: i64,
    /// When the next attempt is due, for a delivery waiting in a retry tier.
    pub next_due_ms: Option<i64>,
    pub dead_reason: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Attempt {
    pub subscription: String,
    pub attempt: i32,
    pub at_ms: i64,
    pub latency_ms: i64,
    /// `delivered`, `failed`, `refused`, or `postponed` (parked without a request: circuit
    /// open, subscription slow).
    pub outcome: String,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// The first KiB of the subscriber's answer.
    pub response_head: Option<String>,
    /// `done`, `retry`, `dead_letter` or `abandoned`.
    pub next: String,
    pub next_due_ms: Option<i64>,
    pub dead_reason: Option<String>,
    pub test: bool,
}

/// The WHERE clause of a filter and its parameters.
struct Clause {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Clause {
    fn of(filter: &EventFilter) -> Self {
        let mut clause = Self {
            conditions: Vec::new(),
            params: Vec::new(),
        };
        let text = [
            ("e.event_id", &filter.event_id),
            ("e.dedupe_key", &filter.dedupe_key),
            ("e.source", &filter.source),
            ("e.event_type", &filter.event_type),
        ];
        for (column, value) in text {
            if let Some(v) = value {
                clause.push(&format!("{column} = $"), v.clone());
            }
        }
        if let Some(status) = filter.status {
            clause.push("e.status = $", status.as_str().to_owned());
        }
        if let Some(code) = filter.http_status {
            clause.push("e.last_http_status = $", code);
        }
        if let Some(from) = filter.from_ms {
            clause.push("e.received_ms >= $", from);
        }
        if let Some(to) = filter.to_ms {
            clause.push("e.received_ms < $", to);
        }
        if let Some(sub) = &filter.subscription {
            clause.push(
                "EXISTS (SELECT 1 FROM spillway.deliveries d WHERE d.event_id = e.event_id AND d.subscription = $)",
                sub.clone(),
            );
        }
        clause
    }

    /// Adds `condition`, its `$` numbered for `value`.
    fn push<T: ToSql + Sync + Send + 'static>(&mut self, condition: &str, value: T) {
        let n = self.bind(value);
        self.conditions
            .push(condition.replacen('$', &format!("${n}"), 1));
    }

    /// Adds a parameter; returns its number.
    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> usize {
        self.params.push(Box::new(value));
        self.params.len()
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            "TRUE".into()
        } else {
            self.conditions.join(" AND ")
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

const SUMMARY_COLUMNS: &str = "e.event_id, e.source, e.event_type, e.dedupe_key, e.received_ms, \
    e.status, e.last_http_status, e.body_bytes, e.test_for, e.quarantine_reason";

fn summary(row: &Row) -> Result<EventSummary, IndexError> {
    Ok(EventSummary {
        event_id: row.try_get(0)?,
        source: row.try_get(1)?,
        event_type: row.try_get(2)?,
        dedupe_key: row.try_get(3)?,
        received_ms: row.try_get(4)?,
        status: EventStatus::parse(row.try_get(5)?),
        last_http_status: row.try_get(6)?,
        body_bytes: row.try_get(7)?,
        test_for: row.try_get(8)?,
        quarantine_reason: row.try_get(9)?,
    })
}

/// A page of the events `filter` finds, newest first, starting after the cursor `before`.
pub async fn search(
    pool: &Pool,
    filter: &EventFilter,
    before: Option<&Cursor>,
    limit: i64,
) -> Result<EventPage, IndexError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut clause = Clause::of(filter);
    if let Some(cursor) = before {
        let ms = clause.bind(cursor.received_ms);
        let id = clause.bind(cursor.event_id.clone());
        clause
            .conditions
            .push(format!("(e.received_ms, e.event_id) < (${ms}, ${id})"));
    }
    let n = clause.bind(limit + 1);
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM spillway.events e WHERE {} \
         ORDER BY e.received_ms DESC, e.event_id DESC LIMIT ${n}",
        clause.sql(),
    );
    let client = pool.get().await?;
    let rows = client.query(&sql, &clause.params()).await?;
    let mut events = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    let next = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|e| {
            Cursor {
                received_ms: e.received_ms,
                event_id: e.event_id.clone(),
            }
            .to_string()
        })
    } else {
        None
    };
    Ok(EventPage { events, next })
}

/// Where a page ends: the last event's receipt time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received_ms: i64,
    pub event_id: String,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.received_ms, self.event_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (ms, id) = text.split_once('_').ok_or(())?;
        Ok(Self {
            received_ms: ms.parse().map_err(|_| ())?,
            event_id: id.to_owned(),
        })
    }
}

/// One event with its deliveries and attempts; None when the index does not have it.
pub async fn event(pool: &Pool, event_id: &str) -> Result<Option<EventDetail>, IndexError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, e.topic, e.partition, e.record_offset, e.content_type, \
         e.object_uri, e.batch_id, e.headers FROM spillway.events e WHERE e.event_id = $1"
    );
    let Some(row) = client.query_opt(&sql, &[&event_id]).await? else {
        return Ok(None);
    };
    let deliveries = client
        .query(
            "SELECT subscription, status, attempts, last_http_status, last_error, last_ms, \
             next_due_ms, dead_reason FROM spillway.deliveries WHERE event_id = $1 \
             ORDER BY subscription",
            &[&event_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Delivery {
                subscription: r.try_get(0)?,
                status: r.try_get(1)?,
                attempts: r.try_get(2)?,
                last_http_status: r.try_get(3)?,
                last_error: r.try_get(4)?,
                last_ms: r.try_get(5)?,
                next_due_ms: r.try_get(6)?,
                dead_reason: r.try_get(7)?,
            })
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    let attempts = client
        .query(
            "SELECT subscription, attempt, at_ms, latency_ms, outcome, http_status, error, \
             response_head, next_kind, next_due_ms, dead_reason, test FROM spillway.attempts \
             WHERE event_id = $1 ORDER BY at_ms, attempt",
            &[&event_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Attempt {
                subscription: r.try_get(0)?,
                attempt: r.try_get(1)?,
                at_ms: r.try_get(2)?,
                latency_ms: r.try_get(3)?,
                outcome: r.try_get(4)?,
                http_status: r.try_get(5)?,
                error: r.try_get(6)?,
                response_head: r.try_get(7)?,
                next: r.try_get(8)?,
                next_due_ms: r.try_get(9)?,
                dead_reason: r.try_get(10)?,
                test: r.try_get(11)?,
            })
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    Ok(Some(EventDetail {
        summary: summary(&row)?,
        topic: row.try_get(10)?,
        partition: row.try_get(11)?,
        offset: row.try_get(12)?,
        content_type: row.try_get(13)?,
        object_uri: row.try_get(14)?,
        batch_id: row.try_get(15)?,
        headers: row.try_get(16)?,
        deliveries,
        attempts,
    }))
}

/// One delivery a retry would make again: the event's record and the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTarget {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub subscription: String,
}

/// The deliveries of the events `filter` finds (to `filter.subscription` only, when given),
/// oldest event first, at most `limit`; with `statuses`, only deliveries in one of them. A
/// preview and the retry it previews both come from here, so they agree.
pub async fn retry_targets(
    pool: &Pool,
    filter: &EventFilter,
    statuses: Option<&[&str]>,
    limit: i64,
) -> Result<Vec<RetryTarget>, IndexError> {
    let mut clause = Clause::of(filter);
    if let Some(sub) = &filter.subscription {
        clause.push("d.subscription = $", sub.clone());
    }
    if let Some(statuses) = statuses {
        let owned: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
        clause.push("d.status = ANY($)", owned);
    }
    let n = clause.bind(limit);
    let sql = format!(
        "SELECT e.event_id, e.topic, e.partition, e.record_offset, d.subscription \
         FROM spillway.events e JOIN spillway.deliveries d ON d.event_id = e.event_id \
         WHERE {} ORDER BY e.received_ms, e.event_id, d.subscription LIMIT ${n}",
        clause.sql()
    );
    let client = pool.get().await?;
    let rows = client.query(&sql, &clause.params()).await?;
    rows.iter()
        .map(|r| {
            Ok(RetryTarget {
                event_id: r.try_get(0)?,
                topic: r.try_get(1)?,
                partition: r.try_get(2)?,
                offset: r.try_get(3)?,
                subscription: r.try_get(4)?,
            })
        })
        .collect()
}
