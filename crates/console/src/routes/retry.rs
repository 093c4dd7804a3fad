//! Retries: one event, or every delivery a filter finds after a preview of exactly those
//! deliveries. A retry puts the event's record into the first retry tier for each chosen
//! subscription as attempt 1 of a fresh series, due now (the workers' replay path), so it is
//! signed, retried and dead-lettered like any delivery.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use spillway_index::search::{self, EventDetail, EventFilter, RetryTarget};
use spillway_kafka::reader::ReadRecord;
use spillway_worker::wants;
use utoipa::ToSchema;

use crate::audit;
use crate::auth::{Caller, Operator};
use crate::problem::{ApiError, ErrorAnswer};
use crate::state::Shared;

/// The subscriptions a retry of `event` goes to: `wanted` (which must exist), else those it
/// had deliveries to, else those that want it now.
pub(crate) fn subscriptions_for(
    state: &Shared,
    event: &EventDetail,
    wanted: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    if let Some(reason) = &event.summary.quarantine_reason {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "quarantined",
            format!("the event failed its source's schema ({reason}): it is redriven from the quarantine once it passes, not retried"),
        ));
    }
    if let Some(id) = wanted {
        if state.live.find(id).is_none() {
            return Err(ApiError::not_found(format!("no subscription {id:?}")));
        }
        return Ok(vec![id.to_owned()]);
    }
    // A test event goes to its subscription only, as the workers deliver it.
    if let Some(id) = &event.summary.test_for {
        return Ok(vec![id.clone()]);
    }
    if !event.deliveries.is_empty() {
        return Ok(event
            .deliveries
            .iter()
            .map(|d| d.subscription.clone())
            .collect());
    }
    let summary = &event.summary;
    let chosen: Vec<String> = state
        .live
        .snapshot()
        .iter()
        .filter(|s| wants(s, &summary.source, summary.event_type.as_deref()))
        .map(|s| s.id.clone())
        .collect();
    if chosen.is_empty() {
        return Err(ApiError::invalid("no subscription wants this event"));
    }
    Ok(chosen)
}

/// Queues `event` for each of `subscriptions`; returns how many were queued (none when
/// Kafka no longer holds its record).
pub(crate) async fn requeue_event(
    state: &Shared,
    event: &EventDetail,
    subscriptions: &[String],
    caller: &Caller,
) -> Result<usize, ApiError> {
    let targets: Vec<RetryTarget> = subscriptions
        .iter()
        .map(|s| RetryTarget {
            event_id: event.summary.event_id.clone(),
            topic: event.topic.clone(),
            partition: event.partition,
            offset: event.offset,
            subscription: s.clone(),
        })
        .collect();
    requeue(state, &targets, caller).await
}

/// Reads each target's record back and queues it; returns how many were queued. Targets
/// whose record Kafka no longer holds are skipped.
async fn requeue(
    state: &Shared,
    targets: &[RetryTarget],
    caller: &Caller,
) -> Result<usize, ApiError> {
    let mut places: Vec<(String, i32, i64)> = targets
        .iter()
        .map(|t| (t.topic.clone(), t.partition, t.offset))
        .collect();
    places.sort();
    places.dedup();
    let records = state.fetch(places.clone()).await?;
    let mut items = Vec::new();
    for target in targets {
        let place = (target.topic.clone(), target.partition, target.offset);
        if let Ok(i) = places.binary_search(&place) {
            if let Some(record) = &records[i] {
                items.push((record, target.subscription.as_str()));
            }
        }
    }
    let why = format!("retried from the console by {}", caller.name);
    queue(state, items.into_iter(), &why).await
}

/// Queues each record for its subscription as attempt 1 of a fresh series, due now (the
/// workers' replay path), noted `why`; returns how many were queued.
pub(crate) async fn queue<'a>(
    state: &Shared,
    items: impl ExactSizeIterator<Item = (&'a ReadRecord, &'a str)>,
    why: &str,
) -> Result<usize, ApiError> {
    spillway_worker::replay::requeue(&state.config, items, why, None)
        .await
        .map_err(|e| ApiError::kafka(&e))
}

/// Which deliveries a bulk retry makes again.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryRequest {
    /// The events: any filter of `GET /v1/events` (`subscription` narrows the deliveries too).
    #[serde(default)]
    pub filter: EventFilter,
    /// `dead_lettered` (the default), `not_delivered` or `all`.
    #[serde(default)]
    pub deliveries: Which,
    /// The `deliveries` count of the preview this retry follows: when it no longer matches
    /// (events arrived or changed since), nothing is retried and the answer is 409.
    pub expect_deliveries: Option<i64>,
}

/// Which deliveries of the events found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// Dead letters only.
    #[default]
    DeadLettered,
    /// Dead letters and deliveries waiting for their next attempt (those then get a second
    /// series of attempts beside the one already parked).
    NotDelivered,
    /// Every delivery, delivered ones too.
    All,
}

impl Which {
    fn statuses(self) -> Option<&'static [&'static str]> {
        match self {
            Self::DeadLettered => Some(&["dead_lettered"]),
            Self::NotDelivered => Some(&["dead_lettered", "retrying"]),
            Self::All => None,
        }
    }
}

/// What a bulk retry would do, or did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkRetryAnswer {
    /// Events touched.
    pub events: i64,
    /// Deliveries the filter finds, one per event and subscription.
    pub deliveries: i64,
    /// Deliveries queued (0 in a preview): fewer than `deliveries` when Kafka no longer holds
    /// some of the events' records (past the topic's retention).
    pub queued: i64,
    /// Deliveries per subscription.
    pub subscriptions: Vec<SubscriptionCount>,
    /// The most deliveries one bulk retry, replay or redrive makes
    /// (`console.bulk_retry_limit`).
    pub limit: i64,
    /// More than `limit` were found: the counts are of the first `limit + 1` only, and the
    /// action would be refused (422 `too_many_events`).
    pub more: bool,
}

/// Deliveries to one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionCount {
    pub subscription: String,
    pub deliveries: i64,
}

/// Counts the deliveries `(event id, subscription)`: events, deliveries, per subscription.
pub(crate) fn summarise<'a>(
    deliveries: impl Iterator<Item = (&'a str, &'a str)>,
    limit: i64,
) -> BulkRetryAnswer {
    let mut events: Vec<&str> = Vec::new();
    let mut per: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut total = 0;
    for (event, subscription) in deliveries {
        events.push(event);
        *per.entry(subscription).or_default() += 1;
        total += 1;
    }
    events.sort_unstable();
    events.dedup();
    BulkRetryAnswer {
        events: events.len() as i64,
        deliveries: total,
        queued: 0,
        subscriptions: per
            .into_iter()
            .map(|(s, n)| SubscriptionCount {
                subscription: s.to_owned(),
                deliveries: n,
            })
            .collect(),
        limit,
        more: total > limit,
    }
}

/// Why an action on `found` deliveries (or records) is not taken: more than `limit`, or not
/// the `expected` count its preview showed.
pub(crate) fn refusal(found: i64, limit: i64, expected: Option<i64>) -> Option<ApiError> {
    if found > limit {
        return Some(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_events",
            format!("the filter finds more than {limit} (console.bulk_retry_limit): narrow it"),
        ));
    }
    expected.filter(|e| *e != found).map(|expected| {
        ApiError::new(
            StatusCode::CONFLICT,
            "preview_stale",
            format!("the preview showed {expected}, the filter now finds {found}: preview again"),
        )
    })
}

fn pairs(targets: &[RetryTarget]) -> impl Iterator<Item = (&str, &str)> {
    targets
        .iter()
        .map(|t| (t.event_id.as_str(), t.subscription.as_str()))
}

async fn targets_of(
    state: &Shared,
    request: &BulkRetryRequest,
) -> Result<Vec<RetryTarget>, ApiError> {
    let limit = state.config.console.bulk_retry_limit as i64;
    let statuses = request.deliveries.statuses();
    // One more than the limit, to tell a retry that is too large.
    Ok(search::retry_targets(&state.pool, &request.filter, statuses, limit + 1).await?)
}

/// The JSON body of an action, or 400 `invalid_request` saying what is wrong with it.
pub(crate) fn parse<T>(request: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    request
        .map(|Json(r)| r)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// Shows what a bulk retry would retry: events, deliveries, and deliveries per subscription.
#[utoipa::path(post, path = "/v1/retries/preview", tag = "actions",
    request_body = BulkRetryRequest,
    responses(
        (status = 200, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn preview(
    State(state): State<Shared>,
    _: Operator,
    request: Result<Json<BulkRetryRequest>, JsonRejection>,
) -> Result<Json<BulkRetryAnswer>, ApiError> {
    let request = parse(request)?;
    let targets = targets_of(&state, &request).await?;
    Ok(Json(summarise(
        pairs(&targets),
        state.config.console.bulk_retry_limit as i64,
    )))
}

/// Retries every delivery a filter finds, as its preview showed.
#[utoipa::path(post, path = "/v1/retries", tag = "actions",
    request_body = BulkRetryRequest,
    responses(
        (status = 202, body = BulkRetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 422, body = ErrorAnswer), (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn bulk(
    State(state): State<Shared>,
    Operator(caller): Operator,
    request: Result<Json<BulkRetryRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BulkRetryAnswer>), ApiError> {
    let request = parse(request)?;
    let limit = state.config.console.bulk_retry_limit as i64;
    let targets = targets_of(&state, &request).await?;
    let answer = summarise(pairs(&targets), limit);
    let target = serde_json::json!({ "filter": request.filter, "deliveries": request.deliveries });
    let refusal = refusal(answer.deliveries, limit, request.expect_deliveries);
    let (shared, who) = (state.clone(), caller.clone());
    let work = async move {
        if let Some(refused) = refusal {
            return Err(refused);
        }
        let mut answer = answer;
        answer.queued = requeue(&shared, &targets, &who).await? as i64;
        Ok((answer.events, (StatusCode::ACCEPTED, Json(answer))))
    };
    audit::audited(&state, caller, "bulk_retry", target, work).await
}
