//! The audit log: every action that changes something (retries, test webhooks, subscription
//! changes), who took it, on what, how many events, and whether it worked. Written before the
//! answer; an action whose entry cannot be written still answers, and says so in the log.

use serde::Serialize;
use serde_json::Value;
use spillway_core::time::now_ms;
use spillway_index::Pool;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::state::Shared;

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The token's name or the proxied user.
    pub actor: String,
    /// `viewer` or `operator`.
    pub role: String,
    /// `retry`, `bulk_retry`, `test_webhook`, `subscription_put`, `subscription_delete`.
    pub action: String,
    /// What it was done to (an event id, a filter, a subscription id).
    #[schema(value_type = Object)]
    pub target: Value,
    /// Events it touched.
    pub events: i64,
    /// `ok`, or the error code it ended with.
    pub outcome: String,
}

/// Writes an entry.
pub async fn record(
    pool: &Pool,
    caller: &Caller,
    action: &str,
    target: Value,
    events: i64,
    outcome: &str,
) {
    let role = caller.role_name();
    let written = async {
        let client = pool.get().await?;
        client
            .execute(
                "INSERT INTO spillway.audit_log (at_ms, actor, role, action, target, events, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&(now_ms() as i64), &caller.name, &role, &action, &target, &events, &outcome],
            )
            .await?;
        Ok::<_, spillway_index::IndexError>(())
    };
    if let Err(e) = written.await {
        tracing::error!(error = %e, actor = %caller.name, action, %target, events, outcome, "audit entry not written");
    }
}

/// The latest `limit` entries, newest first, before `before_ms` when given.
pub async fn latest(
    pool: &Pool,
    limit: i64,
    before_ms: Option<i64>,
) -> Result<Vec<AuditEntry>, ApiError> {
    let client = pool.get().await.map_err(spillway_index::IndexError::from)?;
    let rows = client
        .query(
            "SELECT at_ms, actor, role, action, target, events, outcome FROM spillway.audit_log \
             WHERE at_ms < $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
            &[&before_ms.unwrap_or(i64::MAX), &limit.clamp(1, 500)],
        )
        .await
        .map_err(spillway_index::IndexError::from)?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at_ms: r.try_get(0)?,
                actor: r.try_get(1)?,
                role: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                events: r.try_get(5)?,
                outcome: r.try_get(6)?,
            })
        })
        .collect::<Result<_, spillway_index::tokio_postgres::Error>>()
        .map_err(|e| ApiError::from(spillway_index::IndexError::from(e)))
}

/// Runs an action in a task of its own and writes its audit entry when it ends, so a caller
/// who hangs up halfway does not leave an action half done and unrecorded. `work` returns
/// the events it touched and the answer.
pub(crate) async fn audited<T: Send + 'static>(
    state: &Shared,
    caller: Caller,
    action: &'static str,
    target: Value,
    work: impl std::future::Future<Output = Result<(i64, T), ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::spawn(async move {
        let result = work.await;
        let (events, outcome) = match &result {
            Ok((events, _)) => (*events, "ok"),
            Err(e) => (0, e.code),
        };
        record(&state.pool, &caller, action, target, events, outcome).await;
        result.map(|(_, answer)| answer)
    })
    .await
    .map_err(|e| ApiError::internal("the action stopped", &e))?
}
