//! Stage 7, durable: claim the dedupe key (and a replay fingerprint), write the event to
//! Kafka, then commit the claims (202) or release them (503, so the sender's retry is
//! processed, not answered as a duplicate; 413 when Kafka refuses the record as too large). Runs
//! in the request's task, and in a task of its own once the client disconnects, so that a client
//! cannot leave a claim or a record unsettled.

use std::sync::Arc;

use http::StatusCode;
use spillway_config::ResolvedSource;
use spillway_core::{Envelope, EventId};
use spillway_kafka::ProduceError;
use spillway_telemetry::Outcome;
use tokio::time::Instant;
use tracing::Instrument;

use crate::answer::{self, Answer};
use crate::claims::Claimed;
use crate::commits::HeldClaim;
use crate::detach::DetachOnDrop;
use crate::offload::{Keeper, StoredObject};
use crate::pipeline::Pipeline;
use crate::schema;
use crate::spans;
use crate::stages::Held;

// === impl Pipeline ===

impl Pipeline {
    /// Runs [`Pipeline::make_durable`] through [`Pipeline::detached`]; the future answers.
    pub(crate) fn make_durable_detached(
        self: &Arc<Self>,
        source: Arc<ResolvedSource>,
        envelope: Envelope,
        replay_key: Option<String>,
        held: Held,
    ) -> impl std::future::Future<Output = Answer> + Send + 'static {
        let this = Arc::clone(self);
        let id = envelope.id;
        let keeper = held.stored.as_ref().map(StoredObject::keeper);
        self.detached(
            id,
            held,
            Box::pin(async move {
                this.make_durable(source, envelope, replay_key, keeper)
                    .await
            }),
        )
    }

    /// Runs a durable section; the future answers. If the client disconnects, hyper drops
    /// that future, and the section goes on in a task of its own: the claims are still
    /// committed or released and the records' fate still settled; `held` (the in-flight place
    /// and the body's bytes) stays taken until then. Shutdown waits for these sections.
    /// `section` comes boxed, so that what the request's future holds of it is a pointer
    /// (see [`crate::detach`]). The section is counted for shutdown, and takes the current
    /// span, when this is called, not when the future is first polled: call it within the
    /// request's span.
    pub(crate) fn detached<F>(
        &self,
        id: EventId,
        held: Held,
        section: std::pin::Pin<Box<F>>,
    ) -> impl std::future::Future<Output = Answer> + Send + 'static
    where
        F: std::future::Future<Output = Answer> + Send + 'static,
    {
        let section = DetachOnDrop::new(&self.tasks, section, held);
        async move {
            match section.await {
                Some(answer) => answer,
                None => {
                    tracing::error!(event_id = %id, "the durable section of a request panicked");
                    answer::internal()
                }
            }
        }
    }

    /// Claim, produce, then commit or release. `keeper` keeps the object of a body stored in
    /// object storage once its record may be in Kafka.
    async fn make_durable(
        &self,
        source: Arc<ResolvedSource>,
        envelope: Envelope,
        replay_key: Option<String>,
        keeper: Option<Keeper>,
    ) -> Answer {
        let started = Instant::now();
        let answer = self
            .claim_produce_settle(source, envelope, replay_key, keeper)
            .await;
        // How long Kafka and Redis took is what the in-flight limit follows.
        self.limit.observe(started.elapsed());
        answer
    }

    async fn claim_produce_settle(
        &self,
        source: Arc<ResolvedSource>,
        mut envelope: Envelope,
        replay_key: Option<String>,
        keeper: Option<Keeper>,
    ) -> Answer {
        let claims = match self.claim_or_refuse(&source, &envelope, replay_key).await {
            Ok(claims) => claims,
            Err(answered) => return answered,
        };
        let id = envelope.id.to_string();
        // Claimed under the source's topic either way: a retried invalid event is a duplicate.
        let topic = schema::topic_for(&source, &envelope);
        let produce_span = spans::produce(topic, &id);
        // The producer span's context travels in the record, so the worker continues this
        // trace; without trace export the record keeps a fresh random traceparent.
        if let Some(tp) = spillway_telemetry::traces::traceparent(&produce_span) {
            envelope.traceparent = tp;
        }
        let started = Instant::now();
        let produced = self
            .producer
            .send(topic, &envelope)
            .instrument(produce_span.clone())
            .await;
        spans::produced(&produce_span, &produced);
        if produced
            .as_ref()
            .map_or_else(ProduceError::may_be_written, |_| true)
        {
            if let Some(keeper) = &keeper {
                keeper.keep();
            }
        }
        self.metrics.produce(
            topic,
            started.elapsed().as_secs_f64(),
            produced.as_ref().err().map(ProduceError::code),
        );
        match produced {
            Ok(_) => {
                for held in claims {
                    self.commits.commit(held, &source.name, &id).await;
                }
                self.count_invalid(&source, &envelope, "quarantined");
                answer::accepted(&id)
            }
            Err(e) => {
                for held in claims {
                    held.release(&source.name).await;
                }
                // The cause goes to the log with the event id; the sender gets the stable
                // code and a sentence, not librdkafka's text.
                tracing::warn!(source = %source.name, event_id = %id, error = %e, code = e.code(), "kafka did not take the event");
                refused_by_kafka(&e, self.retry_after)
            }
        }
    }

    /// Claims the envelope's dedupe key and, for a scheme whose signature covers neither an id
    /// nor a timestamp, the request's fingerprint too (a captured request re-sent with a
    /// fresh unsigned delivery id is then a duplicate). Empty when the source does not
    /// deduplicate; an answer for a duplicate, a claim in flight elsewhere, or a store that
    /// is down for a source that fails closed. When any key is refused, the claims held on the
    /// others are released.
    async fn claim_or_refuse(
        &self,
        source: &ResolvedSource,
        envelope: &Envelope,
        replay_key: Option<String>,
    ) -> Result<Vec<HeldClaim>, Answer> {
        let (Some(store), Some(key)) = (&self.store, &envelope.dedupe_key) else {
            return Ok(Vec::new());
        };
        let Some(cluster) = self.cluster_id().await else {
            // Not yet connected to Kafka: nothing could be written anyway.
            return Err(kafka_unavailable(self.retry_after));
        };
        let mut keys = vec![self.keys.dedupe(cluster, &source.topic, key)];
        keys.extend(
            replay_key.map(|fingerprint| self.keys.replay(cluster, &source.topic, &fingerprint)),
        );
        let id = envelope.id.to_string();
        let claimed = self.claim_event_keys(store, source, &keys, &id).await;
        let mut held = Vec::with_capacity(claimed.len());
        let mut bypassed = false;
        let mut refused = None;
        for claimed in claimed {
            // The first key's refusal, as when they were claimed one after the other, and
            // one dedupe hit for the request however many of its keys were taken.
            if refused.is_none() {
                refused = self.refusal(&claimed);
                if refused.is_some() {
                    self.count_dedupe_hit(source, &claimed);
                }
            }
            match claimed {
                Claimed::Held(claim) => held.push(claim),
                Claimed::FailedOpen(claim) => {
                    held.push(claim);
                    bypassed = true;
                }
                Claimed::InFlight | Claimed::Done(_) | Claimed::Unavailable => {}
            }
        }
        if let Some(refused) = refused {
            for claim in held {
                claim.release(&source.name).await;
            }
            return Err(refused);
        }
        // Counted once per event, however many of its claims went unanswered.
        if bypassed {
            self.metrics.fail_open(&source.name);
        }
        Ok(held)
    }

    /// The answer to a request whose claim found the key taken or went unanswered on a
    /// source that fails closed; `None` for a claim it holds (unanswered on a source that
    /// fails open included: the event goes on without its dedupe).
    fn refusal(&self, claimed: &Claimed) -> Option<Answer> {
        match claimed {
            Claimed::Held(_) | Claimed::FailedOpen(_) => None,
            // 503, not 409: several senders treat any 4xx as final, and the original may yet
            // fail; the retry after the pause is answered "duplicate" or accepted.
            Claimed::InFlight => Some(in_flight(self.retry_after)),
            Claimed::Done(original) => {
                tracing::Span::current().record("event_id", original.as_str());
                Some(answer::duplicate(original))
            }
            Claimed::Unavailable => Some(dedupe_unavailable(self.retry_after)),
        }
    }
}

/// Why an event was not made durable this time: a retry later may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
    pub(crate) outcome: Outcome,
}

// === impl Failure ===

impl Failure {
    /// Another request is accepting an event with this key right now.
    pub(crate) const IN_FLIGHT: Self = Self {
        code: "in_flight",
        message: "an event with this key is being accepted right now; retry later",
        outcome: Outcome::InFlight,
    };
    /// The dedupe store did not answer and the source fails closed.
    pub(crate) const DEDUPE_UNAVAILABLE: Self = Self {
        code: "dedupe_unavailable",
        message: "the dedupe store is unavailable; retry later",
        outcome: Outcome::RedisUnavailable,
    };
    /// Kafka did not acknowledge the event.
    pub(crate) const KAFKA_UNAVAILABLE: Self = Self {
        code: "kafka_unavailable",
        message: "the event could not be made durable in Kafka; retry later",
        outcome: Outcome::KafkaUnavailable,
    };

    /// The 503 of a single event, with Retry-After.
    fn answer(self, retry_after: std::time::Duration) -> Answer {
        answer::retry_later(
            self.outcome,
            StatusCode::SERVICE_UNAVAILABLE,
            self.code,
            self.message,
            retry_after,
        )
    }
}

fn in_flight(retry_after: std::time::Duration) -> Answer {
    Failure::IN_FLIGHT.answer(retry_after)
}

fn dedupe_unavailable(retry_after: std::time::Duration) -> Answer {
    Failure::DEDUPE_UNAVAILABLE.answer(retry_after)
}

/// The answer to a record Kafka did not take: 413 when it is too large for Kafka (a retry
/// cannot help), else 503 with Retry-After.
fn refused_by_kafka(e: &ProduceError, retry_after: std::time::Duration) -> Answer {
    match e {
        ProduceError::TooLarge(_) => answer::error(
            Outcome::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "record_too_large",
            "the event with its headers is larger than Kafka accepts for one record",
        ),
        _ => kafka_unavailable(retry_after),
    }
}

fn kafka_unavailable(retry_after: std::time::Duration) -> Answer {
    Failure::KAFKA_UNAVAILABLE.answer(retry_after)
}
