//! Stage 1, route: which source a request is for, or the answer for a path that is none.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Method, StatusCode};
use spillway_config::ResolvedSource;
use spillway_telemetry::{Outcome, UNKNOWN_SOURCE};

use crate::answer::{self, Answer};

/// Where webhooks are POSTed: `/v1/hooks/{source}`.
pub(crate) const HOOKS_PREFIX: &str = "/v1/hooks/";

/// Where a request goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// To a configured source.
    Source(Arc<ResolvedSource>),
    /// Nowhere: this is the whole answer (robots.txt, unknown path or source).
    Answered(Answer),
}

// === impl Route ===

impl Route {
    /// The source label of the request's metrics and span.
    pub(crate) fn label(&self) -> &str {
        match self {
            Self::Source(source) => &source.name,
            Self::Answered(_) => UNKNOWN_SOURCE,
        }
    }
}

/// Routes `method path`.
pub(crate) fn route(
    method: &Method,
    path: &str,
    sources: &HashMap<String, Arc<ResolvedSource>>,
) -> Route {
    if path == "/robots.txt" && matches!(*method, Method::GET | Method::HEAD) {
        return Route::Answered(answer::robots());
    }
    let Some(name) = path.strip_prefix(HOOKS_PREFIX) else {
        return Route::Answered(answer::error(
            Outcome::UnknownSource,
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; webhooks are POSTed to /v1/hooks/{source}",
        ));
    };
    match sources.get(name) {
        Some(source) => Route::Source(source.clone()),
        None => Route::Answered(answer::error(
            Outcome::UnknownSource,
            StatusCode::NOT_FOUND,
            "unknown_source",
            "no source of that name is configured",
        )),
    }
}
