//! Stage 7, durable: claim the dedupe key, write the event to Kafka, then commit the claim (202)
//! or release it (503, so the sender's retry is processed, not answered as a duplicate). Runs
//! as its own task, so a client that disconnects cannot leave a claim or a record unsettled.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use spillway_config::{FailMode, ResolvedSource};
use spillway_core::Envelope;
use spillway_kafka::ProduceError;
use spillway_store::{Claim, ClaimToken, SharedStore};
use spillway_telemetry::{IngressMetrics, Outcome, RedisCommand};
use tracing::Instrument;

use crate::answer::{self, Answer};
use crate::pipeline::Pipeline;
use crate::spans;
use crate::store::timed;

// === impl Pipeline ===

impl Pipeline {
    /// Runs [`Pipeline::make_durable`] as its own task and waits for its answer. If the client
    /// disconnects, hyper drops this future, but the claim is still committed or released and
    /// the record's fate still settled. Shutdown waits for these tasks.
    pub(crate) async fn make_durable_detached(
        self: &Arc<Self>,
        source: Arc<ResolvedSource>,
        envelope: Envelope,
    ) -> Answer {
        let this = Arc::clone(self);
        let id = envelope.id;
        let task = self.tasks.spawn(
            async move { this.make_durable(source, envelope).await }
                .instrument(tracing::Span::current()),
        );
        match task.await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(event_id = %id, error = %e, "the durable section of a request failed");
                answer::error(
                    Outcome::Internal,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request could not be handled; retry later",
                )
            }
        }
    }

    /// Claim, produce, then commit or release.
    async fn make_durable(&self, source: Arc<ResolvedSource>, mut envelope: Envelope) -> Answer {
        let claim = match self.claim(&source, &envelope).await {
            Ok(claim) => claim,
            Err(answered) => return answered,
        };
        let id = envelope.id.to_string();
        let produce_span = spans::produce(&source.topic, &id);
        // The producer span's context travels in the record, so the worker continues this
        // trace; without trace export the record keeps a fresh random traceparent.
        if let Some(tp) = spillway_telemetry::traces::traceparent(&produce_span) {
            envelope.traceparent = tp;
        }
        let started = Instant::now();
        let produced = self
            .producer
            .send(&source.topic, &envelope)
            .instrument(produce_span.clone())
            .await;
        spans::produced(&produce_span, &produced);
        self.metrics.produce(
            &source.topic,
            started.elapsed().as_secs_f64(),
            produced.as_ref().err().map(ProduceError::code),
        );
        match produced {
            Ok(_) => {
                if let Some(held) = claim {
                    held.commit(&source.name, &id).await;
                }
                answer::accepted(&id)
            }
            Err(e) => {
                if let Some(held) = claim {
                    held.release(&source.name).await;
                }
                // The cause goes to the log with the event id; the sender gets the stable
                // code and a sentence, not librdkafka's text.
                tracing::warn!(source = %source.name, event_id = %id, error = %e, code = e.code(), "kafka did not take the event");
                answer::retry_later(
                    Outcome::KafkaUnavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kafka_unavailable",
                    "the event could not be made durable in Kafka; retry later",
                    self.retry_after,
                )
            }
        }
    }

    /// Claims the envelope's dedupe key: `Ok(None)` when the source does not deduplicate or
    /// the store is down and the source fails open; an answer for a duplicate, a claim in
    /// flight elsewhere, or a store that is down for a source that fails closed.
    async fn claim(
        &self,
        source: &ResolvedSource,
        envelope: &Envelope,
    ) -> Result<Option<HeldClaim<'_>>, Answer> {
        let (Some(store), Some(key)) = (&self.store, &envelope.dedupe_key) else {
            return Ok(None);
        };
        let id = envelope.id.to_string();
        let redis_key = format!("{}{}:{key}", self.key_prefix, source.name);
        let claimed = timed(
            &self.metrics,
            RedisCommand::Claim,
            store.claim(&redis_key, &id),
        )
        .await;
        match claimed {
            Ok(Claim::Claimed(token)) => Ok(Some(HeldClaim::new(store, token, &self.metrics))),
            Ok(Claim::InFlight) => {
                self.metrics.dedupe_hit(&source.name, false);
                Err(answer::retry_later(
                    Outcome::InFlight,
                    StatusCode::CONFLICT,
                    "in_flight",
                    "an event with this key is being accepted right now; retry later",
                    self.retry_after,
                ))
            }
            Ok(Claim::Done(original)) => {
                self.metrics.dedupe_hit(&source.name, true);
                tracing::Span::current().record("event_id", original.as_str());
                Err(answer::duplicate(&original))
            }
            Err(e) => match source.on_redis_unavailable {
                FailMode::FailOpen => {
                    self.metrics.fail_open(&source.name);
                    tracing::warn!(source = %source.name, event_id = %id, error = %e, "dedupe bypassed (fail-open)");
                    Ok(None)
                }
                FailMode::FailClosed => {
                    tracing::warn!(source = %source.name, error = %e, "dedupe store unavailable (fail-closed)");
                    Err(answer::retry_later(
                        Outcome::RedisUnavailable,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "dedupe_unavailable",
                        "the dedupe store is unavailable; retry later",
                        self.retry_after,
                    ))
                }
            },
        }
    }
}

/// A dedupe claim this process holds; keeps `spillway_dedupe_in_flight_claims` true until it
/// is committed or released (or its task ends any other way).
struct HeldClaim<'a> {
    store: &'a SharedStore,
    token: ClaimToken,
    metrics: &'a IngressMetrics,
}

// === impl HeldClaim ===

impl<'a> HeldClaim<'a> {
    fn new(store: &'a SharedStore, token: ClaimToken, metrics: &'a IngressMetrics) -> Self {
        metrics.claims_in_flight().inc();
        Self {
            store,
            token,
            metrics,
        }
    }

    /// The event is in Kafka: later requests with its key are duplicates.
    async fn commit(self, source: &str, event_id: &str) {
        let committed = timed(
            self.metrics,
            RedisCommand::Commit,
            self.store.commit(&self.token),
        )
        .await;
        match committed {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                source,
                event_id,
                "claim expired before commit; another request took the key"
            ),
            // The event is in Kafka; the claim expires after claim_ttl.
            Err(e) => tracing::warn!(source, event_id, error = %e, "commit failed"),
        }
    }

    /// The event is not in Kafka: the sender's retry must be processed.
    async fn release(self, source: &str) {
        let released = timed(
            self.metrics,
            RedisCommand::Release,
            self.store.release(&self.token),
        )
        .await;
        if let Err(e) = released {
            tracing::warn!(source, error = %e, "release failed; the key stays claimed until claim_ttl");
        }
    }
}

impl Drop for HeldClaim<'_> {
    fn drop(&mut self) {
        self.metrics.claims_in_flight().dec();
    }
}
