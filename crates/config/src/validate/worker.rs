//! Validation of the `worker` section: retries, the loop check's own URLs, a drain that ends
//! within the consumer session, and the shape of the API token.

use std::time::Duration;

use crate::field::{err, FieldError};
use crate::model::WorkerConfig;

/// librdkafka's `session.timeout.ms` when the config does not set it.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

pub(super) fn validate(w: &WorkerConfig, errors: &mut Vec<FieldError>) {
    if w.max_attempts == 0 {
        errors.push(err("worker.max_attempts", "must be at least 1"));
    }
    if w.retry_initial.is_zero() || w.retry_max_delay < w.retry_initial {
        errors.push(err(
            "worker.retry_max_delay",
            "retry_initial must be positive and retry_max_delay at least retry_initial",
        ));
    }
    for (i, own) in w.ingress_urls.iter().enumerate() {
        let parsed = own.parse::<http::Uri>();
        if !parsed
            .is_ok_and(|u| u.host().is_some() && matches!(u.scheme_str(), Some("http" | "https")))
        {
            errors.push(err(
                format!("worker.ingress_urls[{i}]"),
                format!("{own:?} is not an http(s) URL with a host"),
            ));
        }
    }
    check_drain(w, errors);
    // Only its shape: the token itself is read by the worker, whose pods alone mount it
    // (the ingress validates this config too).
    if let Some(token) = &w.api_token {
        if token.env.is_some() == token.file.is_some() {
            errors.push(err("worker.api_token", "set either env or file"));
        }
    }
    if !(0.0..1.0).contains(&w.retry_jitter) {
        errors.push(err("worker.retry_jitter", "must be in [0, 1)"));
    }
}

/// A drain that outlasts the consumer session gets the worker thrown out of its group.
fn check_drain(w: &WorkerConfig, errors: &mut Vec<FieldError>) {
    let session = w
        .consumer_properties
        .get("session.timeout.ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_SESSION_TIMEOUT, Duration::from_millis);
    if w.drain_timeout.is_zero() || w.drain_timeout >= session {
        errors.push(err(
            "worker.drain_timeout",
            format!(
                "must be positive and shorter than the consumer session timeout ({} ms): \
                 a longer drain gets the worker thrown out of its group",
                session.as_millis()
            ),
        ));
    }
}
