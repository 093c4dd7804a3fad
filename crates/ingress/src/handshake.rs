//! Registration handshakes answered at the edge: the requests providers make to prove the
//! endpoint is theirs (Slack's url_verification, Meta's hub.challenge, Zoom's
//! endpoint.url_validation...). None is written to Kafka. The unsigned ones (GET challenges,
//! Microsoft Graph's validation token, Asana's X-Hook-Secret) are answered before the body is
//! read; the signed ones only once their signature is verified, like any event.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use spillway_config::ResolvedSource;
use spillway_providers::Handshake;
use spillway_signature::Verified;
use spillway_telemetry::Outcome;
use subtle::ConstantTimeEq;

use crate::answer::{self, Answer};
use crate::pipeline::Pipeline;

/// Longest challenge echoed back: providers send tens of characters; Graph's token is the
/// longest, a sentence.
const MAX_CHALLENGE: usize = 4096;

// === impl Pipeline ===

impl Pipeline {
    /// The answer to an unsigned handshake of `source`'s provider, if `req` is one. A wrong
    /// verify token or Okta token counts against `client` as a failed verification does, so
    /// that neither can be guessed at leisure.
    pub(crate) async fn early_handshake<B>(
        &self,
        req: &Request<B>,
        source: &ResolvedSource,
        client: IpAddr,
    ) -> Option<Answer> {
        let handshake = source.handshake?;
        let query = |name: &str| query_value(req.uri().query(), name);
        let answer = match (handshake, req.method()) {
            (Handshake::MetaSubscribe, &Method::GET) => {
                let challenge = query("hub.challenge")?;
                if query("hub.mode").as_deref() != Some("subscribe") {
                    return Some(refused("hub.mode must be subscribe"));
                }
                match (&source.verify_token, query("hub.verify_token")) {
                    (None, _) => Some(forbidden(
                        "verify_token_not_configured",
                        "this source has no verify_token to check hub.verify_token against",
                    )),
                    (Some(want), Some(got))
                        if bool::from(want.as_bytes().ct_eq(got.as_bytes())) =>
                    {
                        Some(text(&challenge))
                    }
                    _ => Some(forbidden(
                        "verify_token_mismatch",
                        "hub.verify_token is not this source's verify_token",
                    )),
                }
            }
            (Handshake::DropboxChallenge, &Method::GET) => Some(text(&query("challenge")?)),
            (Handshake::GraphValidationToken, &Method::POST) => {
                Some(text(&query("validationToken")?))
            }
            (Handshake::OktaVerification, &Method::GET) => {
                let challenge = header_text(req.headers(), "x-okta-verification-challenge")?;
                // The hook's Authorization token comes with the challenge: check it as an
                // event's would be.
                let request = spillway_signature::Request {
                    method: "GET",
                    url: "",
                    headers: req.headers(),
                    body: b"",
                };
                Some(
                    match source
                        .verifier
                        .verify_request(&request, std::time::SystemTime::now())
                    {
                        Ok(_) => json_answer(&json!({ "verification": challenge })),
                        Err(e) => unauthorized(&e),
                    },
                )
            }
            (Handshake::HeadProbe, &Method::HEAD) => Some(empty()),
            (Handshake::AsanaHookSecret, &Method::POST)
                if !req.headers().contains_key("x-hook-signature") =>
            {
                let secret = req.headers().get("x-hook-secret")?.clone();
                let mut answer = json_answer(&json!({}));
                answer
                    .response
                    .headers_mut()
                    .insert("x-hook-secret", secret);
                Some(answer)
            }
            _ => None,
        }?;
        let status = answer.response.status();
        let guessed = status == StatusCode::UNAUTHORIZED
            || (status == StatusCode::FORBIDDEN && source.verify_token.is_some());
        if guessed {
            self.count_failure(source, client, answer_code(&answer))
                .await;
        }
        Some(self.counted(source, handshake, answer))
    }

    /// The answer to a signed handshake, now that `verified` proved it authentic.
    pub(crate) fn signed_handshake(
        &self,
        source: &ResolvedSource,
        headers: &HeaderMap,
        body: &[u8],
        verified: &Verified,
    ) -> Option<Answer> {
        let handshake = source.handshake.filter(|h| h.is_signed())?;
        let parse = || serde_json::from_slice::<Value>(body).ok();
        let answer = match handshake {
            Handshake::SlackUrlVerification => {
                let body = parse()?;
                if body["type"] != "url_verification" {
                    return None;
                }
                let challenge = body["challenge"].as_str()?;
                json_answer(&json!({ "challenge": challenge }))
            }
            Handshake::TwitchCallbackVerification => {
                let kind = header_text(headers, "twitch-eventsub-message-type")?;
                if kind != "webhook_callback_verification" {
                    return None;
                }
                text(parse()?["challenge"].as_str()?)
            }
            Handshake::ZoomUrlValidation => {
                let body = parse()?;
                if body["event"] != "endpoint.url_validation" {
                    return None;
                }
                let plain = body["payload"]["plainToken"].as_str()?;
                let key_id = verified.key_id.as_deref()?;
                let encrypted = source.verifier.mac_hex(key_id, plain.as_bytes())?;
                json_answer(&json!({ "plainToken": plain, "encryptedToken": encrypted }))
            }
            Handshake::XeroIntentToReceive => {
                let body = parse()?;
                if body["events"].as_array().is_none_or(|e| !e.is_empty()) {
                    return None;
                }
                empty()
            }
            Handshake::DiscordPing => {
                if parse()?["type"] != 1 {
                    return None;
                }
                json_answer(&json!({ "type": 1 }))
            }
            _ => return None,
        };
        Some(self.counted(source, handshake, answer))
    }

    pub(crate) fn counted(
        &self,
        source: &ResolvedSource,
        handshake: Handshake,
        answer: Answer,
    ) -> Answer {
        let result = if answer.response.status() == StatusCode::OK {
            "answered"
        } else {
            "refused"
        };
        self.metrics
            .handshake(&source.name, handshake.name(), result);
        tracing::info!(
            handshake = handshake.name(),
            result,
            "registration handshake"
        );
        answer
    }
}

/// The first value of `name` in a query string, percent-decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `200` with `challenge` as plain text, which browsers are told not to sniff: the text is
/// the sender's own.
fn text(challenge: &str) -> Answer {
    if challenge.is_empty()
        || challenge.len() > MAX_CHALLENGE
        || challenge.chars().any(char::is_control)
    {
        return refused("the challenge is empty, too long or has control characters");
    }
    let mut response = Response::new(Full::new(Bytes::from(challenge.to_owned())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Answer {
        outcome: Outcome::Handshake,
        response,
    }
}

/// `200` with no body.
fn empty() -> Answer {
    Answer {
        outcome: Outcome::Handshake,
        response: Response::new(Full::new(Bytes::new())),
    }
}

pub(crate) fn json_answer(body: &Value) -> Answer {
    Answer {
        outcome: Outcome::Handshake,
        response: answer::json(StatusCode::OK, body),
    }
}

/// The stable code of a refusal made here, for the verification-failure metric.
fn answer_code(answer: &Answer) -> &'static str {
    match answer.response.status() {
        StatusCode::FORBIDDEN => "verify_token_mismatch",
        _ => "signature_mismatch",
    }
}

fn refused(why: &str) -> Answer {
    answer::error(
        Outcome::BadRequest,
        StatusCode::BAD_REQUEST,
        "handshake_invalid",
        why,
    )
}

fn forbidden(code: &str, why: &str) -> Answer {
    answer::error(Outcome::Unauthorized, StatusCode::FORBIDDEN, code, why)
}

fn unauthorized(e: &spillway_signature::VerifyError) -> Answer {
    answer::error(
        Outcome::Unauthorized,
        StatusCode::UNAUTHORIZED,
        e.code(),
        e.to_string(),
    )
}
