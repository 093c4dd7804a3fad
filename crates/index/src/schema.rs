//! The index's tables in PostgreSQL (`schema.sql`), created at start by whichever console
//! process gets there first.

use deadpool_postgres::Pool;

use crate::IndexError;

const SCHEMA: &str = include_str!("schema.sql");

/// An arbitrary constant: the advisory lock console processes take while they create the
/// tables, so that two starting at once do not race on `CREATE ... IF NOT EXISTS`.
const SCHEMA_LOCK: i64 = 0x5350_494c_0001;

/// Creates what is missing of the index's tables.
pub async fn ensure_schema(pool: &Pool) -> Result<(), IndexError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(SCHEMA).await?;
    tx.commit().await?;
    Ok(())
}
