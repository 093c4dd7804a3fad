//! The `/v1/` routes, one module per resource, and the OpenAPI document describing them,
//! generated from the handlers' annotations.

pub mod events;
pub mod health;
pub mod redrive;
pub mod retry;
pub mod status;
pub mod subscriptions;

use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::ApiError;
use crate::state::Shared;

/// The OpenAPI document of the API, built from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Spillway console API", description = "Find events, see every delivery attempt, retry, bulk retry with a preview, send test webhooks, manage subscriptions. Errors are `{\"error\": \"<code>\", \"message\": \"...\"}` with a stable code."),
    paths(
        events::list, events::show, events::body, events::retry_one,
        retry::preview, retry::bulk,
        redrive::replay_preview, redrive::replay,
        redrive::dead_letters_preview, redrive::dead_letters_redrive,
        redrive::quarantine_preview, redrive::quarantine_redrive,
        subscriptions::list, subscriptions::show, subscriptions::put, subscriptions::delete,
        subscriptions::test_webhook,
        status::status, status::me, status::audit_log,
        health::subscriptions, health::sources,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Search and read events"),
        (name = "actions", description = "Retries, replays, redrives and test webhooks (operators)"),
        (name = "subscriptions", description = "The subscription registry"),
        (name = "status", description = "Health, the index and the audit log"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route of the API.
pub fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/events/{event_id}", get(events::show))
        .route("/v1/events/{event_id}/body", get(events::body))
        .route("/v1/events/{event_id}/retry", post(events::retry_one))
        .route("/v1/retries/preview", post(retry::preview))
        .route("/v1/retries", post(retry::bulk))
        .route("/v1/replays/preview", post(redrive::replay_preview))
        .route("/v1/replays", post(redrive::replay))
        .route(
            "/v1/dead-letters/preview",
            post(redrive::dead_letters_preview),
        )
        .route(
            "/v1/dead-letters/redrive",
            post(redrive::dead_letters_redrive),
        )
        .route("/v1/quarantine/preview", post(redrive::quarantine_preview))
        .route("/v1/quarantine/redrive", post(redrive::quarantine_redrive))
        .route("/v1/subscriptions", get(subscriptions::list))
        .route(
            "/v1/subscriptions/{id}",
            get(subscriptions::show)
                .put(subscriptions::put)
                .delete(subscriptions::delete),
        )
        .route(
            "/v1/subscriptions/{id}/test",
            post(subscriptions::test_webhook),
        )
        .route("/v1/status", get(status::status))
        .route("/v1/me", get(status::me))
        .route("/v1/audit", get(status::audit_log))
        .route("/v1/health/subscriptions", get(health::subscriptions))
        .route("/v1/health/sources", get(health::sources))
        .fallback(|| async { ApiError::not_found("no such route") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router is in the OpenAPI document, and nothing else is.
    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc = ApiDoc::openapi();
        let mut described: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        described.push("/v1/openapi.json");
        described.sort_unstable();
        let source = include_str!("mod.rs");
        let mut routed: Vec<&str> = source
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix(".route(\"")
                    .or_else(|| l.trim().strip_prefix('"'))
            })
            .filter_map(|rest| rest.split('"').next())
            .filter(|p| p.starts_with("/v1/"))
            .collect();
        routed.sort_unstable();
        routed.dedup();
        assert_eq!(routed, described);
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
