//! Stage 5, verify: the source's scheme over the decoded body, and what a failure costs the
//! client (a counted failure, a step towards being blocked). AWS SNS has its own stage 5 in
//! [`crate::sns`].

use std::net::IpAddr;

use bytes::Bytes;
use http::StatusCode;
use spillway_config::ResolvedSource;
use spillway_signature::Verified;
use spillway_telemetry::Outcome;

use crate::answer::{self, Answer};
use crate::intake::Intake;
use crate::pipeline::Pipeline;
use crate::spans;

impl Pipeline {
    /// Stage 5, verify: the source's scheme over the decoded body. A failure counts against
    /// the client's address for the blocklist.
    pub(crate) async fn verify(
        &self,
        intake: &Intake,
        parts: &http::request::Parts,
        body: &Bytes,
        client: IpAddr,
    ) -> Result<Verified, Answer> {
        let source = &intake.source;
        let at = intake.received_at();
        let url = crate::signed_url::signed_url(source, parts);
        let verified = if body.len() < OFFLOAD_BYTES {
            let request = spillway_signature::Request {
                method: parts.method.as_str(),
                url: &url,
                headers: &parts.headers,
                body,
            };
            spans::verify(&source.verifier, || {
                source.verifier.verify_request(&request, at)
            })
        } else {
            // A MAC over a large body would hold an async worker (of two, on a small pod)
            // for as long as it takes; a blocking thread does it while they serve others.
            let (source, headers, body) = (source.clone(), parts.headers.clone(), body.clone());
            let method = parts.method.clone();
            let parent = tracing::Span::current();
            let check = move || {
                let request = spillway_signature::Request {
                    method: method.as_str(),
                    url: &url,
                    headers: &headers,
                    body: &body,
                };
                parent.in_scope(|| {
                    spans::verify(&source.verifier, || {
                        source.verifier.verify_request(&request, at)
                    })
                })
            };
            match tokio::task::spawn_blocking(check).await {
                Ok(verified) => verified,
                Err(e) => {
                    tracing::error!(error = %e, "the verification task failed");
                    return Err(answer::error(
                        Outcome::Internal,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request could not be handled; retry later",
                    ));
                }
            }
        };
        match verified {
            Ok(v) => {
                if let Some(key_id) = &v.key_id {
                    self.metrics.verified(&source.name, key_id);
                }
                Ok(v)
            }
            Err(e) => Err(self.verification_failed(source, client, &e).await),
        }
    }

    /// The answer to a request that failed verification with `e`, counted by its code and
    /// against the client's address for the blocklist.
    pub(crate) async fn verification_failed(
        &self,
        source: &ResolvedSource,
        client: IpAddr,
        e: &spillway_signature::VerifyError,
    ) -> Answer {
        let status = if e.is_unauthorized() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        self.refused(source, client, status, e.code(), e.to_string())
            .await
    }

    /// A refusal of a request's authenticity with `code` (400, 401 or 403), counted as a
    /// failed verification and against the client's address.
    pub(crate) async fn refused(
        &self,
        source: &ResolvedSource,
        client: IpAddr,
        status: StatusCode,
        code: &'static str,
        why: String,
    ) -> Answer {
        self.count_failure(source, client, code).await;
        let outcome = match status {
            StatusCode::BAD_REQUEST => Outcome::BadRequest,
            StatusCode::FORBIDDEN => Outcome::Forbidden,
            _ => Outcome::Unauthorized,
        };
        answer::error(outcome, status, code, why)
    }

    /// Counts a failed verification of `source` with `code`, and against `client`.
    pub(crate) async fn count_failure(&self, source: &ResolvedSource, client: IpAddr, code: &str) {
        self.metrics.verify_failure(&source.name, code);
        if let Some(blocklist) = &self.blocklist {
            // Boxed: a failure path, and inline its Redis command would add 2 KiB to every
            // request's future, which is copied whole at each move (see `crate::detach`).
            Box::pin(blocklist.failed(client, &source.name, &self.metrics)).await;
        }
    }
}

/// Bodies from this size on are verified on a blocking thread rather than an async worker.
const OFFLOAD_BYTES: usize = 64 * 1024;
