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

/// How long a park first waits before writing the record again after Kafka did not take it;
/// doubled after each further refusal up to [`PARK_RETRY_MAX`] (M-2: a missing topic or a
/// broker down is not hammered once a second by every parked delivery).
const PARK_RETRY: Duration = Duration::from_secs(1);
const PARK_RETRY_MAX: Duration = Duration::from_secs(30);

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

    /// A retry for a subscription this worker does not deliver to (M-6). Dropped only when
    /// the registry removed it; otherwise (a worker whose config or registry lags behind the
    /// one that parked it, a subscription this worker's config cannot resolve) it becomes a
    /// dead letter, which can be redriven once the workers agree again.
    async fn unknown_subscription(
        &self,
        message: &OwnedMessage,
        id: &str,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> bool {
        if self.subscriptions.was_removed(id) {
            tracing::info!(
                subscription = id,
                "retry for a removed subscription; dropped"
            );
            self.metrics.delivery(id, "dropped", None);
            return true;
        }
        let control = [
            (control::SUBSCRIPTION, id.to_owned()),
            (control::ATTEMPT, attempt.saturating_sub(1).to_string()),
            (
                control::LAST_ERROR,
                "no such subscription on the worker that owned the retry".to_owned(),
            ),
        ];
        self.dead_letter(message, id, &control, "subscription_unknown", cancel)
            .await
    }

    /// Writes `message` to the dead-letter topic with `control` and the reason `why`.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        subscription: &str,
        control: &[(&str, String)],
        why: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let mut control = control.to_vec();
        control.push((control::DEAD_REASON, why.to_owned()));
        control.push((control::DEAD_AT, now_ms().to_string()));
        self.metrics.dead_letter(subscription, why);
        tracing::warn!(subscription, reason = why, "dead letter");
        self.park(message, &self.dead_letter, &control, cancel)
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
    ) -> bool {
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
        let out_of_budget = async {
            match budget {
                Some(budget) => tokio::time::sleep(budget).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            () = cancel.cancelled() => return false,
            outcome = self.deliverer.deliver(subscription, &event, attempt).instrument(client.clone()) => outcome,
            () = out_of_budget => {
                tracing::info!(subscription = %subscription.id, event_id = %event.event_id, "first attempt still in hand after worker.first_attempt_budget: parked as a retry");
                self.metrics.delivery(&subscription.id, "postponed", None);
                // No answer within the budget is a failure for the breaker: a subscriber that
                // always hangs opens its circuit, and a probe that hangs does not leave it
                // half-open for a whole cooldown.
                self.breakers.record(&subscription.id, false, Instant::now());
                self.metrics.circuit(&subscription.id, self.breakers.state(&subscription.id));
                let first_tier = self.tiers.first().map(|t| t.delay).unwrap_or_default();
                return self
                    .postpone(message, subscription, attempt, first_tier, "in hand past worker.first_attempt_budget", cancel)
                    .await;
            }
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
            self.policy.delay_before(attempt + 1, retry_after)
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
        match next_delay.and_then(|d| tier_for(&self.tiers, d)) {
            Some(tier) => {
                control.push((control::ATTEMPT, (attempt + 1).to_string()));
                self.metrics.parked(&subscription.id);
                control.push((control::NOT_BEFORE, due_in(tier)));
                self.park(message, &tier.topic, &control, cancel).await
            }
            None => {
                control.push((control::ATTEMPT, attempt.to_string()));
                let why = if refused {
                    "target_refused"
                } else {
                    "attempts_exhausted"
                };
                self.dead_letter(message, &subscription.id, &control, why, cancel)
                    .await
            }
        }
    }

    /// Parks a delivery for `wait` without spending an attempt: `attempt` is made when it is
    /// due. Used when a subscription's queue is full (it is slow) and while its circuit is open.
    ///
    /// M-1: a delivery postponed again and again waits longer each time (as long as it has
    /// already been postponed, up to the longest tier), so an outage of a day rewrites each
    /// record a few dozen times, not once per cooldown; and once it has been postponed for
    /// `worker.max_postponement` it is dead-lettered with reason `postponed_too_long`.
    pub(crate) async fn postpone(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        wait: Duration,
        why: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let now = now_ms();
        let since = header_text(message, control::POSTPONED_SINCE)
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|since| *since <= now)
            .unwrap_or(now);
        let postponed = Duration::from_millis(now - since);
        let mut control = vec![
            (control::SUBSCRIPTION, subscription.id.clone()),
            (control::ATTEMPT, attempt.saturating_sub(1).to_string()),
            (control::POSTPONED_SINCE, since.to_string()),
            (control::LAST_ERROR, format!("postponed: {why}")),
        ];
        if postponed >= self.max_postponement {
            return self
                .dead_letter(
                    message,
                    &subscription.id,
                    &control,
                    "postponed_too_long",
                    cancel,
                )
                .await;
        }
        let Some(tier) = tier_for(&self.tiers, wait.max(postponed)) else {
            return true;
        };
        control[1].1 = attempt.to_string();
        control.push((control::NOT_BEFORE, due_in(tier)));
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
        let mut pause = PARK_RETRY;
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
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(PARK_RETRY_MAX);
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
            dedupe_key: header(headers::DEDUPE_KEY),
            hops: header(headers::HOP)
                .and_then(|h| h.parse().ok())
                .unwrap_or(0),
            source,
            body,
        }
    }
}

/// `NOT_BEFORE` of a record parked in `tier` now: exactly the tier's delay, so due times rise
/// with offsets within a tier and a lane waiting for its head never holds up a later record
/// that is due sooner (M-12).
fn due_in(tier: &RetryTier) -> String {
    (now_ms() + millis(tier.delay)).to_string()
}

#[cfg(test)]
mod tests;
