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

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    // Serialising these two plain structs cannot fail; an empty body is the fallback anyway.
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

/// An error the sender should retry after a pause (409, 503).
pub fn retry_later(
    outcome: Outcome,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    after: Duration,
) -> Answer {
    let mut answer = error(outcome, status, code, message);
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
