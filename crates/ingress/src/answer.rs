//! The answers the ingress gives: JSON bodies with stable codes, and the right status.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use spillway_core::{AcceptedBody, ErrorBody};
use spillway_telemetry::Outcome;

pub type Body = Full<Bytes>;

/// An answer and how it is counted.
#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub response: Response<Body>,
}

pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    // Serialising these plain bodies (the answers' structs, a handshake's JSON) cannot fail; an
    // empty body is the fallback anyway.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn accepted(id: &str) -> Answer {
    Answer {
        outcome: Outcome::Accepted,
        response: json(
            StatusCode::ACCEPTED,
            &AcceptedBody {
                id: id.to_owned(),
                status: "accepted".into(),
            },
        ),
    }
}

pub fn duplicate(original_id: &str) -> Answer {
    Answer {
        outcome: Outcome::Duplicate,
        response: json(
            StatusCode::OK,
            &AcceptedBody {
                id: original_id.to_owned(),
                status: "duplicate".into(),
            },
        ),
    }
}

pub fn error(
    outcome: Outcome,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> Answer {
    Answer {
        outcome,
        response: json(
            status,
            &ErrorBody {
                error: code.to_owned(),
                message: message.into(),
            },
        ),
    }
}

/// 500: the request's task failed unexpectedly (the cause is logged by the caller).
pub fn internal() -> Answer {
    error(
        Outcome::Internal,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request could not be handled; retry later",
    )
}

/// An error the sender should retry after a pause (429, 503, a blocked client's 403).
pub fn retry_later(
    outcome: Outcome,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    after: Duration,
) -> Answer {
    with_retry_after(error(outcome, status, code, message), after)
}

/// `answer` with a Retry-After header asking for a pause of `after`.
pub(crate) fn with_retry_after(mut answer: Answer, after: Duration) -> Answer {
    // Rounded up: a client told to come back sooner than the pause is refused again.
    let secs = (after.as_secs() + u64::from(after.subsec_nanos() > 0))
        .max(1)
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        answer.response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    answer
}

/// `GET /robots.txt`: nothing here is for crawlers.
pub fn robots() -> Answer {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"User-agent: *\nDisallow: /\n",
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Answer {
        outcome: Outcome::RobotsTxt,
        response,
    }
}

/// 413: the body (for a gzip or zstd body, decompressed) is larger than the source's cap.
pub fn too_large(cap: u64) -> Answer {
    error(
        Outcome::TooLarge,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than this source's limit of {cap} bytes (for a gzip or zstd body, decompressed)"),
    )
}

/// Every answer the ingress gives, as (status, `error` or `status` code); an answer without a
/// code is named in parentheses. The README's table lists exactly these (a test checks it),
/// and every unit test of an answer checks that what it got is listed here.
pub const CATALOG: &[(u16, &str)] = &[
    (202, "accepted"),
    (200, "duplicate"),
    (200, "(robots.txt)"),
    (200, "(handshake)"),
    (400, "handshake_invalid"),
    (400, "malformed_header"),
    (400, "timestamp_too_old"),
    (400, "timestamp_in_future"),
    (400, "body_not_json"),
    (400, "key_not_in_body"),
    (400, "key_header_invalid"),
    (400, "key_invalid"),
    (400, "body_unreadable"),
    (400, "body_undecodable"),
    (400, "field_missing"),
    (400, "malformed_message"),
    (400, "certificate_url_refused"),
    (400, "subscribe_url_refused"),
    (400, "batch_empty"),
    (400, "batch_malformed"),
    (401, "signature_missing"),
    (401, "signature_mismatch"),
    (401, "no_active_secret"),
    (401, "client_certificate_required"),
    (401, "certificate_invalid"),
    (403, "address_not_allowed"),
    (403, "client_blocked"),
    (403, "verify_token_not_configured"),
    (403, "verify_token_mismatch"),
    (403, "topic_not_allowed"),
    (404, "unknown_source"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (408, "body_timeout"),
    (408, "body_too_slow"),
    (413, "body_too_large"),
    (413, "record_too_large"),
    (413, "batch_too_many_records"),
    (415, "unsupported_encoding"),
    (422, "batch_rejected"),
    (422, "record_invalid"),
    (429, "rate_limited"),
    (431, "(hyper)"),
    (500, "internal"),
    (503, "kafka_unavailable"),
    (503, "dedupe_unavailable"),
    (503, "overloaded"),
    (503, "client_overloaded"),
    (503, "in_flight"),
    (503, "provider_unreachable"),
    (503, "batch_incomplete"),
    (503, "objects_unavailable"),
    (508, "loop_detected"),
];
