//! Events: search, open one (its record read back from Kafka), retry one.
// utoipa's `params(...)` expands to paths it qualifies in full.
#![allow(unused_qualifications)]

use axum::extract::{RawQuery, State};
use axum::Json;
use base64::Engine;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use spillway_index::search::{self, Cursor, EventDetail, EventFilter, EventPage};
use spillway_kafka::reader::ReadRecord;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Operator, Viewer};
use crate::problem::{ApiError, ErrorAnswer, Id};
use crate::routes::retry;
use crate::state::Shared;

/// At most this much of a body is shown in an event's JSON; `/body` has all of it.
const BODY_SHOWN: usize = 256 * 1024;

/// A page of a search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next` of the previous page.
    before: Option<String>,
    /// Events per page, 1 to 500; 50 by default.
    limit: Option<i64>,
}

/// Finds events, newest first.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventFilter, PageParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Shared>,
    _: Viewer,
    RawQuery(query): RawQuery,
) -> Result<Json<EventPage>, ApiError> {
    let (filter, params) = search_params(query.as_deref().unwrap_or_default())?;
    let before = params
        .before
        .as_deref()
        .map(|b| b.parse::<Cursor>())
        .transpose()
        .map_err(|()| ApiError::invalid("`before` must be the `next` of a previous page"))?;
    let page = search::search(
        &state.pool,
        &filter,
        before.as_ref(),
        params.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(page))
}

/// The filter and the page of a search's query string. Parsed apart so that the filter
/// refuses unknown names (a misspelt filter must not find everything).
fn search_params(query: &str) -> Result<(EventFilter, PageParams), ApiError> {
    let invalid = |e: serde_urlencoded::de::Error| ApiError::invalid(e.to_string());
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(invalid)?;
    let (page, filter): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(name, _)| name == "before" || name == "limit");
    let encode =
        |pairs: &[(String, String)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
    let filter = serde_urlencoded::from_str(&encode(&filter)).map_err(invalid)?;
    let page = serde_urlencoded::from_str(&encode(&page)).map_err(invalid)?;
    Ok((filter, page))
}

/// An event with its body, deliveries and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub event: EventDetail,
    pub body: BodyView,
}

/// The body as received (after any decompression the source does).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BodyView {
    /// The body as text, when it is UTF-8.
    pub text: Option<String>,
    /// The body in base64, when it is not UTF-8.
    pub base64: Option<String>,
    /// Only the first 256 KiB are shown: `GET /v1/events/{id}/body` has it all.
    pub truncated: bool,
    /// For a body in object storage: its URI (the record holds a reference only).
    pub object_uri: Option<String>,
    /// Why the body could not be shown: `expired` (past the topic's retention) or
    /// `kafka_unavailable`.
    pub unavailable: Option<String>,
}

/// Opens an event.
#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The ingress's event id")),
    responses(
        (status = 200, body = EventView),
        (status = 401, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<Shared>,
    _: Viewer,
    Id(event_id): Id,
) -> Result<Json<EventView>, ApiError> {
    let event = search::event(&state.pool, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id:?} in the index")))?;
    let place = (event.topic.clone(), event.partition, event.offset);
    let body = match state.fetch(vec![place]).await {
        Ok(mut read) => body_view(read.pop().flatten().as_ref(), &event),
        Err(e) => BodyView {
            unavailable: Some(e.code.to_owned()),
            ..BodyView::default()
        },
    };
    Ok(Json(EventView { event, body }))
}

fn body_view(record: Option<&ReadRecord>, event: &EventDetail) -> BodyView {
    let Some(record) = record else {
        return BodyView {
            unavailable: Some("expired".into()),
            object_uri: event.object_uri.clone(),
            ..BodyView::default()
        };
    };
    let shown = &record.value[..record.value.len().min(BODY_SHOWN)];
    let (text, base64) = match std::str::from_utf8(shown) {
        Ok(text) => (Some(text.to_owned()), None),
        // A cut inside a character is still text up to it.
        Err(e) if e.error_len().is_none() && shown.len() < record.value.len() => (
            Some(String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned()),
            None,
        ),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(shown)),
        ),
    };
    BodyView {
        text,
        base64,
        truncated: shown.len() < record.value.len(),
        object_uri: event.object_uri.clone(),
        unavailable: None,
    }
}

/// The exact body bytes, with the content type it came with.
#[utoipa::path(get, path = "/v1/events/{event_id}/body", tag = "events",
    params(("event_id" = String, Path, description = "The ingress's event id")),
    responses(
        (status = 200, description = "The body as received", content_type = "application/octet-stream"),
        (status = 401, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn body(
    State(state): State<Shared>,
    _: Viewer,
    Id(event_id): Id,
) -> Result<axum::response::Response, ApiError> {
    let event = search::event(&state.pool, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id:?} in the index")))?;
    let mut read = state
        .fetch(vec![(event.topic.clone(), event.partition, event.offset)])
        .await?;
    let record = read.pop().flatten().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "body_expired",
            "Kafka no longer holds this event's record (past the topic's retention)",
        )
    })?;
    let content_type = event
        .content_type
        .filter(|c| http::HeaderValue::from_str(c).is_ok())
        .unwrap_or_else(|| "application/octet-stream".into());
    // A sender's body is not the console's content: never rendered as a page of the
    // console's origin (a `text/html` body with a script could act as the signed-in operator).
    Ok(axum::response::IntoResponse::into_response((
        [
            (http::header::CONTENT_TYPE, content_type),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".into(),
            ),
            (
                http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.body\"", file_name(&event_id)),
            ),
        ],
        record.value,
    )))
}

/// `id` with only the characters a file name and a quoted header value take safely.
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which subscriptions to retry an event to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// One subscription; every subscription the event had a delivery to otherwise (or, for
    /// an event without any indexed, every subscription that wants it).
    pub subscription: Option<String>,
}

/// What a retry queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAnswer {
    pub event_id: String,
    /// The subscriptions it was queued for, as attempt 1 of a fresh series, due now.
    pub subscriptions: Vec<String>,
}

/// Retries an event now, to one or all of its subscriptions.
#[utoipa::path(post, path = "/v1/events/{event_id}/retry", tag = "actions",
    params(("event_id" = String, Path, description = "The ingress's event id")),
    request_body(content = RetryRequest, description = "Optional: `{}` retries to every subscription"),
    responses(
        (status = 202, body = RetryAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 404, body = ErrorAnswer),
        (status = 409, body = ErrorAnswer), (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn retry_one(
    State(state): State<Shared>,
    Operator(caller): Operator,
    Id(event_id): Id,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RetryAnswer>), ApiError> {
    // No body is the same as `{}`; any other must be the JSON object.
    let request: RetryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RetryRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(e.to_string()))?
    };
    let event = search::event(&state.pool, &event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id:?} in the index")))?;
    let subscriptions = retry::subscriptions_for(&state, &event, request.subscription.as_deref())?;
    let target = serde_json::json!({ "event_id": event_id, "subscription": request.subscription });
    let answer = RetryAnswer {
        event_id,
        subscriptions,
    };
    let (shared, who) = (state.clone(), caller.clone());
    let work = async move {
        let queued = retry::requeue_event(&shared, &event, &answer.subscriptions, &who).await?;
        if queued == 0 {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "body_expired",
                "Kafka no longer holds this event's record (past the topic's retention): nothing to retry",
            ));
        }
        Ok((1, (StatusCode::ACCEPTED, Json(answer))))
    };
    crate::audit::audited(&state, caller, "retry", target, work).await
}
