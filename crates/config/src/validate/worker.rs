//! Validation of the `worker` section: retries, the loop check's own URLs, a drain that ends
//! within the consumer session, the shape of the API token, and the extra roots' file.

use std::time::Duration;

use crate::field::{err, FieldError};
use crate::model::WorkerConfig;

/// librdkafka's `session.timeout.ms` when the config does not set it.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// `read_files`: check that `extra_roots` is there (the ingress never reads it). Whether it
/// holds certificates is checked when the worker builds its client, which stops it if not.
pub(super) fn validate(w: &WorkerConfig, read_files: bool, errors: &mut Vec<FieldError>) {
    if let Some(path) = w.extra_roots.as_ref().filter(|_| read_files) {
        if !path.is_file() {
            errors.push(err(
                "worker.extra_roots",
                format!("{} is not a file", path.display()),
            ));
        }
    }
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
    check_reload(w, errors);
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
    if w.delivery_concurrency == 0 {
        errors.push(err(
            "worker.delivery_concurrency",
            "must be at least 1 (1 delivers a partition strictly in order)",
        ));
    }
    for (field, value) in [
        (
            "worker.max_subscription_timeout",
            w.max_subscription_timeout,
        ),
        ("worker.first_attempt_budget", w.first_attempt_budget),
        ("worker.max_postponement", w.max_postponement),
    ] {
        if value.is_zero() {
            errors.push(err(field, "must be greater than zero"));
        }
    }
    check_memory(w, errors);
}

pub use crate::model::WORKER_BASE_BYTES;

/// H-6: the worker's memory is bounded in bytes, and with a container limit the bound must fit.
fn check_memory(w: &WorkerConfig, errors: &mut Vec<FieldError>) {
    const MIB: u64 = 1 << 20;
    if w.max_record_memory < MIB {
        errors.push(err("worker.max_record_memory", "must be at least 1 MiB"));
    }
    if w.consumer_prefetch_bytes.is_some_and(|bytes| bytes < MIB) {
        errors.push(err(
            "worker.consumer_prefetch_bytes",
            "must be at least 1 MiB",
        ));
    }
    let Some(limit) = w.memory_limit else {
        return;
    };
    let needed = w
        .max_record_memory
        .saturating_mul(2)
        .saturating_add(w.prefetch_bytes().saturating_mul(2))
        .saturating_add(WORKER_BASE_BYTES);
    if needed > limit {
        errors.push(err(
            "worker.memory_limit",
            format!(
                "{} MiB cannot hold 2 x worker.max_record_memory + 2 x the prefetch \
                 (worker.consumer_prefetch_bytes, {} MiB{}) + 64 MiB = {} MiB: lower those or \
                 raise the limit",
                limit / MIB,
                w.prefetch_bytes().div_ceil(MIB),
                if w.consumer_prefetch_bytes.is_none() {
                    ", the least it is sized to"
                } else {
                    ""
                },
                needed.div_ceil(MIB)
            ),
        ));
    }
}

/// Reloads are checked for by reading the config file: not more than once a second.
fn check_reload(w: &WorkerConfig, errors: &mut Vec<FieldError>) {
    let reload = w.reload_interval;
    if !reload.is_zero() && reload < Duration::from_secs(1) {
        errors.push(err(
            "worker.reload_interval",
            "must be 0s (SIGHUP only) or at least 1s: every check reads the config file",
        ));
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
