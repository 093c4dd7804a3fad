//! The request path as named stages, in the order docs/architecture.md lists them: route,
//! admission, read, in-flight gate, decode, verify, rate limit, keys, durable (claim, produce,
//! commit or release), answer.
//! Each stage is one small function in its own module; this one only strings them together.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Body;
use spillway_core::EventId;
use spillway_signature::Algorithm;
use tracing::Instrument;

use crate::admission::InFlight;
use crate::answer::{self, Answer};
use crate::budget::Charge;
use crate::client_addr::client_address;
use crate::intake::Intake;
use crate::offload::{StoredObject, Streamed};
use crate::pipeline::{BodyError, Pipeline};
use crate::read::ReadBody;
use crate::route::{route, Route};
use crate::schema;
use crate::spans::RequestRecord;

// === impl Pipeline ===

impl Pipeline {
    /// Handles one request from `peer` and records its outcome: metrics, the server span and
    /// the access log line.
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        peer: SocketAddr,
    ) -> http::Response<answer::Body>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<BodyError>,
    {
        let client = client_address(peer.ip(), req.headers(), &self.trusted_proxies);
        let route = route(req.method(), req.uri().path(), &self.sources.load());
        // The id this request's event gets if it is accepted. The request's span carries it
        // and the source from the start, so every log line inside names them (a duplicate's
        // span is given the original event's id).
        let id = EventId::new_v4();
        let record = RequestRecord::start(&self, &req, &route, id, peer, client);
        let answer = self
            .stages(req, route, id, client)
            .instrument(record.span().clone())
            .await;
        record.finish(&self, answer)
    }

    /// The stages after routing, in order; each returns the answer that ends the request
    /// early, or what the next stage needs.
    async fn stages<B>(
        self: &Arc<Self>,
        req: Request<B>,
        route: Route,
        id: EventId,
        client: IpAddr,
    ) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        let source = match route {
            Route::Source(source) => source,
            Route::Answered(answer) => return answer,
        };
        // The client's place is held until the request is answered.
        let admitted = match self.admit(&req, &source, client).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let mut intake = Intake::new(source, &req, id, admitted.hops, client);
        let (parts, body) = req.into_parts();
        // The body's bytes, charged to the budget until the event's fate is settled.
        let mut charge = Charge::default();
        let read = self.read(&mut intake, &parts, body, &admitted.place, &mut charge);
        let body = match read.await {
            Ok(ReadBody::Whole(body)) => body,
            Ok(ReadBody::Stored(streamed)) => {
                // Boxed, as the other rare paths are: only a pointer in every request's
                // future (see `crate::detach`).
                return Box::pin(self.accept_streamed(intake, parts, streamed, charge)).await;
            }
            Err(refused) => return refused,
        };
        let in_flight = match self.enter() {
            Ok(in_flight) => in_flight,
            Err(refused) => return refused,
        };
        let body = match intake
            .decode(&self.budget, &mut charge, body, self.retry_after)
            .await
        {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let (verified, handshake) = if intake.source.verifier.scheme().algorithm
            == Algorithm::AwsSns
        {
            match Box::pin(self.verify_sns(&intake, &body, client)).await {
                Ok((verified, message)) => {
                    let handshake = Box::pin(self.sns_handshake(&intake.source, &message)).await;
                    (verified, handshake)
                }
                Err(refused) => return refused,
            }
        } else {
            match self.verify(&intake, &parts, &body, client).await {
                Ok(verified) => {
                    let handshake =
                        self.signed_handshake(&intake.source, &parts.headers, &body, &verified);
                    (verified, handshake)
                }
                Err(refused) => return refused,
            }
        };
        // A handshake is answered as its provider expects; with `store_handshakes` an
        // answered one is also written, and answered once it is durable.
        let handshake = match handshake {
            Some(answer)
                if intake.source.store_handshakes && answer.response.status() == StatusCode::OK =>
            {
                Some(answer)
            }
            Some(answer) => return answer,
            None => None,
        };
        // A handshake is not an event of the provider's traffic: it is not rate limited.
        if handshake.is_none() {
            if let Some(refused) = self.rate_limited(&intake.source).await {
                return refused;
            }
        }
        let mut held = Held {
            _in_flight: in_flight,
            _charge: charge,
            stored: None,
        };
        // A batch's records are keyed from their own bytes, so a replayed batch is caught
        // record by record: no request fingerprint is claimed.
        if let (Some(batch), None) = (intake.source.batch, &handshake) {
            return self
                .accept_batch(&intake, batch, &parts.headers, body, verified, held)
                .await;
        }
        let replay_key = verified.replay_key.clone();
        let keys = intake.keys(
            &parts.headers,
            body,
            verified,
            &self.metrics,
            handshake.is_some(),
        );
        let mut envelope = match keys {
            Ok(envelope) => envelope,
            Err(refused) => return refused,
        };
        // A body over `inline_max_bytes` read whole (compressed, or verified whole) goes to
        // object storage now that it passed its checks.
        held.stored = match self.store_whole(&intake, &mut envelope).await {
            Ok(stored) => stored,
            Err(refused) => return refused,
        };
        // (A source with a schema keeps its bodies in its records: nothing was stored here.)
        if let (Some(invalid), true) = (&envelope.invalid, schema::rejects(&intake.source)) {
            self.quarantine_refused(&intake.source, &envelope);
            return schema::invalid_answer(invalid);
        }
        let durable = self
            .make_durable_detached(intake.source, envelope, replay_key, held)
            .await;
        match handshake {
            Some(answer) if durable.response.status().is_success() => answer,
            _ => durable,
        }
    }

    /// The stages after a body was streamed to object storage: its verification, the rate
    /// limit, the keys its headers give, durable. Nothing of the body is in memory, and it
    /// is never a handshake (those are small).
    async fn accept_streamed(
        self: &Arc<Self>,
        intake: Intake,
        parts: http::request::Parts,
        streamed: Box<Streamed>,
        charge: Charge,
    ) -> Answer {
        let Streamed { stored, verified } = *streamed;
        let in_flight = match self.enter() {
            Ok(in_flight) => in_flight,
            Err(refused) => return refused,
        };
        let source = intake.source.clone();
        let verified = match verified {
            Ok(verified) => {
                if let Some(key_id) = &verified.key_id {
                    self.metrics.verified(&source.name, key_id);
                }
                verified
            }
            Err(e) => return self.verification_failed(&source, intake.client(), &e).await,
        };
        if let Some(refused) = self.rate_limited(&source).await {
            return refused;
        }
        let replay_key = verified.replay_key.clone();
        let envelope =
            match intake.stored_keys(&parts.headers, stored.reference(), verified, &self.metrics) {
                Ok(envelope) => envelope,
                Err(refused) => return refused,
            };
        let held = Held {
            _in_flight: in_flight,
            _charge: charge,
            stored: Some(stored),
        };
        self.make_durable_detached(source, envelope, replay_key, held)
            .await
    }
}

/// What a request holds until its event's fate is settled, moved into the durable task: its
/// in-flight place, its body's bytes, and the object its body was stored in (deleted unless
/// the durable section keeps it).
#[derive(Debug)]
pub(crate) struct Held {
    _in_flight: InFlight,
    _charge: Charge,
    pub(crate) stored: Option<StoredObject>,
}
