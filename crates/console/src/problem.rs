//! The console's error answers: a status and `{"error": "<code>", "message": "..."}` with a
//! stable code, as the ingress and the worker's API answer. The codes are listed in
//! docs/console.md; a code is never renamed.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue, StatusCode};
use serde_json::Value;
use spillway_core::ErrorBody;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Further fields of the body (the fields at fault of an invalid subscription).
    pub fields: Vec<Value>,
}

/// The body of every error answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used: the body is written from `ApiError`.
pub struct ErrorAnswer {
    /// A stable code: `unauthorized`, `forbidden`, `cross_site`, `not_found`, `invalid_request`,
    /// `quarantined`, `preview_stale`, `too_many_events`, `body_expired`,
    /// `index_unavailable`, `kafka_unavailable`, `invalid_json`, `id_mismatch`,
    /// `invalid_subscription`, `config_managed`, `registry_unavailable`, `not_applied`,
    /// `internal`.
    error: String,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// The index could not be read or written; the cause goes to the log.
    pub fn index(error: &spillway_index::IndexError) -> Self {
        tracing::warn!(error = %error, "console: the index failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "index_unavailable",
            "the index (PostgreSQL) cannot be reached; ingest and delivery are unaffected; retry later",
        )
    }

    /// Kafka could not be read or written; the cause goes to the log.
    pub fn kafka(error: &dyn std::error::Error) -> Self {
        tracing::warn!(error = %error, "console: Kafka failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka_unavailable",
            "Kafka cannot be reached; retry later",
        )
    }

    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "console: {context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the console's log"),
        )
    }
}

impl From<spillway_worker::api::Problem> for ApiError {
    fn from(p: spillway_worker::api::Problem) -> Self {
        Self {
            status: p.status,
            code: p.code,
            message: p.message,
            fields: p.fields,
        }
    }
}

impl From<spillway_index::IndexError> for ApiError {
    /// PostgreSQL refusing a value (class 22, data exception: a NUL in a string, a number out
    /// of range) is the request's fault, not the index's.
    fn from(e: spillway_index::IndexError) -> Self {
        let refused_value = matches!(
            &e,
            spillway_index::IndexError::Postgres(pg)
                if pg.code().is_some_and(|c| c.code().starts_with("22"))
        );
        if refused_value {
            return Self::invalid(format!(
                "a value of the request cannot be searched for: {e}"
            ));
        }
        Self::index(&e)
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        Self::invalid(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!(ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        });
        if !self.fields.is_empty() {
            body["fields"] = Value::Array(self.fields);
        }
        let mut answer = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        answer
    }
}

/// The `{id}` of a route, refused with a JSON 400 (not axum's plain text) when it is not UTF-8,
/// holds a NUL, or is longer than any id Spillway makes.
#[derive(Debug, Clone)]
pub struct Id(pub String);

/// Longer than any event or subscription id.
const MAX_ID_CHARS: usize = 512;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        if id.contains('\0') || id.chars().count() > MAX_ID_CHARS {
            return Err(ApiError::invalid(format!(
                "an id holds no NUL and at most {MAX_ID_CHARS} characters"
            )));
        }
        Ok(Self(id))
    }
}
