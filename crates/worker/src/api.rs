//! The subscription API on the worker's admin listener, behind a bearer token:
//!
//! - `GET /v1/subscriptions`: every subscription (config file and registry), secrets redacted;
//! - `GET /v1/subscriptions/{id}`: one of them;
//! - `PUT /v1/subscriptions/{id}`: add or replace a registered subscription (201 or 200);
//!   without `secrets`, a new one keeps its secrets from before or gets a generated one,
//!   which the answer shows once;
//! - `DELETE /v1/subscriptions/{id}`: remove a registered subscription (204).
//!
//! A write answers once this worker has read it back from the registry topic, so the caller
//! can rely on this worker delivering with it; the other replicas follow within moments. A
//! write not read back within 10 s answers 503 `not_applied` with `Retry-After`: it is in the
//! registry, but not yet in effect here, and repeating it is safe.
//! Errors are `{"error": "<code>", "message": "..."}` ([`spillway_core::ErrorBody`]) like the
//! ingress's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use spillway_config::StoredSubscription;
use spillway_core::ErrorBody;
use spillway_telemetry::{AdminRoutes, RouteFuture};
use subtle::ConstantTimeEq;

use crate::registry::{generate_secret, LiveSubscriptions, Registry, RegistryError};

const PREFIX: &str = "/v1/subscriptions";
/// Largest request body accepted: a subscription is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;
/// How long a write waits to be read back from the registry topic.
const READ_BACK: Duration = Duration::from_secs(10);

/// The routes; cloning shares them.
#[derive(Debug, Clone)]
pub struct SubscriptionApi {
    state: Arc<ApiState>,
}

/// What the routes work on.
#[derive(Debug)]
struct ApiState {
    registry: Registry,
    live: Arc<LiveSubscriptions>,
    token: String,
}

// === impl SubscriptionApi ===

impl SubscriptionApi {
    pub fn new(registry: Registry, live: Arc<LiveSubscriptions>, token: String) -> Self {
        Self {
            state: Arc::new(ApiState {
                registry,
                live,
                token,
            }),
        }
    }

    fn authorized(&self, req: &http::Request<Incoming>) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110, section 11.1).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start())
        else {
            return false;
        };
        given.as_bytes().ct_eq(self.state.token.as_bytes()).into()
    }

    async fn route(self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.authorized(&req) {
            let mut answer = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the worker's API token as `Authorization: Bearer <token>`",
            );
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return answer;
        }
        let path = req.uri().path().to_owned();
        let id = path
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|id| !id.is_empty());
        match (req.method().clone(), id) {
            (Method::GET, None) => self.list(),
            (Method::GET, Some(id)) => self.show(id),
            (Method::PUT, Some(id)) => {
                let id = id.to_owned();
                self.put(&id, req).await
            }
            (Method::DELETE, Some(id)) => self.delete(id).await,
            (_, None) => not_allowed("GET"),
            (_, Some(_)) => not_allowed("GET, PUT, DELETE"),
        }
    }

    fn list(&self) -> Response<Full<Bytes>> {
        let all = self.state.registry.views(&self.state.live.registered());
        json_answer(StatusCode::OK, &json!({ "subscriptions": all }))
    }

    fn show(&self, id: &str) -> Response<Full<Bytes>> {
        match self
            .state
            .registry
            .views(&self.state.live.registered())
            .into_iter()
            .find(|v| v.id == id)
        {
            Some(view) => json_answer(StatusCode::OK, &json!(view)),
            None => not_found(id),
        }
    }

    async fn put(&self, id: &str, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &format!("a subscription is at most {MAX_BODY} bytes"),
                )
            }
        };
        let previous = self.state.live.registered_one(id);
        let (sub, generated) = match parse_subscription(id, &body, previous.as_ref()) {
            Ok(parsed) => parsed,
            Err(problem) => return problem.answer(),
        };
        let at = match self.state.registry.put(&sub).await {
            Ok(at) => at,
            Err(e) => return registry_error(&e),
        };
        if !self.state.live.wait_applied(at, READ_BACK).await {
            return not_applied();
        }
        let mut body = json!(self.state.registry.view_of(&sub));
        if let Some(secret) = generated {
            body["secret"] = Value::String(secret);
        }
        let status = if previous.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        json_answer(status, &body)
    }

    async fn delete(&self, id: &str) -> Response<Full<Bytes>> {
        if self.state.registry.is_config_managed(id) {
            return registry_error(&RegistryError::ConfigManaged(id.to_owned()));
        }
        if self.state.live.registered_one(id).is_none() {
            return not_found(id);
        }
        match self.state.registry.remove(id).await {
            Ok(at) => {
                if !self.state.live.wait_applied(at, READ_BACK).await {
                    return not_applied();
                }
                let mut answer = Response::new(Full::new(Bytes::new()));
                *answer.status_mut() = StatusCode::NO_CONTENT;
                answer
            }
            Err(e) => registry_error(&e),
        }
    }
}

impl AdminRoutes for SubscriptionApi {
    fn handles(&self, path: &str) -> bool {
        path == PREFIX || path.starts_with("/v1/subscriptions/")
    }

    fn answer(&self, req: http::Request<Incoming>) -> RouteFuture {
        Box::pin(self.clone().route(req))
    }
}

/// Why a request to a subscription API failed: its status, stable code, message and, for an
/// invalid subscription, the fields at fault. The worker's API and the console's answer with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `{"path", "message"}` per invalid field.
    pub fields: Vec<Value>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The JSON body: `{"error", "message"}`, and `fields` when there are any.
    pub fn body(&self) -> Value {
        let mut body = json!(ErrorBody {
            error: self.code.to_owned(),
            message: self.message.clone(),
        });
        if !self.fields.is_empty() {
            body["fields"] = Value::Array(self.fields.clone());
        }
        body
    }

    fn answer(&self) -> Response<Full<Bytes>> {
        json_answer(self.status, &self.body())
    }
}

/// The request body as a subscription with the path's id. Without secrets, an existing
/// subscription keeps its own and a new one gets a generated secret (returned as well).
pub fn parse_subscription(
    id: &str,
    body: &[u8],
    previous: Option<&StoredSubscription>,
) -> Result<(StoredSubscription, Option<String>), Problem> {
    let mut fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body must be a JSON object",
            ))
        }
        Err(e) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                e.to_string(),
            ))
        }
    };
    match fields.get("id") {
        None => {
            fields.insert("id".into(), Value::String(id.to_owned()));
        }
        Some(Value::String(given)) if given == id => {}
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "id_mismatch",
                "the body's id differs from the one in the path",
            ))
        }
    }
    let mut generated = None;
    let without_secrets = match fields.get("secrets") {
        None => true,
        Some(Value::Array(secrets)) => secrets.is_empty(),
        Some(_) => false,
    };
    if without_secrets {
        let secrets = match previous {
            Some(previous) => previous.secrets.clone(),
            None => {
                let secret = generate_secret("generated");
                generated = Some(secret.secret.clone());
                vec![secret]
            }
        };
        let secrets = serde_json::to_value(secrets).map_err(|e| {
            // The cause goes to the log; the caller gets the code and a sentence.
            tracing::error!(error = %e, "subscription API: secrets could not be encoded");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the subscription could not be stored; see the worker's log",
            )
        })?;
        fields.insert("secrets".into(), secrets);
    }
    serde_json::from_value::<StoredSubscription>(Value::Object(fields))
        .map(|sub| (sub, generated))
        .map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_subscription",
                e.to_string(),
            )
        })
}

/// How a registry failure is answered.
pub fn registry_problem(e: &RegistryError) -> Problem {
    match e {
        RegistryError::Invalid(fields) => Problem {
            fields: fields
                .iter()
                .map(|f| json!({ "path": f.path, "message": f.message }))
                .collect(),
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_subscription",
                e.to_string(),
            )
        },
        RegistryError::ConfigManaged(_) => {
            Problem::new(StatusCode::CONFLICT, "config_managed", e.to_string())
        }
        RegistryError::NotFound(id) => not_found_problem(id),
        RegistryError::Kafka { .. } => {
            // The cause goes to the log; the caller gets the code and a sentence.
            tracing::warn!(error = %e, "subscription API: the registry is unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                "the subscription registry cannot be reached; retry later",
            )
        }
    }
}

fn registry_error(e: &RegistryError) -> Response<Full<Bytes>> {
    registry_problem(e).answer()
}

/// A write that is in the registry topic but was not read back in time: not a success the
/// caller can rely on (this worker may not deliver with it yet), and safe to repeat.
fn not_applied() -> Response<Full<Bytes>> {
    let mut answer = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_applied",
        &format!(
            "written to the registry, but this worker has not read it back within {}s (is its \
             registry follower behind?): repeat the request, PUT and DELETE are idempotent",
            READ_BACK.as_secs()
        ),
    );
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    answer
}

fn not_found(id: &str) -> Response<Full<Bytes>> {
    not_found_problem(id).answer()
}

/// No subscription `id`.
pub fn not_found_problem(id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no subscription {id:?}"),
    )
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut answer = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("allowed: {allow}"),
    );
    answer
        .headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    answer
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: code.to_owned(),
        message: message.to_owned(),
    };
    json_answer(status, &json!(body))
}

fn json_answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_not_read_back_in_time_is_no_success() {
        let answer = not_applied();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(b"1".as_slice())
        );
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"], "not_applied");
    }
}
