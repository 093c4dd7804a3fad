//! The request pipeline of DESIGN.md: admission, read, verify, claim, produce, commit, answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use spillway_config::{FailMode, ResolvedSource};
use spillway_core::key::KeyInput;
use spillway_core::{trace, Envelope, EventId};
use spillway_idempotency::{Claim, ClaimToken, DedupeStore};
use spillway_kafka::{EventProducer, ProduceError};
use spillway_telemetry::{traces, IngressMetrics, Outcome, RedisCommand, UNKNOWN_SOURCE};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::answer::{self, Answer};
use crate::blocklist::Blocklist;
use crate::client_addr::client_address;
use crate::encoding::{decode, encoding_of, DecodeError};
use crate::server::ClientSubject;
use crate::window::{count_hit, millis_since_epoch};

const HOOKS_PREFIX: &str = "/v1/hooks/";

/// Everything a request needs, shared by all connections of a process.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) sources: HashMap<String, Arc<ResolvedSource>>,
    pub(crate) producer: EventProducer,
    pub(crate) dedupe: Option<DedupeStore>,
    pub(crate) key_prefix: String,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) metrics: IngressMetrics,
    pub(crate) body_read_timeout: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) max_hops: u32,
    /// Whether each request is logged on the `spillway::access` target.
    pub(crate) access_log: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Clients refused for failing verification too often; None when off or without Redis.
    pub(crate) blocklist: Option<Blocklist>,
    /// The durable sections (claim, produce, commit) in progress; drained on shutdown.
    pub(crate) tasks: TaskTracker,
}

// === impl Pipeline ===

impl Pipeline {
    /// Handles one request from `peer` and records its outcome: metrics, the server span and
    /// the access log line.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> http::Response<answer::Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let version = req.version();
        // Only the access log and the traces need these; neither should cost when it is off.
        let described = self.access_log || traces::exporting();
        let path = described.then(|| req.uri().path().to_owned());
        let user_agent = described
            .then(|| header_text(req.headers(), header::USER_AGENT.as_str()))
            .flatten();
        let client = client_address(peer.ip(), req.headers(), &self.trusted_proxies);
        let source = req
            .uri()
            .path()
            .strip_prefix(HOOKS_PREFIX)
            .and_then(|name| self.sources.get(name))
            .cloned();
        let label = source
            .as_ref()
            .map_or(UNKNOWN_SOURCE, |s| s.name.as_str())
            .to_owned();
        // The id this request's event gets if it is accepted. The request's span carries it
        // and the source from the start, so every log line inside names them (a duplicate's
        // span is given the original event's id).
        let id = EventId::new_v4();
        let span = if traces::exporting() {
            tracing::info_span!(
                "request",
                otel.name = "POST /v1/hooks/{source}",
                otel.kind = "server",
                source = %label,
                event_id = %id,
            )
        } else {
            tracing::info_span!("request", source = %label, event_id = %id)
        };
        if traces::exporting() {
            // The HTTP server conventions, as OpenTelemetry attributes only.
            traces::set_attributes(
                &span,
                &[
                    ("http.request.method", method.to_string().into()),
                    ("http.route", "/v1/hooks/{source}".into()),
                    ("url.path", path.clone().unwrap_or_default().into()),
                    ("network.protocol.version", protocol_version(version).into()),
                    ("client.address", client.to_string().into()),
                    (
                        "user_agent.original",
                        user_agent.clone().unwrap_or_default().into(),
                    ),
                ],
            );
            if method != Method::POST {
                span.record("otel.name", format!("{method} /v1/hooks/{{source}}"));
            }
            // A sender's own trace is linked, never adopted as the parent.
            traces::link_remote(
                &span,
                req.headers()
                    .get(spillway_core::headers::TRACEPARENT)
                    .and_then(|v| v.to_str().ok()),
            );
        }
        let answer = self
            .route(req, source, id, client)
            .instrument(span.clone())
            .await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.record(&label, answer.outcome, seconds);
        self.metrics
            .set_producer_queue(i64::from(self.producer.queued()));
        let status = answer.response.status();
        traces::set_attributes(
            &span,
            &[(
                "http.response.status_code",
                i64::from(status.as_u16()).into(),
            )],
        );
        if status.is_server_error() {
            traces::set_error(&span, answer.outcome.label());
        }
        if self.access_log {
            tracing::info!(
                target: "spillway::access",
                parent: &span,
                method = %method,
                path = path.as_deref().unwrap_or_default(),
                status = status.as_u16(),
                outcome = answer.outcome.label(),
                duration_ms = seconds * 1000.0,
                peer = %peer,
                client = %client,
                protocol = protocol_version(version),
                user_agent = user_agent.as_deref(),
                "request"
            );
        }
        answer.response
    }

    async fn route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        source: Option<Arc<ResolvedSource>>,
        id: EventId,
        client: IpAddr,
    ) -> Answer {
        if req.uri().path() == "/robots.txt" && matches!(*req.method(), Method::GET | Method::HEAD)
        {
            return answer::robots();
        }
        if !req.uri().path().starts_with(HOOKS_PREFIX) {
            return answer::error(
                Outcome::UnknownSource,
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; webhooks are POSTed to /v1/hooks/{source}",
            );
        }
        let Some(source) = source else {
            return answer::error(
                Outcome::UnknownSource,
                StatusCode::NOT_FOUND,
                "unknown_source",
                "no source of that name is configured",
            );
        };
        // Refused before anything is read: an address outside the allowlist costs nothing.
        if !source.allow_cidrs.is_empty() && !source.allow_cidrs.iter().any(|n| n.contains(&client))
        {
            return answer::error(
                Outcome::Forbidden,
                StatusCode::FORBIDDEN,
                "address_not_allowed",
                format!("{client} may not send to this source"),
            );
        }

        if source.require_client_cert && req.extensions().get::<ClientSubject>().is_none() {
            return answer::error(
                Outcome::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "client_certificate_required",
                "this source takes requests over TLS with a client certificate from its CA",
            );
        }

        if let Some(blocklist) = &self.blocklist {
            if let Some(left) = blocklist.blocked_for(client, &self.metrics).await {
                return answer::retry_later(
                    Outcome::Blocked,
                    StatusCode::FORBIDDEN,
                    "client_blocked",
                    "this address failed signature verification too often and is blocked for a while",
                    left,
                );
            }
        }
        if req.method() != Method::POST {
            let mut a = answer::error(
                Outcome::MethodNotAllowed,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhooks are sent with POST",
            );
            a.response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return a;
        }
        let hops = match hop_count(req.headers()) {
            Some(h) if h <= self.max_hops => h,
            Some(h) => {
                let a = answer::error(
                    Outcome::LoopDetected,
                    StatusCode::LOOP_DETECTED,
                    "loop_detected",
                    format!("this event was already delivered {h} times by Spillway workers (limit {}): a subscription loops back into the ingress", self.max_hops),
                );
                return a;
            }
            None => {
                let a = answer::error(
                    Outcome::BadRequest,
                    StatusCode::BAD_REQUEST,
                    "malformed_header",
                    "spillway-hop must be a non-negative integer",
                );
                return a;
            }
        };
        // Counted only for requests that could be accepted: a wrong method or a loop spends
        // none of the source's allowance.
        if let Some(refused) = self.rate_limited(&source).await {
            return refused;
        }
        // Admission: refuse at once rather than queue when the process is saturated.
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            let a = answer::retry_later(
                Outcome::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight; retry later",
                self.retry_after,
            );
            return a;
        };
        let _in_flight = InFlightGuard::new(&self.metrics);
        self.accept(source, req, hops, id, client).await
    }

    /// Counts the request against its source's rate limit, shared by every pod through the
    /// Redis Cluster (a fixed window: at a window's edge up to twice the limit can pass within
    /// one window's length). A limiter that cannot be reached lets requests through: it
    /// protects, it does not decide what is accepted.
    async fn rate_limited(&self, source: &ResolvedSource) -> Option<Answer> {
        let (limit, store) = (source.rate_limit.as_ref()?, self.dedupe.as_ref()?);
        let hit = count_hit(
            store,
            &self.metrics,
            RedisCommand::RateLimit,
            &format!("{}rate:{}", self.key_prefix, source.name),
            limit.window,
        )
        .await;
        match hit {
            Ok(hit) if hit.count > limit.requests => Some(answer::retry_later(
                Outcome::RateLimited,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this source accepts {} requests per {:?}; retry later",
                    limit.requests, limit.window
                ),
                hit.left,
            )),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(source = %source.name, error = %e, "rate limit not counted (Redis unavailable); letting the request through");
                None
            }
        }
    }

    async fn accept(
        self: &Arc<Self>,
        source: Arc<ResolvedSource>,
        req: Request<Incoming>,
        hops: u32,
        id: EventId,
        client: IpAddr,
    ) -> Answer {
        // The verified client certificate's subject: the device id of a mutual-TLS source.
        let device_id = req
            .extensions()
            .get::<ClientSubject>()
            .map(|s| s.0.to_string());
        let cap = source.max_body_bytes;
        let encoding = match encoding_of(req.headers()) {
            Ok(e) => e,
            Err(e) => {
                return answer::error(
                    Outcome::UnsupportedEncoding,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_encoding",
                    e.to_string(),
                )
            }
        };
        if let Some(length) = content_length(req.headers()) {
            if length > cap {
                return too_large(cap);
            }
        }
        let (parts, body) = req.into_parts();
        let cap_usize = usize::try_from(cap).unwrap_or(usize::MAX);
        let body = match tokio::time::timeout(
            self.body_read_timeout,
            Limited::new(body, cap_usize).collect(),
        )
        .await
        {
            Err(_) => {
                return answer::error(
                    Outcome::BodyTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the body was not received within {:?}",
                        self.body_read_timeout
                    ),
                )
            }
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(cap),
            Ok(Err(e)) => {
                return answer::error(
                    Outcome::BadRequest,
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("the body could not be read: {e}"),
                )
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        self.metrics.body_read(&source.name, body.len());
        let body = match decode(encoding, body, cap) {
            Ok(b) => b,
            Err(DecodeError::TooLarge(_)) => return too_large(cap),
            Err(e) => {
                return answer::error(
                    Outcome::BadRequest,
                    StatusCode::BAD_REQUEST,
                    "body_undecodable",
                    e.to_string(),
                )
            }
        };
        let received_at = SystemTime::now();

        let verify_span = traces::traced(|| {
            tracing::info_span!("verify", signature.scheme = source.verifier.scheme().name())
        });
        let verified = verify_span.in_scope(|| {
            let result = source.verifier.verify(&parts.headers, &body, received_at);
            if let Err(e) = &result {
                traces::set_error(&verify_span, e.code());
            }
            result
        });
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                self.metrics.verify_failure(&source.name, e.code());
                if let Some(blocklist) = &self.blocklist {
                    blocklist.failed(client, &source.name, &self.metrics).await;
                }
                let (outcome, status) = if e.is_unauthorized() {
                    (Outcome::Unauthorized, StatusCode::UNAUTHORIZED)
                } else {
                    (Outcome::BadRequest, StatusCode::BAD_REQUEST)
                };
                return answer::error(outcome, status, e.code(), e.to_string());
            }
        };
        let key_input = KeyInput::new(&parts.headers, &body, verified.signed_id.as_deref())
            .with_client_subject(device_id.as_deref());
        let dedupe_key = match source.dedupe.extract(&key_input) {
            Ok(k) => k,
            Err(e) => return bad_key("dedupe key", &e),
        };
        let partition_key = match source.partition_key.as_ref().map(|p| p.extract(&key_input)) {
            None => None,
            Some(Ok(k)) => k,
            Some(Err(e)) => return bad_key("partition key", &e),
        };

        let envelope = Envelope {
            id,
            source: source.name.clone(),
            received_at_ms: millis_since_epoch(received_at),
            record_key: partition_key.or_else(|| dedupe_key.clone()),
            hops,
            dedupe_key,
            scheme: source.verifier.scheme().name().to_owned(),
            key_id: verified.key_id,
            device_id,
            content_type: header_text(&parts.headers, header::CONTENT_TYPE.as_str()),
            traceparent: trace::new_traceparent(),
            forwarded: forwarded(&parts.headers, &source.forward_headers),
            body,
        };
        // The durable section runs as its own task: if the client disconnects, hyper drops
        // this future, but the claim is still committed or released and the record's fate is
        // still settled. Shutdown waits for these tasks.
        let this = Arc::clone(self);
        match self
            .tasks
            .spawn(
                async move { this.make_durable(source, envelope).await }
                    .instrument(tracing::Span::current()),
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => answer::error(
                Outcome::Internal,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the request task failed: {e}"),
            ),
        }
    }

    /// Claim, produce, then commit or release.
    async fn make_durable(&self, source: Arc<ResolvedSource>, mut envelope: Envelope) -> Answer {
        let id = envelope.id.to_string();
        let mut claim = None;
        if let (Some(store), Some(key)) = (&self.dedupe, &envelope.dedupe_key) {
            let redis_key = format!("{}{}:{key}", self.key_prefix, source.name);
            let claimed = timed(
                &self.metrics,
                RedisCommand::Claim,
                store.claim(&redis_key, &id),
            )
            .await;
            match claimed {
                Ok(Claim::Claimed(token)) => {
                    claim = Some(HeldClaim::new(store, token, &self.metrics));
                }
                Ok(Claim::InFlight) => {
                    self.metrics.dedupe_hit(&source.name, false);
                    return answer::retry_later(
                        Outcome::InFlight,
                        StatusCode::CONFLICT,
                        "in_flight",
                        "an event with this key is being accepted right now; retry later",
                        self.retry_after,
                    );
                }
                Ok(Claim::Done(original)) => {
                    self.metrics.dedupe_hit(&source.name, true);
                    tracing::Span::current().record("event_id", original.as_str());
                    return answer::duplicate(&original);
                }
                Err(e) => match source.on_redis_unavailable {
                    FailMode::FailOpen => {
                        self.metrics.fail_open(&source.name);
                        tracing::warn!(source = %source.name, event_id = %id, error = %e, "dedupe bypassed (fail-open)");
                    }
                    FailMode::FailClosed => {
                        tracing::warn!(source = %source.name, error = %e, "dedupe store unavailable (fail-closed)");
                        return answer::retry_later(
                            Outcome::RedisUnavailable,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "dedupe_unavailable",
                            "the dedupe store is unavailable; retry later",
                            self.retry_after,
                        );
                    }
                },
            }
        }

        // The producer span's context travels in the record, so the worker continues this
        // trace; without trace export the record keeps a fresh random traceparent.
        let produce_span = traces::traced(|| {
            let span = tracing::info_span!(
                "send",
                otel.name = %format_args!("send {}", source.topic),
                otel.kind = "producer",
            );
            traces::set_attributes(
                &span,
                &[
                    ("messaging.system", "kafka".into()),
                    ("messaging.operation.type", "send".into()),
                    ("messaging.destination.name", source.topic.clone().into()),
                    ("messaging.message.id", id.clone().into()),
                ],
            );
            span
        });
        if let Some(tp) = traces::traceparent(&produce_span) {
            envelope.traceparent = tp;
        }
        let produce_started = Instant::now();
        let produced = self
            .producer
            .send(&source.topic, &envelope)
            .instrument(produce_span.clone())
            .await;
        match &produced {
            Ok(d) => traces::set_attributes(
                &produce_span,
                &[
                    (
                        "messaging.destination.partition.id",
                        d.partition.to_string().into(),
                    ),
                    ("messaging.kafka.offset", d.offset.into()),
                ],
            ),
            Err(e) => traces::set_error(&produce_span, e.code()),
        }
        self.metrics.produce(
            &source.topic,
            produce_started.elapsed().as_secs_f64(),
            produced.as_ref().err().map(ProduceError::code),
        );
        match produced {
            Ok(_) => {
                if let Some(held) = claim {
                    let committed = timed(
                        &self.metrics,
                        RedisCommand::Commit,
                        held.store.commit(&held.token),
                    )
                    .await;
                    match committed {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(source = %source.name, event_id = %id,
                            "claim expired before commit; another request took the key"),
                        // The event is in Kafka; the claim expires after claim_ttl.
                        Err(e) => {
                            tracing::warn!(source = %source.name, event_id = %id, error = %e, "commit failed")
                        }
                    }
                }
                answer::accepted(&id)
            }
            Err(e) => {
                if let Some(held) = claim {
                    let released = timed(
                        &self.metrics,
                        RedisCommand::Release,
                        held.store.release(&held.token),
                    )
                    .await;
                    if let Err(release_error) = released {
                        tracing::warn!(source = %source.name, error = %release_error,
                            "release failed; the key stays claimed until claim_ttl");
                    }
                }
                tracing::warn!(source = %source.name, error = %e, "kafka did not take the event");
                answer::retry_later(
                    Outcome::KafkaUnavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kafka_unavailable",
                    format!("the event could not be made durable: {e}; retry later"),
                    self.retry_after,
                )
            }
        }
    }
}

/// A dedupe claim this process holds; keeps `spillway_dedupe_in_flight_claims` true until it
/// is committed or released (or its task ends any other way).
struct HeldClaim<'a> {
    store: &'a DedupeStore,
    token: ClaimToken,
    metrics: &'a IngressMetrics,
}

impl<'a> HeldClaim<'a> {
    fn new(store: &'a DedupeStore, token: ClaimToken, metrics: &'a IngressMetrics) -> Self {
        metrics.claims_in_flight().inc();
        Self {
            store,
            token,
            metrics,
        }
    }
}

impl Drop for HeldClaim<'_> {
    fn drop(&mut self) {
        self.metrics.claims_in_flight().dec();
    }
}

/// Runs one Redis command in its own span and records its time and whether it failed.
pub(crate) async fn timed<T, E>(
    metrics: &IngressMetrics,
    command: RedisCommand,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let span = traces::traced(|| {
        let span = tracing::info_span!(
            "dedupe",
            otel.name = %format_args!("dedupe.{}", command.label()),
            otel.kind = "client",
        );
        traces::set_attributes(
            &span,
            &[
                ("db.system.name", "redis".into()),
                ("db.operation.name", command.label().into()),
            ],
        );
        span
    });
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    metrics.redis_command(command, started.elapsed().as_secs_f64(), result.is_ok());
    if result.is_err() {
        traces::set_error(&span, "redis_error");
    }
    result
}

/// The `network.protocol.version` of a request.
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Keeps the in-flight gauge true even when a request future is dropped midway.
struct InFlightGuard<'a>(&'a IngressMetrics);

impl<'a> InFlightGuard<'a> {
    fn new(metrics: &'a IngressMetrics) -> Self {
        metrics.in_flight().inc();
        Self(metrics)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

fn too_large(cap: u64) -> Answer {
    answer::error(
        Outcome::TooLarge,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than this source's limit of {cap} bytes (for a gzip or zstd body, decompressed)"),
    )
}

fn bad_key(what: &str, e: &spillway_core::key::KeyError) -> Answer {
    answer::error(
        Outcome::BadRequest,
        StatusCode::BAD_REQUEST,
        e.code(),
        format!("no {what}: {e}"),
    )
}

/// The `spillway-hop` count: 0 when absent, `None` when it is not a number.
fn hop_count(headers: &HeaderMap) -> Option<u32> {
    match headers.get(spillway_core::headers::HOP) {
        None => Some(0),
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn forwarded(headers: &HeaderMap, names: &[String]) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for name in names {
        for value in headers.get_all(name.as_str()) {
            out.push((name.clone(), Bytes::copy_from_slice(value.as_bytes())));
        }
    }
    out
}
