//! The console's own state: how far the index is, and the audit log.
// utoipa's `params(...)` expands to paths it qualifies in full.
#![allow(unused_qualifications)]

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use spillway_core::time::now_ms;
use spillway_index::ProgressSnapshot;
use utoipa::{IntoParams, ToSchema};

use crate::audit::{self, AuditEntry};
use crate::auth::{Operator, Viewer};
use crate::problem::{ApiError, ErrorAnswer};
use crate::state::Shared;

/// How far the index is.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexStatus {
    #[serde(flatten)]
    pub progress: ProgressSnapshot,
    /// How old the newest indexed event is, ms: under load, about how far the index is behind.
    pub newest_event_age_ms: Option<i64>,
}

/// Where the index stands (as written by this process).
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses((status = 200, body = IndexStatus), (status = 401, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn status(State(state): State<Shared>, _: Viewer) -> Json<IndexStatus> {
    let progress = state.progress.snapshot();
    Json(IndexStatus {
        newest_event_age_ms: progress
            .newest_event_ms
            .map(|t| (now_ms() as i64 - t).max(0)),
        progress,
    })
}

/// Who the caller is, as the console sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The token's name, or the user the proxy vouched for.
    pub name: String,
    /// `viewer` or `operator`.
    pub role: String,
}

/// The caller's name and role (the page shows operators their actions).
#[utoipa::path(get, path = "/v1/me", tag = "status",
    responses((status = 200, body = Me), (status = 401, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn me(Viewer(caller): Viewer) -> Json<Me> {
    Json(Me {
        role: caller.role_name().to_owned(),
        name: caller.name,
    })
}

/// A page of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Entries before this time, ms since the epoch.
    before_ms: Option<i64>,
    /// 1 to 500; 100 by default.
    limit: Option<i64>,
}

/// The audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "status",
    params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<Shared>,
    _: Operator,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let entries = audit::latest(&state.pool, params.limit.unwrap_or(100), params.before_ms).await?;
    Ok(Json(AuditPage { entries }))
}
