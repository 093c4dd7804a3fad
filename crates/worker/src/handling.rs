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
use spillway_core::time::{millis, now_ms};
use spillway_kafka::EventProducer;
use spillway_telemetry::WorkerMetrics;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::breaker::Breakers;
use crate::control::{self, event_type, header_pairs, header_text, parked_headers};
use crate::delivery::{Deliverer, DeliveryOutcome, OutboundEvent};
use crate::registry::LiveSubscriptions;
use crate::spans;
use crate::topics::{tier_for, RetryTier};
use crate::RetryPolicy;

/// How long a park waits before writing the record again after Kafka did not take it.
const PARK_RETRY: Duration = Duration::from_secs(1);

/// At most this much of a failure's reason goes into `spillway-last-error`.
const MAX_LAST_ERROR_CHARS: usize = 512;

/// What the workers need to handle a record, shared by every lane.
#[derive(Debug)]
pub(crate) struct Handling {
    /// The sources by name, for the event type of their records.
    pub(crate) sources: HashMap<String, SourceRoute>,
    pub(crate) subscriptions: Arc<LiveSubscriptions>,
    /// Per subscription with a rate limit: its limit and the limiter enforcing it.
    pub(crate) limiters:
        std::sync::Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
    pub(crate) deliverer: Deliverer,
    pub(crate) policy: RetryPolicy,
    pub(crate) tiers: Vec<RetryTier>,
    pub(crate) dead_letter: String,
    pub(crate) producer: EventProducer,
    pub(crate) breakers: Breakers,
    pub(crate) metrics: WorkerMetrics,
}

// === impl Handling ===

impl Handling {
    /// Waits until a retry record is due; false when the worker stops first.
    pub(crate) async fn wait_until_due(
        &self,
        message: &OwnedMessage,
        cancel: &CancellationToken,
    ) -> bool {
        let not_before: u64 = header_text(message, control::NOT_BEFORE)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let wait = Duration::from_millis(not_before.saturating_sub(now_ms()));
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
        let wanted = header_text(message, control::SUBSCRIPTION);
        let Some(subscription) = wanted.as_deref().and_then(|id| self.subscriptions.find(id))
        else {
            tracing::warn!(subscription = ?wanted, "retry for a subscription that no longer exists; dropped");
            return true;
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
        self.attempt_in_span(message, subscription, event, attempt, cancel)
            .instrument(process)
            .await
    }

    async fn attempt_in_span(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> bool {
        self.metrics.init_subscription(&subscription.id);
        if let Err(wait) = self.breakers.admit(&subscription.id, Instant::now()) {
            self.metrics.delivery(&subscription.id, "postponed", None);
            return self
                .postpone(message, subscription, attempt, wait, "circuit open", cancel)
                .await;
        }
        if let Some(limiter) = self.limiter(subscription) {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = limiter.until_ready() => {}
            }
        }
        let started = Instant::now();
        let client = spans::delivery_span(subscription);
        let event = spans::with_span_parent(&client, event);
        let outcome = tokio::select! {
            () = cancel.cancelled() => return false,
            outcome = self.deliverer.deliver(subscription, &event, attempt).instrument(client.clone()) => outcome,
        };
        spans::record_delivery(&client, &outcome);
        spans::log_outcome(subscription, &event, attempt, &outcome);
        self.count(subscription, &outcome, started.elapsed());
        self.settle(message, subscription, attempt, outcome, cancel)
            .await
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

    /// Parks a failed attempt in a retry tier or the dead-letter topic; nothing to do for a
    /// delivered one. Keeps trying to write the record until Kafka takes it or the worker
    /// stops, because the source offset must not move past an unsettled delivery.
    async fn settle(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        outcome: DeliveryOutcome,
        cancel: &CancellationToken,
    ) -> bool {
        let (reason, status, retry_after, refused) = match outcome {
            DeliveryOutcome::Delivered { .. } => return true,
            DeliveryOutcome::Failed {
                reason,
                status,
                retry_after,
            } => (reason, status, retry_after, false),
            DeliveryOutcome::Refused { reason } => (reason, None, None, true),
        };
        let next_delay = if refused {
            None
        } else {
            self.policy
                .delay_before(attempt + 1, retry_after, &mut rand::rng())
        };
        let mut control: Vec<(&str, String)> = vec![
            (control::SUBSCRIPTION, subscription.id.clone()),
            (
                control::LAST_ERROR,
                reason.chars().take(MAX_LAST_ERROR_CHARS).collect(),
            ),
        ];
        if let Some(status) = status {
            control.push((control::LAST_STATUS, status.to_string()));
        }
        let topic = match next_delay.and_then(|d| tier_for(&self.tiers, d).map(|t| (t, d))) {
            Some((tier, delay)) => {
                control.push((control::ATTEMPT, (attempt + 1).to_string()));
                self.metrics.parked(&subscription.id);
                control.push((control::NOT_BEFORE, (now_ms() + millis(delay)).to_string()));
                tier.topic.as_str()
            }
            None => {
                control.push((control::ATTEMPT, attempt.to_string()));
                let why = if refused {
                    "target_refused"
                } else {
                    "attempts_exhausted"
                };
                control.push((control::DEAD_REASON, why.to_owned()));
                control.push((control::DEAD_AT, now_ms().to_string()));
                self.metrics.dead_letter(&subscription.id, why);
                tracing::warn!(subscription = %subscription.id, attempts = attempt, reason = why, "dead letter");
                self.dead_letter.as_str()
            }
        };
        self.park(message, topic, &control, cancel).await
    }

    /// Parks a delivery for `wait` without spending an attempt: `attempt` is made when it is
    /// due. Used when a subscription's queue is full (it is slow) and while its circuit is open.
    pub(crate) async fn postpone(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        wait: Duration,
        why: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(tier) = tier_for(&self.tiers, wait) else {
            return true;
        };
        let control = [
            (control::SUBSCRIPTION, subscription.id.clone()),
            (control::ATTEMPT, attempt.to_string()),
            (
                control::NOT_BEFORE,
                (now_ms() + millis(wait.max(tier.delay))).to_string(),
            ),
            (control::LAST_ERROR, format!("postponed: {why}")),
        ];
        self.metrics.parked(&subscription.id);
        self.park(message, &tier.topic, &control, cancel).await
    }

    /// Writes `message` with `control` headers to `topic`, trying until Kafka takes it or the
    /// worker stops: the source offset must not move past an unsettled delivery.
    async fn park(
        &self,
        message: &OwnedMessage,
        topic: &str,
        control: &[(&str, String)],
        cancel: &CancellationToken,
    ) -> bool {
        let headers = parked_headers(message, control);
        loop {
            let sent = self
                .producer
                .send_record(
                    topic,
                    message.key(),
                    message.payload().unwrap_or_default(),
                    &headers,
                )
                .await;
            match sent {
                Ok(_) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, topic, "cannot park a delivery yet; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        () = tokio::time::sleep(PARK_RETRY) => {}
                    }
                }
            }
        }
    }

    /// The event as the subscribers get it, from the record's value and headers.
    pub(crate) fn outbound(&self, message: &OwnedMessage) -> OutboundEvent {
        let header = |name: &str| header_text(message, name);
        let source = header(headers::SOURCE).unwrap_or_default();
        let body = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let event_type = self
            .sources
            .get(&source)
            .and_then(|s| event_type(s, header_pairs(message), &body));
        OutboundEvent {
            event_id: header(headers::EVENT_ID).unwrap_or_default(),
            event_type,
            content_type: header(headers::CONTENT_TYPE),
            traceparent: header(headers::TRACEPARENT),
            hops: header(headers::HOP)
                .and_then(|h| h.parse().ok())
                .unwrap_or(0),
            source,
            body,
        }
    }
}

#[cfg(test)]
mod tests;
