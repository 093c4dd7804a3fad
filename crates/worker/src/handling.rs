//! What happens to one delivery of a record to a subscription: an attempt (behind the
//! subscription's circuit breaker and rate limit), then its settlement: nothing more for a
//! delivered event, else the record parked in a retry tier or the dead-letter topic. Also the
//! way back: a parked record, once due, is attempted again.
//!
//! A delivery is settled only once it was delivered or Kafka acknowledged the parked record;
//! until then the lane does not store its offset (see [`crate::ledger`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::message::{Message, OwnedMessage};
use spillway_config::{ResolvedSubscription, SourceRoute};
use spillway_core::headers;
use spillway_core::time::now_ms;
use spillway_kafka::EventProducer;
use spillway_telemetry::WorkerMetrics;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempts::{Attempt, AttemptLog};
use crate::breaker::Breakers;
use crate::control::{self, event_type, header_pairs, header_str, header_text};
use crate::delivery::{wants, Deliverer, DeliveryOutcome, OutboundEvent};
use crate::registry::LiveSubscriptions;
use crate::spans;
use crate::topics::RetryTier;
use crate::RetryPolicy;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempted {
    /// Delivered, or parked with Kafka's acknowledgement; false when cancelled first.
    pub(crate) settled: bool,
    /// The subscriber did not answer in time: the request timed out, or (a first attempt)
    /// ran past `worker.first_attempt_budget`.
    pub(crate) slow: bool,
}

/// What the workers need to handle a record, shared by every lane.
#[derive(Debug)]
pub(crate) struct Handling {
    /// The sources by name, for the event type of their records; swapped whole by a reload
    /// (see [`crate::reload`]).
    pub(crate) sources: arc_swap::ArcSwap<HashMap<String, SourceRoute>>,
    pub(crate) subscriptions: Arc<LiveSubscriptions>,
    /// Per subscription with a rate limit: its limit and the limiter enforcing it.
    pub(crate) limiters:
        std::sync::Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
    pub(crate) deliverer: Deliverer,
    pub(crate) policy: RetryPolicy,
    pub(crate) tiers: Vec<RetryTier>,
    pub(crate) dead_letter: String,
    pub(crate) producer: EventProducer,
    /// Where each attempt is recorded for the console.
    pub(crate) attempts: AttemptLog,
    pub(crate) breakers: Breakers,
    pub(crate) metrics: WorkerMetrics,
    /// How long a first attempt may hold its source partition (`worker.first_attempt_budget`).
    pub(crate) first_attempt_budget: Duration,
    /// How long a delivery may be postponed without an attempt (`worker.max_postponement`).
    pub(crate) max_postponement: Duration,
}

// === impl Handling ===

impl Handling {
    /// How long until a retry record is due; zero when it is.
    pub(crate) fn due_in(&self, message: &OwnedMessage) -> Duration {
        let not_before: u64 = header_text(message, control::NOT_BEFORE)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        Duration::from_millis(not_before.saturating_sub(now_ms()))
    }

    /// Waits until a retry record is due; false when the worker stops first.
    pub(crate) async fn wait_until_due(
        &self,
        message: &OwnedMessage,
        cancel: &CancellationToken,
    ) -> bool {
        let wait = self.due_in(message);
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// The limiter of a subscription with a rate limit, made anew when its limit changed.
    fn limiter(
        &self,
        subscription: &ResolvedSubscription,
    ) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = subscription.rate_limit?;
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = limiters
            .entry(subscription.id.clone())
            .and_modify(|(had, limiter)| {
                if *had != rate {
                    *had = rate;
                    *limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
                }
            })
            .or_insert_with(|| (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate)))));
        Some(entry.1.clone())
    }

    /// A due retry record: deliver to its subscription, settle. False when cancelled.
    pub(crate) async fn retry(&self, message: &OwnedMessage, cancel: &CancellationToken) -> bool {
        let attempt: u32 = header_text(message, control::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2);
        let wanted = header_text(message, control::SUBSCRIPTION).unwrap_or_default();
        let Some(subscription) = self.subscriptions.find(&wanted) else {
            return self
                .unknown_subscription(message, &wanted, attempt, cancel)
                .await;
        };
        let event = self.outbound(message);
        self.attempt(message, &subscription, &event, attempt, cancel)
            .await
    }

    /// One attempt at delivering `event` to `subscription`, then its settlement. While the
    /// subscription's circuit is open the delivery is postponed instead, keeping its attempt
    /// number. An attempt in hand is abandoned if the worker stops (the record is handed back,
    /// not settled), so shutdown never waits for a hanging subscriber. False when cancelled.
    pub(crate) async fn attempt(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> bool {
        let process = spans::process_span(message, subscription, event, attempt);
        self.attempt_in_span(message, subscription, event, attempt, None, cancel)
            .instrument(process)
            .await
            .settled
    }

    /// The first attempt of a source record: as [`Self::attempt`], but a request still in hand
    /// after `worker.first_attempt_budget` is given up and the delivery parked in the first
    /// retry tier without spending an attempt (M-7), so the source partition's offsets keep
    /// moving while a hanging subscriber takes its whole timeout in a retry lane.
    pub(crate) async fn first_attempt(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        cancel: &CancellationToken,
    ) -> Attempted {
        let process = spans::process_span(message, subscription, event, 1);
        let budget = Some(self.first_attempt_budget);
        self.attempt_in_span(message, subscription, event, 1, budget, cancel)
            .instrument(process)
            .await
    }

    async fn attempt_in_span(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        budget: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Attempted {
        let quick = |settled| Attempted {
            settled,
            slow: false,
        };
        self.metrics.init_subscription(&subscription.id);
        if let Err(wait) = self.breakers.admit(&subscription.id, Instant::now()) {
            self.metrics.delivery(&subscription.id, "postponed", None);
            return quick(
                self.postpone(message, subscription, attempt, wait, "circuit open", cancel)
                    .await,
            );
        }
        if let Some(limiter) = self.limiter(subscription) {
            tokio::select! {
                () = cancel.cancelled() => return quick(false),
                () = limiter.until_ready() => {}
            }
        }
        let started = Instant::now();
        let at_ms = now_ms();
        // The request's own time (not the limiter's wait, nor the parking after it), on
        // tokio's clock like the budget.
        let requested = tokio::time::Instant::now();
        let client = spans::delivery_span(subscription);
        let event = spans::with_span_parent(&client, event);
        let out_of_budget = async {
            match budget {
                Some(budget) => tokio::time::sleep(budget).await,
                None => std::future::pending().await,
            }
        };
        let answered = tokio::select! {
            () = cancel.cancelled() => return quick(false),
            answered = self.deliverer.deliver_answered(subscription, &event, attempt).instrument(client.clone()) => answered,
            () = out_of_budget => {
                tracing::info!(subscription = %subscription.id, event_id = %event.event_id, "first attempt still in hand after worker.first_attempt_budget: parked as a retry");
                self.metrics.delivery(&subscription.id, "postponed", None);
                // No answer within the budget is a failure for the breaker: a subscriber that
                // always hangs opens its circuit, and a probe that hangs does not leave it
                // half-open for a whole cooldown.
                self.breakers.record(&subscription.id, false, Instant::now());
                self.metrics.circuit(&subscription.id, self.breakers.state(&subscription.id));
                let first_tier = self.tiers.first().map(|t| t.delay).unwrap_or_default();
                let settled = self
                    .postpone(message, subscription, attempt, first_tier, "in hand past worker.first_attempt_budget", cancel)
                    .await;
                return Attempted { settled, slow: true };
            }
        };
        let outcome = &answered.outcome;
        let took = requested.elapsed();
        // A failure that took the whole timeout: the subscriber did not answer in time.
        let slow = !matches!(outcome, DeliveryOutcome::Delivered { .. })
            && requested.elapsed() >= subscription.timeout;
        spans::record_delivery(&client, outcome);
        spans::log_outcome(subscription, &event, attempt, outcome);
        self.count(subscription, outcome, started.elapsed());
        let (settled, next) = self
            .settle(message, subscription, attempt, outcome.clone(), cancel)
            .await;
        let recorded = Attempt {
            event: &event,
            subscription: &subscription.id,
            attempt,
            at_ms,
            took,
            answered: &answered,
        };
        self.attempts.record(&recorded, settled.then_some(next));
        Attempted { settled, slow }
    }

    /// Counts an attempt's outcome and feeds it to the subscription's circuit breaker.
    fn count(
        &self,
        subscription: &ResolvedSubscription,
        outcome: &DeliveryOutcome,
        took: Duration,
    ) {
        let seconds = Some(took.as_secs_f64());
        match outcome {
            DeliveryOutcome::Delivered { .. } => {
                self.metrics
                    .delivery(&subscription.id, "delivered", seconds);
                self.breakers.record(&subscription.id, true, Instant::now());
            }
            DeliveryOutcome::Failed { .. } => {
                self.metrics.delivery(&subscription.id, "failed", seconds);
                self.breakers
                    .record(&subscription.id, false, Instant::now());
            }
            // A refused target says nothing about the subscriber's health.
            DeliveryOutcome::Refused { .. } => {
                self.metrics.delivery(&subscription.id, "refused", seconds)
            }
        }
        self.metrics
            .circuit(&subscription.id, self.breakers.state(&subscription.id));
    }

    /// The event as the subscribers get it, from the record's value and headers.
    pub(crate) fn outbound(&self, message: &OwnedMessage) -> OutboundEvent {
        let header = |name: &str| header_text(message, name);
        let source = header(headers::SOURCE).unwrap_or_default();
        let body = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let sources = self.sources.load();
        let route = sources.get(&source);
        let event_type = route.and_then(|s| event_type(s, header_pairs(message), &body));
        // Transcoded only when a subscription that will get the event takes JSON: most
        // Protobuf sources have none, and this runs for every record.
        let wants_json = self
            .subscriptions
            .snapshot()
            .iter()
            .any(|s| s.protobuf_json && wants(s, &source, event_type.as_deref()));
        let json_body = route
            .filter(|_| wants_json)
            .and_then(|s| protobuf_json(s, &body));
        OutboundEvent {
            event_id: header(headers::EVENT_ID).unwrap_or_default(),
            event_type,
            content_type: header(headers::CONTENT_TYPE),
            traceparent: header(headers::TRACEPARENT),
            dedupe_key: header(headers::DEDUPE_KEY),
            hops: header(headers::HOP)
                .and_then(|h| h.parse().ok())
                .unwrap_or(0),
            stored: spillway_core::ObjectRef::from_headers(|name| header_str(message, name)),
            test_for: header(headers::TEST_EVENT),
            source,
            body,
            json_body,
        }
    }
}

/// The JSON mapping of a record of a source with a Protobuf schema. A record that no longer
/// decodes (the schema changed since it was accepted) has none: it is delivered as received,
/// and logged.
fn protobuf_json(source: &SourceRoute, body: &[u8]) -> Option<bytes::Bytes> {
    let schema = &source.schema.as_ref()?.schema;
    if !schema.is_protobuf() {
        return None;
    }
    match schema.to_json(body) {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::warn!(source = %source.name, error = %e, "a Protobuf record has no JSON mapping; delivered as received");
            None
        }
    }
}

mod parking;

#[cfg(test)]
mod tests;
