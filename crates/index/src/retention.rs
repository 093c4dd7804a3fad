//! Retention: rows older than `console.index.retention` are deleted, a bounded number per
//! statement so that no deletion holds locks for long.

use std::time::Duration;

use spillway_core::time::now_ms;

use crate::IndexError;

/// Rows deleted per statement.
const CHUNK: i64 = 10_000;

/// Deletes the events, attempts and deliveries older than `retention`, and audit entries
/// older than `audit_retention`; returns how many rows went.
pub async fn delete_expired(
    client: &tokio_postgres::Client,
    retention: Duration,
    audit_retention: Duration,
) -> Result<u64, IndexError> {
    let before = |age: Duration| {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        (now_ms() as i64).saturating_sub(age_ms)
    };
    let (cutoff, audit_cutoff) = (before(retention), before(audit_retention));
    let mut deleted = 0;
    for (statement, cutoff) in [
        (
            "DELETE FROM spillway.events WHERE event_id IN (SELECT event_id FROM spillway.events WHERE received_ms < $1 LIMIT $2)",
            cutoff,
        ),
        (
            "DELETE FROM spillway.attempts WHERE (partition, record_offset) IN (SELECT partition, record_offset FROM spillway.attempts WHERE at_ms < $1 LIMIT $2)",
            cutoff,
        ),
        (
            "DELETE FROM spillway.deliveries WHERE (event_id, subscription) IN (SELECT event_id, subscription FROM spillway.deliveries WHERE last_ms < $1 LIMIT $2)",
            cutoff,
        ),
        (
            "DELETE FROM spillway.audit_log WHERE id IN (SELECT id FROM spillway.audit_log WHERE at_ms < $1 LIMIT $2)",
            audit_cutoff,
        ),
    ] {
        loop {
            let n = client.execute(statement, &[&cutoff, &CHUNK]).await?;
            deleted += n;
            if n < CHUNK as u64 {
                break;
            }
        }
    }
    Ok(deleted)
}
