//! Replays and redrives, each after a preview of exactly what it will do: a time range of a
//! source read again from Kafka and delivered afresh (the workers' replay), dead letters put
//! back into the retry path, quarantined records that now pass their schema written to their
//! source's topic. These read Kafka, not the index, so they work while the index is behind.
//! Preview and action read the topic the same way; the action is refused (409
//! `preview_stale`) when it would no longer do what its preview showed.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use spillway_core::headers;
use spillway_kafka::reader::ReadRecord;
use spillway_worker::{dlq, quarantine, replay, ConfigProblem, WorkerError};
use utoipa::ToSchema;

use crate::audit;
use crate::auth::{Caller, Operator};
use crate::problem::{ApiError, ErrorAnswer};
use crate::routes::retry::{parse, queue, refusal, summarise, BulkRetryAnswer};
use crate::state::Shared;

/// A time range of a source to deliver again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub source: String,
    /// Accepted at or after, milliseconds since the Unix epoch.
    pub from_ms: Option<u64>,
    /// Accepted before, milliseconds since the Unix epoch.
    pub to_ms: Option<u64>,
    pub event_type: Option<String>,
    /// Only to this subscription; to every subscription that wants each event otherwise.
    pub subscription: Option<String>,
    /// The `deliveries` count of the preview this follows (409 `preview_stale` otherwise).
    pub expect_deliveries: Option<i64>,
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterRequest {
    pub subscription: Option<String>,
    pub source: Option<String>,
    /// Dead at or after, milliseconds since the Unix epoch.
    pub from_ms: Option<u64>,
    /// Dead before, milliseconds since the Unix epoch.
    pub to_ms: Option<u64>,
    /// The `deliveries` count of the preview this follows (409 `preview_stale` otherwise).
    pub expect_deliveries: Option<i64>,
}

/// Which quarantined records of a source to redrive.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    pub source: String,
    /// Only records whose first failure had this reason (`required`, `not_json`...).
    pub reason: Option<String>,
    /// Received at or after, milliseconds since the Unix epoch.
    pub from_ms: Option<u64>,
    /// Received before, milliseconds since the Unix epoch.
    pub to_ms: Option<u64>,
    /// Also the copies of records the sender was answered 422 for (it was told, and may have
    /// sent them again).
    #[serde(default)]
    pub include_refused: bool,
    /// The `records` count of the preview this follows (409 `preview_stale` otherwise).
    pub expect_records: Option<i64>,
}

/// What a quarantine redrive would do, or did.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineAnswer {
    /// Records found that pass the source's schema now: those to write.
    pub records: i64,
    /// Written to the source's topic (0 in a preview).
    pub written: i64,
    /// Records found that still fail the schema and stay in the quarantine: the first 100.
    pub still_invalid: Vec<StillInvalid>,
    /// How many still fail.
    pub still_invalid_count: i64,
    /// Copies of records refused to the sender, left out (see `include_refused`).
    pub refused: i64,
    /// The most records one redrive reads (`console.bulk_retry_limit`).
    pub limit: i64,
    /// More than `limit` records were found: the counts are of the first `limit + 1` only,
    /// and the redrive would be refused (422 `too_many_events`).
    pub more: bool,
}

/// How many of the records that still fail an answer lists.
const STILL_INVALID_SHOWN: usize = 100;

/// A quarantined record that still fails its schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct StillInvalid {
    pub event_id: String,
    /// Its first failure against the schema as configured now.
    pub failure: String,
}

/// What an action was asked to do, for its audit entry: the request without its expected
/// count.
fn audit_target(request: &impl Serialize) -> serde_json::Value {
    let mut target = serde_json::to_value(request).unwrap_or_default();
    if let Some(fields) = target.as_object_mut() {
        fields.remove("expect_deliveries");
        fields.remove("expect_records");
        fields.retain(|_, v| !v.is_null());
    }
    target
}

/// Reads a topic off the runtime's threads; `console.scan_timeout` bounds each wait for
/// Kafka.
async fn scan<T: Send + 'static>(
    state: &Shared,
    read: impl FnOnce(&spillway_config::Config, Duration) -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, ApiError> {
    let config = state.config.clone();
    tokio::task::spawn_blocking(move || read(&config, config.console.scan_timeout))
        .await
        .map_err(|e| ApiError::internal("a Kafka read stopped", &e))?
        .map_err(|e| worker_problem(&e))
}

fn worker_problem(error: &WorkerError) -> ApiError {
    match error {
        WorkerError::Config(
            problem @ (ConfigProblem::UnknownSource(_) | ConfigProblem::UnknownSubscription(_)),
        ) => ApiError::not_found(problem.to_string()),
        WorkerError::Config(problem @ ConfigProblem::NoQuarantine(_)) => {
            ApiError::invalid(problem.to_string())
        }
        WorkerError::Config(problem) => ApiError::internal("the config cannot run this", problem),
        other => ApiError::kafka(other),
    }
}

fn event_id(record: &ReadRecord) -> &str {
    record.header(headers::EVENT_ID).unwrap_or("-")
}

fn limit(state: &Shared) -> i64 {
    state.config.console.bulk_retry_limit as i64
}

async fn replays_of(
    state: &Shared,
    request: &ReplayRequest,
) -> Result<Vec<replay::Replay>, ApiError> {
    let range = replay::Range {
        source: request.source.clone(),
        since_ms: request.from_ms,
        until_ms: request.to_ms,
        event_type: request.event_type.clone(),
        subscription: request.subscription.clone(),
        max_records: Some(state.config.console.bulk_retry_limit),
        ..replay::Range::default()
    };
    let subscriptions = state.live.snapshot();
    scan(state, move |config, timeout| {
        replay::select(config, &subscriptions, &range, timeout)
    })
    .await
}

/// Events, deliveries and deliveries per subscription of what a replay or redrive queues.
fn summary(deliveries: &[replay::Replay], limit: i64) -> BulkRetryAnswer {
    summarise(
        deliveries
            .iter()
            .map(|r| (event_id(&r.record), r.subscription.as_str())),
        limit,
    )
}

/// Finds the deliveries again, refuses what its preview no longer matches (or what is over
/// the limit), queues them as fresh series noted `what` by the caller, and audits it all as
/// `action`.
async fn redeliver<F>(
    state: &Shared,
    caller: Caller,
    action: &'static str,
    what: &'static str,
    (target, expect): (serde_json::Value, Option<i64>),
    find: F,
) -> Result<(StatusCode, Json<BulkRetryAnswer>), ApiError>
where
    F: std::future::Future<Output = Result<Vec<replay::Replay>, ApiError>> + Send + 'static,
{
    let (shared, who) = (state.clone(), caller.name.clone());
    let work = async move {
        let deliveries = find.await?;
        let mut answer = summary(&deliveries, limit(&shared));
        if let Some(refused) = refusal(answer.deliveries, answer.limit, expect) {
            return Err(refused);
        }
        let items = deliveries
            .iter()
            .map(|r| (&r.record, r.subscription.as_str()));
        let why = format!("{what} from the console by {who}");
        answer.queued = queue(&shared, items, &why).await? as i64;
        Ok((answer.events, (StatusCode::ACCEPTED, Json(answer))))
    };
    audit::audited(state, caller, action, target, work).await
}

/// Shows what a replay would deliver: events, deliveries, and deliveries per subscription.
#[utoipa::path(post, path = "/v1/replays/preview", tag = "actions",
    request_body = ReplayRequest,
    responses(
        (status = 200, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn replay_preview(
    State(state): State<Shared>,
    _: Operator,
    request: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Json<BulkRetryAnswer>, ApiError> {
    let request = parse(request)?;
    let replays = replays_of(&state, &request).await?;
    Ok(Json(summary(&replays, limit(&state))))
}

/// Delivers a time range of a source again, as its preview showed: each event as attempt 1
/// of a fresh series to each chosen subscription.
#[utoipa::path(post, path = "/v1/replays", tag = "actions",
    request_body = ReplayRequest,
    responses(
        (status = 202, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 409, body = ErrorAnswer), (status = 422, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<Shared>,
    Operator(caller): Operator,
    request: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BulkRetryAnswer>), ApiError> {
    let request = parse(request)?;
    let audit = (audit_target(&request), request.expect_deliveries);
    let shared = state.clone();
    let find = async move { replays_of(&shared, &request).await };
    redeliver(&state, caller, "replay", "replayed", audit, find).await
}

/// The dead letters a request finds, each as the delivery a redrive makes again.
async fn dead_letters_of(
    state: &Shared,
    request: &DeadLetterRequest,
) -> Result<Vec<replay::Replay>, ApiError> {
    if let Some(id) = &request.subscription {
        if state.live.find(id).is_none() {
            return Err(ApiError::not_found(format!("no subscription {id:?}")));
        }
    }
    if let Some(source) = &request.source {
        if !state.config.sources.contains_key(source) {
            return Err(ApiError::not_found(format!("no source {source:?}")));
        }
    }
    // A dead letter of a subscription that no longer exists would only be dead-lettered
    // again (`subscription_unknown`): it is left out as read, before the cap counts it.
    let known = state.live.snapshot().iter().map(|s| s.id.clone()).collect();
    let filter = dlq::Filter {
        subscription: request.subscription.clone(),
        source: request.source.clone(),
        since_ms: request.from_ms,
        until_ms: request.to_ms,
        known: Some(known),
        max: Some(state.config.console.bulk_retry_limit),
    };
    let letters = scan(state, move |config, timeout| {
        dlq::list(config, &filter, timeout)
    })
    .await?;
    Ok(letters
        .into_iter()
        .map(|letter| replay::Replay {
            subscription: letter
                .header(spillway_worker::control::SUBSCRIPTION)
                .unwrap_or_default()
                .to_owned(),
            record: letter.record,
        })
        .collect())
}

/// Shows which dead letters a redrive would put back: events, deliveries, per subscription.
#[utoipa::path(post, path = "/v1/dead-letters/preview", tag = "actions",
    request_body = DeadLetterRequest,
    responses(
        (status = 200, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn dead_letters_preview(
    State(state): State<Shared>,
    _: Operator,
    request: Result<Json<DeadLetterRequest>, JsonRejection>,
) -> Result<Json<BulkRetryAnswer>, ApiError> {
    let request = parse(request)?;
    let letters = dead_letters_of(&state, &request).await?;
    Ok(Json(summary(&letters, limit(&state))))
}

/// Puts the dead letters a filter finds back into the retry path, as its preview showed:
/// attempt 1 of a fresh series, due now. The dead-letter topic keeps them too.
#[utoipa::path(post, path = "/v1/dead-letters/redrive", tag = "actions",
    request_body = DeadLetterRequest,
    responses(
        (status = 202, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 409, body = ErrorAnswer), (status = 422, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn dead_letters_redrive(
    State(state): State<Shared>,
    Operator(caller): Operator,
    request: Result<Json<DeadLetterRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BulkRetryAnswer>), ApiError> {
    let request = parse(request)?;
    let audit = (audit_target(&request), request.expect_deliveries);
    let shared = state.clone();
    let find = async move { dead_letters_of(&shared, &request).await };
    redeliver(
        &state,
        caller,
        "dead_letter_redrive",
        "redriven",
        audit,
        find,
    )
    .await
}

async fn quarantine_redrive_of(
    state: &Shared,
    request: QuarantineRequest,
    dry_run: bool,
) -> Result<QuarantineAnswer, ApiError> {
    let limit = limit(state);
    let config = state.config.clone();
    let (route, records) = scan(state, move |config, timeout| {
        let route = quarantine::quarantined_source(config, &request.source)?;
        let filter = quarantine::Filter {
            reason: request.reason.clone(),
            since_ms: request.from_ms,
            until_ms: request.to_ms,
            max: Some(config.console.bulk_retry_limit),
        };
        let records = quarantine::list(config, &route, &filter, timeout)?;
        Ok((route, records))
    })
    .await?;
    // What passes is counted first (a dry run), so the limit and the preview's count are
    // checked before anything is written.
    let checked = quarantine::redrive(&config, &route, &records, request.include_refused, true)
        .await
        .map_err(|e| worker_problem(&e))?;
    let more = records.len() as i64 > limit;
    let mut answer = QuarantineAnswer {
        records: checked.written as i64,
        written: 0,
        still_invalid_count: checked.still_invalid.len() as i64,
        still_invalid: checked
            .still_invalid
            .into_iter()
            .take(STILL_INVALID_SHOWN)
            .map(|(event_id, failure)| StillInvalid { event_id, failure })
            .collect(),
        refused: checked.refused as i64,
        limit,
        more,
    };
    if dry_run {
        return Ok(answer);
    }
    let found = if more { limit + 1 } else { answer.records };
    if let Some(refused) = refusal(found, limit, request.expect_records) {
        return Err(refused);
    }
    let done = quarantine::redrive(&config, &route, &records, request.include_refused, false)
        .await
        .map_err(|e| worker_problem(&e))?;
    answer.written = done.written as i64;
    Ok(answer)
}

/// Shows which quarantined records of a source pass its schema now and would be written,
/// and which still fail.
#[utoipa::path(post, path = "/v1/quarantine/preview", tag = "actions",
    request_body = QuarantineRequest,
    responses(
        (status = 200, body = QuarantineAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn quarantine_preview(
    State(state): State<Shared>,
    _: Operator,
    request: Result<Json<QuarantineRequest>, JsonRejection>,
) -> Result<Json<QuarantineAnswer>, ApiError> {
    let request = parse(request)?;
    Ok(Json(quarantine_redrive_of(&state, request, true).await?))
}

/// Writes the quarantined records of a source that pass its schema now to its topic, as the
/// preview showed; those that still fail stay. The quarantine keeps its copies too.
#[utoipa::path(post, path = "/v1/quarantine/redrive", tag = "actions",
    request_body = QuarantineRequest,
    responses(
        (status = 202, body = QuarantineAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 409, body = ErrorAnswer), (status = 422, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn quarantine_redrive(
    State(state): State<Shared>,
    Operator(caller): Operator,
    request: Result<Json<QuarantineRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<QuarantineAnswer>), ApiError> {
    let request = parse(request)?;
    let target = audit_target(&request);
    let shared = state.clone();
    let work = async move {
        let answer = quarantine_redrive_of(&shared, request, false).await?;
        Ok((answer.written, (StatusCode::ACCEPTED, Json(answer))))
    };
    audit::audited(&state, caller, "quarantine_redrive", target, work).await
}
