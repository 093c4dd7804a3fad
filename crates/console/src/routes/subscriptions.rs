//! Subscriptions: the registry's CRUD (as on the worker's admin port), and a test webhook
//! through the real delivery path.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use spillway_core::headers;
use spillway_core::time::now_ms;
use spillway_worker::api::{not_found_problem, parse_subscription, registry_problem};
use utoipa::ToSchema;

use crate::audit;
use crate::auth::{Caller, Operator, Viewer};
use crate::problem::{ApiError, ErrorAnswer, Id};
use crate::state::Shared;

/// How long a write waits to be read back from the registry topic.
const READ_BACK: Duration = Duration::from_secs(10);

/// Every subscription: the config file's and the registry's, secrets by id only.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions",
    responses(
        (status = 200, description = "`{\"subscriptions\": [...]}`, each with id, origin (config or registry), url, sources, event_types, secrets (id and not_after), header_names, timeout and rate_limit", body = Object),
        (status = 401, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<Shared>, _: Viewer) -> Json<Value> {
    let all = state.registry.views(&state.live.registered());
    Json(json!({ "subscriptions": all }))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The subscription, as listed", body = Object),
        (status = 401, body = ErrorAnswer), (status = 404, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<Shared>,
    _: Viewer,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    state
        .registry
        .views(&state.live.registered())
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| Json(json!(v)))
        .ok_or_else(|| not_found_problem(&id).into())
}

/// Adds or replaces a registered subscription. Without `secrets`, a new one gets a generated
/// secret, shown once in the answer's `secret`.
#[utoipa::path(put, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)),
    request_body(content = Object, description = "A subscription: url, sources, event_types, secrets, headers, timeout, rate_limit"),
    responses(
        (status = 200, description = "Replaced", body = Object),
        (status = 201, description = "Added", body = Object),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 403, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<Shared>,
    Operator(caller): Operator,
    Id(id): Id,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let shared = state.clone();
    let target = json!({ "subscription": id });
    let work = async move {
        put_inner(&shared, &id, &body)
            .await
            .map(|answer| (0, answer))
    };
    audit::audited(&state, caller, "subscription_put", target, work).await
}

async fn put_inner(
    state: &Shared,
    id: &str,
    body: &[u8],
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let previous = state.live.registered_one(id);
    let (sub, generated) = parse_subscription(id, body, previous.as_ref())?;
    let at = state
        .registry
        .put(&sub)
        .await
        .map_err(|e| registry_problem(&e))?;
    if !state.live.wait_applied(at, READ_BACK).await {
        return Err(not_applied());
    }
    let mut view = json!(state.registry.view_of(&sub));
    if let Some(secret) = generated {
        view["secret"] = Value::String(secret);
    }
    let status = if previous.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

/// Removes a registered subscription.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorAnswer), (status = 403, body = ErrorAnswer),
        (status = 404, body = ErrorAnswer), (status = 409, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Shared>,
    Operator(caller): Operator,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let shared = state.clone();
    let target = json!({ "subscription": id });
    let work = async move {
        let state = shared;
        if state.registry.is_config_managed(&id) {
            return Err(registry_problem(
                &spillway_worker::registry::RegistryError::ConfigManaged(id.clone()),
            )
            .into());
        }
        if state.live.registered_one(&id).is_none() {
            return Err(not_found_problem(&id).into());
        }
        let at = state
            .registry
            .remove(&id)
            .await
            .map_err(|e| registry_problem(&e))?;
        if !state.live.wait_applied(at, READ_BACK).await {
            return Err(not_applied());
        }
        Ok((0, StatusCode::NO_CONTENT))
    };
    audit::audited(&state, caller, "subscription_delete", target, work).await
}

fn not_applied() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_applied",
        format!(
            "written to the registry, but the console has not read it back within {}s: repeat \
             the request, PUT and DELETE are idempotent",
            READ_BACK.as_secs()
        ),
    )
}

/// A test event on its way.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestWebhookAnswer {
    /// Its event id: open it with `GET /v1/events/{event_id}` to see its attempt.
    pub event_id: String,
    /// The source topic it was written to.
    pub source: String,
}

/// Sends a test event to one subscription through the real delivery path: written to a source
/// topic the subscription takes, delivered (signed, retried) to that subscription only, with
/// a `spillway-test-event: true` header.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/test", tag = "actions",
    params(("id" = String, Path)),
    responses(
        (status = 202, body = TestWebhookAnswer),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer), (status = 403, body = ErrorAnswer),
        (status = 404, body = ErrorAnswer), (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn test_webhook(
    State(state): State<Shared>,
    Operator(caller): Operator,
    Id(id): Id,
) -> Result<(StatusCode, Json<TestWebhookAnswer>), ApiError> {
    let (shared, who) = (state.clone(), caller.clone());
    let target = json!({ "subscription": id });
    let work = async move {
        let answer = send_test(&shared, &id, &who).await?;
        Ok((1, (StatusCode::ACCEPTED, Json(answer))))
    };
    audit::audited(&state, caller, "test_webhook", target, work).await
}

async fn send_test(
    state: &Shared,
    id: &str,
    caller: &Caller,
) -> Result<TestWebhookAnswer, ApiError> {
    let subscription = state
        .live
        .find(id)
        .ok_or_else(|| ApiError::from(not_found_problem(id)))?;
    let config = &state.config;
    // A source the subscription takes: its first, or the config's first when it takes all.
    let source = subscription
        .sources
        .first()
        .cloned()
        .or_else(|| config.sources.keys().next().cloned())
        .ok_or_else(|| {
            ApiError::invalid("the config has no source to send a test event through")
        })?;
    let topic = config
        .resolve_source_routes()
        .ok()
        .and_then(|routes| {
            routes
                .into_iter()
                .find(|r| r.name == source)
                .map(|r| r.topic)
        })
        .ok_or_else(|| ApiError::invalid(format!("source {source:?} is not in the config")))?;
    let event_id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let body = json!({
        "type": "spillway.test",
        "id": event_id,
        "subscription": id,
        "sent_by": caller.name,
        "sent_at_ms": now,
    })
    .to_string();
    let record_headers = [
        (headers::EVENT_ID, event_id.clone()),
        (headers::SOURCE, source.clone()),
        (headers::RECEIVED_AT, now.to_string()),
        (headers::CONTENT_TYPE, "application/json".to_owned()),
        (headers::TEST_EVENT, id.to_owned()),
    ];
    state
        .producer
        .send_record(
            &topic,
            Some(event_id.as_bytes()),
            body.as_bytes(),
            &record_headers,
        )
        .await
        .map_err(|e| ApiError::kafka(&e))?;
    Ok(TestWebhookAnswer { event_id, source })
}
