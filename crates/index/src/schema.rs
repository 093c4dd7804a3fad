//! The index's tables in PostgreSQL (`schema.sql`), created or brought up to date at start by
//! whichever console process gets there first, and left alone when they already are.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use crate::IndexError;

const SCHEMA: &str = include_str!("schema.sql");

/// An arbitrary constant: the advisory lock console processes take while they create the
/// tables, so that two starting at once do not race on `CREATE ... IF NOT EXISTS`.
const SCHEMA_LOCK: i64 = 0x5350_494c_0001;

/// The digest stored in `spillway.schema_version` once `schema.sql` is applied.
fn digest() -> String {
    format!("{:x}", Sha256::digest(SCHEMA.as_bytes()))
}

/// Creates what is missing of the index's tables, unless this very schema was applied
/// already. Applying it needs the right to create in the database (the first time) and to
/// own the tables (when a later version adds indexes); a console whose schema is current runs
/// no DDL at all, so its user needs only to read and write the tables.
pub async fn ensure_schema(pool: &Pool) -> Result<(), IndexError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Building an index over a large table may take longer than the pool's statement
    // timeout (30 s), and so may waiting for another console that builds one.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    let digest = digest();
    let versioned: bool = tx
        .query_one(
            "SELECT to_regclass('spillway.schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    let current: Option<String> = if versioned {
        tx.query_opt("SELECT sha256 FROM spillway.schema_version", &[])
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
    } else {
        None
    };
    if current.as_deref() == Some(digest.as_str()) {
        tx.commit().await?;
        return Ok(());
    }
    tx.batch_execute(SCHEMA).await?;
    tx.execute(
        "INSERT INTO spillway.schema_version (sha256) VALUES ($1) \
         ON CONFLICT (only_row) DO UPDATE SET sha256 = EXCLUDED.sha256",
        &[&digest],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
