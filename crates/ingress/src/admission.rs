//! Stage 2, admission: everything that can refuse a request before its body is read, cheapest
//! first: the source's address allowlist, its client-certificate requirement, the client
//! blocklist, the method, the hop count (loop protection), and the client's place among its
//! open requests. Then two gates that come later in the request: the process's in-flight
//! limit once the body is in (a slow upload must not hold one of the places verified work
//! needs), and the source's rate limit once the signature is verified (an anonymous client
//! must not use up a source's allowance).

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use prometheus::IntGauge;
use spillway_config::ResolvedSource;
use spillway_telemetry::{IngressMetrics, Outcome, RedisCommand};

use crate::answer::{self, Answer};
use crate::budget::ClientPlace;
use crate::limit::Place;
use crate::pipeline::Pipeline;
use crate::store::count_hit;
use crate::tls::ClientSubject;

/// A request let in: it holds one of its client's places until it is answered.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The `spillway-hop` count the request carried.
    pub(crate) hops: u32,
    /// The client's place; its body bytes are counted against the client's share through it.
    pub(crate) place: ClientPlace,
}

/// A request whose body is in: it holds one of the process's in-flight places until its
/// event's fate is settled, in the durable task if it gets that far (so a client that hangs
/// up cannot free a place while its event is still being written).
#[derive(Debug)]
pub(crate) struct InFlight {
    _place: Place,
    _gauge: InFlightGuard,
}

// === impl Pipeline ===

impl Pipeline {
    /// Admits a request to `source` from `client`, or answers it.
    pub(crate) async fn admit<B>(
        &self,
        req: &Request<B>,
        source: &ResolvedSource,
        client: IpAddr,
    ) -> Result<Admitted, Answer> {
        // Refused before anything is read: an address outside the allowlist costs nothing.
        if !source.allow_cidrs.is_empty() && !source.allow_cidrs.iter().any(|n| n.contains(&client))
        {
            return Err(answer::error(
                Outcome::Forbidden,
                StatusCode::FORBIDDEN,
                "address_not_allowed",
                format!("{client} may not send to this source"),
            ));
        }
        if source.require_client_cert && req.extensions().get::<ClientSubject>().is_none() {
            return Err(answer::error(
                Outcome::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "client_certificate_required",
                "this source takes requests over TLS with a client certificate from its CA",
            ));
        }
        self.not_blocked(client).await?;
        if let Some(answer) = self.early_handshake(req, source, client).await {
            return Err(answer);
        }
        if req.method() != Method::POST {
            return Err(method_not_allowed());
        }
        let hops = self.hops(req.headers())?;
        // Shed before the body is read when no in-flight place is free: refusing costs
        // nothing now and a read body later (the place itself is taken after the read).
        if !self.limit.has_room() {
            return Err(overloaded(self.retry_after));
        }
        let Some(place) = self.client_places.take(client) else {
            return Err(answer::retry_later(
                Outcome::ClientLimit,
                StatusCode::SERVICE_UNAVAILABLE,
                "client_overloaded",
                "this client address has too many requests open; retry later",
                self.retry_after,
            ));
        };
        Ok(Admitted { hops, place })
    }

    /// The in-flight gate, passed once the body is in: refuse at once rather than queue when
    /// the process is saturated.
    // An `Answer` is the request's whole reply, built once on the way out; boxing it would
    // only add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn enter(&self) -> Result<InFlight, Answer> {
        let Some(place) = self.limit.try_enter() else {
            return Err(overloaded(self.retry_after));
        };
        Ok(InFlight {
            _place: place,
            _gauge: InFlightGuard::new(&self.metrics),
        })
    }

    async fn not_blocked(&self, client: IpAddr) -> Result<(), Answer> {
        let Some(blocklist) = &self.blocklist else {
            return Ok(());
        };
        match blocklist.blocked_for(client, &self.metrics).await {
            None => Ok(()),
            Some(left) => Err(answer::retry_later(
                Outcome::Blocked,
                StatusCode::FORBIDDEN,
                "client_blocked",
                "this address failed signature verification too often and is blocked for a while",
                left,
            )),
        }
    }

    // An `Answer` is the request's whole reply, built once on the way out; boxing it would
    // only add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    fn hops(&self, headers: &HeaderMap) -> Result<u32, Answer> {
        match hop_count(headers) {
            Some(h) if h <= self.max_hops => Ok(h),
            Some(h) => Err(answer::error(
                Outcome::LoopDetected,
                StatusCode::LOOP_DETECTED,
                "loop_detected",
                format!("this event was already delivered {h} times by Spillway workers (limit {}): a subscription loops back into the ingress", self.max_hops),
            )),
            None => Err(answer::error(
                Outcome::BadRequest,
                StatusCode::BAD_REQUEST,
                "malformed_header",
                "spillway-hop must be a non-negative integer",
            )),
        }
    }

    /// Counts a verified request against its source's rate limit, shared by every pod through
    /// the Redis Cluster (a fixed window: at a window's edge up to twice the limit can pass
    /// within one window's length). Only authentic requests count, so nobody without the
    /// secret can use up a source's allowance. A limiter that cannot be reached lets requests
    /// through: it protects, it does not decide what is accepted.
    pub(crate) async fn rate_limited(&self, source: &ResolvedSource) -> Option<Answer> {
        let (limit, store) = (source.rate_limit.as_ref()?, self.store.as_ref()?);
        let hit = count_hit(
            store,
            &self.metrics,
            RedisCommand::RateLimit,
            &self.keys.rate(&source.name),
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
}

/// 503: the in-flight limit is reached (it may have shrunk while Kafka or Redis is slow).
fn overloaded(retry_after: std::time::Duration) -> Answer {
    answer::retry_later(
        Outcome::Overloaded,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many requests in flight; retry later",
        retry_after,
    )
}

fn method_not_allowed() -> Answer {
    let mut a = answer::error(
        Outcome::MethodNotAllowed,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "webhooks are sent with POST",
    );
    a.response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    a
}

/// The `spillway-hop` count: 0 when absent, `None` when it is not a number.
fn hop_count(headers: &HeaderMap) -> Option<u32> {
    match headers.get(spillway_core::headers::HOP) {
        None => Some(0),
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
    }
}

/// Keeps the in-flight gauge true even when a request future is dropped midway.
#[derive(Debug)]
struct InFlightGuard(IntGauge);

impl InFlightGuard {
    fn new(metrics: &IngressMetrics) -> Self {
        let gauge = metrics.in_flight().clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
