//! Writes one batch of rows and the offsets after them in one transaction: the rows of a
//! record are in the index exactly when its offset is, so an indexer killed at any moment
//! resumes without gaps or doubles. Rows are written with `unnest` over arrays, one statement
//! per table, whatever the batch's size.

use std::collections::{BTreeMap, HashMap};

use spillway_core::attempt::{AttemptNext, AttemptOutcome};

use crate::rows::{delivery_status, AttemptRow, DeadLetterRow, EventRow, Row};
use crate::IndexError;

/// The rows of a batch and the offset to resume each partition from after it.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<EventRow>,
    pub attempts: Vec<AttemptRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    /// `(topic, partition)` → the next offset to read.
    pub next_offsets: BTreeMap<(String, i32), i64>,
    /// Records in the batch, rows or not.
    pub records: usize,
}

// === impl Batch ===

impl Batch {
    /// Adds a record's row (if it has one) and moves its partition past it.
    pub fn add(&mut self, topic: &str, partition: i32, offset: i64, row: Option<Row>) {
        match row {
            Some(Row::Event(e)) => self.events.push(*e),
            Some(Row::Attempt(a)) => self.attempts.push(*a),
            Some(Row::DeadLetter(d)) => self.dead_letters.push(d),
            None => {}
        }
        self.next_offsets
            .insert((topic.to_owned(), partition), offset + 1);
        self.records += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// Writes `batch` in one transaction.
pub async fn write_batch(
    client: &mut tokio_postgres::Client,
    batch: &Batch,
) -> Result<(), IndexError> {
    let tx = client.transaction().await?;
    insert_events(&tx, &batch.events).await?;
    insert_attempts(&tx, &batch.attempts).await?;
    upsert_deliveries(&tx, &batch.attempts, &batch.dead_letters).await?;
    let mut touched: Vec<&str> = batch.events.iter().map(|e| e.event_id.as_str()).collect();
    touched.extend(batch.attempts.iter().map(|a| a.record.event_id.as_str()));
    touched.extend(batch.dead_letters.iter().map(|d| d.event_id.as_str()));
    touched.sort_unstable();
    touched.dedup();
    tx.execute(REFRESH_STATUS, &[&touched]).await?;
    let (topics, partitions, offsets): (Vec<&str>, Vec<i32>, Vec<i64>) = batch
        .next_offsets
        .iter()
        .map(|((t, p), o)| (t.as_str(), *p, *o))
        .fold(Default::default(), |(mut t, mut p, mut o), (a, b, c)| {
            t.push(a);
            p.push(b);
            o.push(c);
            (t, p, o)
        });
    tx.execute(UPSERT_OFFSETS, &[&topics, &partitions, &offsets])
        .await?;
    tx.commit().await?;
    Ok(())
}

const UPSERT_OFFSETS: &str = "
INSERT INTO spillway.index_offsets (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset";

async fn insert_events(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[EventRow],
) -> Result<(), IndexError> {
    if events.is_empty() {
        return Ok(());
    }
    // One row per event id (an `ON CONFLICT DO UPDATE` may not touch a row twice): the
    // source topic's copy over a quarantine copy, else the first.
    let mut chosen: Vec<&EventRow> = Vec::with_capacity(events.len());
    let mut at: HashMap<&str, usize> = HashMap::new();
    for e in events {
        match at.get(e.event_id.as_str()) {
            Some(&i) if chosen[i].quarantine_reason.is_some() && e.quarantine_reason.is_none() => {
                chosen[i] = e;
            }
            Some(_) => {}
            None => {
                at.insert(&e.event_id, chosen.len());
                chosen.push(e);
            }
        }
    }
    let events = chosen;
    let col = |f: fn(&EventRow) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ids = col(|e| Some(&e.event_id));
    let sources = col(|e| Some(&e.source));
    let types = col(|e| e.event_type.as_deref());
    let keys = col(|e| e.dedupe_key.as_deref());
    let topics = col(|e| Some(&e.topic));
    let content_types = col(|e| e.content_type.as_deref());
    let uris = col(|e| e.object_uri.as_deref());
    let batch_ids = col(|e| e.batch_id.as_deref());
    let tests = col(|e| e.test_for.as_deref());
    let quarantine = col(|e| e.quarantine_reason.as_deref());
    let received: Vec<i64> = events.iter().map(|e| e.received_ms).collect();
    let partitions: Vec<i32> = events.iter().map(|e| e.partition).collect();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    let sizes: Vec<i64> = events.iter().map(|e| e.body_bytes).collect();
    let headers: Vec<&serde_json::Value> = events.iter().map(|e| &e.headers).collect();
    // A quarantined copy redriven to its source topic (same event id) becomes the event: its
    // record is the one delivered, and its deliveries decide its status.
    tx.execute(
        "
INSERT INTO spillway.events AS e (event_id, source, event_type, dedupe_key, received_ms, topic,
    partition, record_offset, content_type, body_bytes, object_uri, batch_id, test_for,
    quarantine_reason, headers, status)
SELECT u.*, CASE WHEN u.q IS NULL THEN 'pending' ELSE 'quarantined' END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[],
    $7::int4[], $8::int8[], $9::text[], $10::int8[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::jsonb[])
    AS u(id, source, type, key, received, topic, part, off, ct, size, uri, batch, test, q, h)
ON CONFLICT (event_id) DO UPDATE SET
    topic = excluded.topic, partition = excluded.partition,
    record_offset = excluded.record_offset, quarantine_reason = NULL,
    headers = excluded.headers, body_bytes = excluded.body_bytes,
    status = CASE WHEN e.status = 'quarantined' THEN 'pending' ELSE e.status END
WHERE e.quarantine_reason IS NOT NULL AND excluded.quarantine_reason IS NULL",
        &[
            &ids,
            &sources,
            &types,
            &keys,
            &received,
            &topics,
            &partitions,
            &offsets,
            &content_types,
            &sizes,
            &uris,
            &batch_ids,
            &tests,
            &quarantine,
            &headers,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_attempts(
    tx: &tokio_postgres::Transaction<'_>,
    attempts: &[AttemptRow],
) -> Result<(), IndexError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&AttemptRow) -> Option<&str>| attempts.iter().map(f).collect::<Vec<_>>();
    let partitions: Vec<i32> = attempts.iter().map(|a| a.partition).collect();
    let offsets: Vec<i64> = attempts.iter().map(|a| a.offset).collect();
    let ids = text(|a| Some(&a.record.event_id));
    let subs = text(|a| Some(&a.record.subscription));
    let numbers: Vec<i32> = attempts.iter().map(|a| a.record.attempt as i32).collect();
    let at: Vec<i64> = attempts.iter().map(|a| a.record.at_ms as i64).collect();
    let latency: Vec<i64> = attempts
        .iter()
        .map(|a| a.record.latency_ms as i64)
        .collect();
    let outcomes: Vec<String> = attempts
        .iter()
        .map(|a| {
            serde_json::to_value(a.record.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let statuses: Vec<Option<i32>> = attempts
        .iter()
        .map(|a| a.record.http_status.map(i32::from))
        .collect();
    let errors = text(|a| a.record.error.as_deref());
    let heads = text(|a| a.record.response_head.as_deref());
    let kinds: Vec<&str> = attempts.iter().map(|a| next_kind(&a.record.next)).collect();
    let due: Vec<Option<i64>> = attempts.iter().map(|a| next_due(&a.record.next)).collect();
    let reasons = text(|a| dead_reason(&a.record.next));
    let tests: Vec<bool> = attempts.iter().map(|a| a.record.test).collect();
    tx.execute(
        "
INSERT INTO spillway.attempts (partition, record_offset, event_id, subscription, attempt, at_ms,
    latency_ms, outcome, http_status, error, response_head, next_kind, next_due_ms, dead_reason,
    test)
SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::int8[],
    $7::int8[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::text[], $13::int8[],
    $14::text[], $15::bool[])
ON CONFLICT (partition, record_offset) DO NOTHING",
        &[
            &partitions,
            &offsets,
            &ids,
            &subs,
            &numbers,
            &at,
            &latency,
            &outcomes,
            &statuses,
            &errors,
            &heads,
            &kinds,
            &due,
            &reasons,
            &tests,
        ],
    )
    .await?;
    Ok(())
}

/// A delivery's latest state, from an attempt or a dead letter.
struct DeliveryState<'a> {
    status: &'static str,
    attempts: i32,
    http_status: Option<i32>,
    error: Option<&'a str>,
    last_ms: i64,
    next_due_ms: Option<i64>,
    dead_reason: Option<&'a str>,
}

/// Each delivery's latest state in the batch goes into `deliveries` unless the row there is
/// newer (an attempt indexed late, a dead letter behind its attempt record).
async fn upsert_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    attempts: &[AttemptRow],
    dead_letters: &[DeadLetterRow],
) -> Result<(), IndexError> {
    let mut latest: HashMap<(&str, &str), DeliveryState<'_>> = HashMap::new();
    for a in attempts {
        let r = &a.record;
        // A postponement names the attempt still to come.
        let made = if r.outcome == AttemptOutcome::Postponed {
            r.attempt.saturating_sub(1)
        } else {
            r.attempt
        };
        let state = DeliveryState {
            status: delivery_status(&r.next),
            attempts: made as i32,
            http_status: r.http_status.map(i32::from),
            error: r.error.as_deref(),
            last_ms: r.at_ms as i64,
            next_due_ms: next_due(&r.next),
            dead_reason: dead_reason(&r.next),
        };
        newest(&mut latest, (&r.event_id, &r.subscription), state);
    }
    for d in dead_letters {
        let state = DeliveryState {
            status: "dead_lettered",
            attempts: d.attempts,
            http_status: d.last_status,
            error: d.last_error.as_deref(),
            last_ms: d.dead_ms,
            next_due_ms: None,
            dead_reason: Some(&d.reason),
        };
        newest(&mut latest, (&d.event_id, &d.subscription), state);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut c = DeliveryColumns::default();
    for ((event, sub), s) in &latest {
        c.ids.push(event);
        c.subs.push(sub);
        c.statuses.push(s.status);
        c.attempts.push(s.attempts);
        c.http.push(s.http_status);
        c.errors.push(s.error);
        c.last.push(s.last_ms);
        c.due.push(s.next_due_ms);
        c.reasons.push(s.dead_reason);
    }
    tx.execute(
        "
INSERT INTO spillway.deliveries AS d (event_id, subscription, status, attempts,
    last_http_status, last_error, last_ms, next_due_ms, dead_reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[], $6::text[],
    $7::int8[], $8::int8[], $9::text[])
ON CONFLICT (event_id, subscription) DO UPDATE SET
    status = excluded.status, attempts = GREATEST(d.attempts, excluded.attempts),
    last_http_status = COALESCE(excluded.last_http_status, d.last_http_status),
    last_error = excluded.last_error,
    last_ms = excluded.last_ms, next_due_ms = excluded.next_due_ms,
    dead_reason = excluded.dead_reason
WHERE excluded.last_ms >= d.last_ms",
        &[
            &c.ids,
            &c.subs,
            &c.statuses,
            &c.attempts,
            &c.http,
            &c.errors,
            &c.last,
            &c.due,
            &c.reasons,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Default)]
struct DeliveryColumns<'a> {
    ids: Vec<&'a str>,
    subs: Vec<&'a str>,
    statuses: Vec<&'a str>,
    attempts: Vec<i32>,
    http: Vec<Option<i32>>,
    errors: Vec<Option<&'a str>>,
    last: Vec<i64>,
    due: Vec<Option<i64>>,
    reasons: Vec<Option<&'a str>>,
}

/// Keeps the later of two states of one delivery (the later one on a tie: records are
/// offered in the order they were read).
fn newest<'a>(
    latest: &mut HashMap<(&'a str, &'a str), DeliveryState<'a>>,
    key: (&'a str, &'a str),
    state: DeliveryState<'a>,
) {
    match latest.get(&key) {
        Some(had) if had.last_ms > state.last_ms => {}
        _ => {
            latest.insert(key, state);
        }
    }
}

/// An event's status and last HTTP status from its deliveries, for the events a batch touched.
const REFRESH_STATUS: &str = "
UPDATE spillway.events e SET
    status = CASE
        WHEN e.quarantine_reason IS NOT NULL THEN 'quarantined'
        WHEN d.dead > 0 THEN 'dead_lettered'
        WHEN d.retrying > 0 THEN 'retrying'
        ELSE 'delivered' END,
    last_http_status = d.last_http_status,
    last_attempt_ms = d.last_ms
FROM (
    SELECT event_id,
        count(*) FILTER (WHERE status = 'dead_lettered') AS dead,
        count(*) FILTER (WHERE status = 'retrying') AS retrying,
        (array_agg(last_http_status ORDER BY last_ms DESC))[1] AS last_http_status,
        max(last_ms) AS last_ms
    FROM spillway.deliveries WHERE event_id = ANY($1::text[]) GROUP BY event_id
) d
WHERE e.event_id = d.event_id";

fn next_kind(next: &AttemptNext) -> &'static str {
    match next {
        AttemptNext::Done => "done",
        AttemptNext::Retry { .. } => "retry",
        AttemptNext::DeadLetter { .. } => "dead_letter",
        AttemptNext::Abandoned => "abandoned",
    }
}

fn next_due(next: &AttemptNext) -> Option<i64> {
    match next {
        AttemptNext::Retry { due_ms } => Some(*due_ms as i64),
        _ => None,
    }
}

fn dead_reason(next: &AttemptNext) -> Option<&str> {
    match next {
        AttemptNext::DeadLetter { reason } => Some(reason),
        _ => None,
    }
}
