//! Where a delivery goes when it is not delivered: the next retry tier (due exactly that
//! tier's delay from now), a postponement that keeps its attempt number, or the dead-letter
//! topic with its reason; and the write itself, tried until Kafka takes it.

use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use spillway_config::ResolvedSubscription;
use spillway_core::attempt::AttemptNext;
use spillway_core::headers;
use spillway_core::time::{millis, now_ms};
use tokio_util::sync::CancellationToken;

use super::Handling;
use crate::attempts::Postponement;
use crate::control::{self, header_text, parked_headers};
use crate::delivery::DeliveryOutcome;
use crate::topics::{tier_for, RetryTier};

/// How long a park first waits before writing the record again after Kafka did not take it;
/// doubled after each further refusal up to [`PARK_RETRY_MAX`] (M-2: a missing topic or a
/// broker down is not hammered once a second by every parked delivery).
const PARK_RETRY: Duration = Duration::from_secs(1);
const PARK_RETRY_MAX: Duration = Duration::from_secs(30);

/// At most this much of a failure's reason goes into `spillway-last-error`.
const MAX_LAST_ERROR_CHARS: usize = 512;

// === impl Handling ===

impl Handling {
    /// A retry for a subscription this worker does not deliver to (M-6). Dropped only when
    /// the registry removed it; otherwise (a worker whose config or registry lags behind the
    /// one that parked it, a subscription this worker's config cannot resolve) it becomes a
    /// dead letter, which can be redriven once the workers agree again.
    pub(super) async fn unknown_subscription(
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

    /// Parks a failed attempt in a retry tier or the dead-letter topic; nothing to do for a
    /// delivered one. Keeps trying to write the record until Kafka takes it or the worker
    /// stops, because the source offset must not move past an unsettled delivery. Returns
    /// whether it was settled, and where the delivery went.
    pub(super) async fn settle(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        outcome: DeliveryOutcome,
        cancel: &CancellationToken,
    ) -> (bool, AttemptNext) {
        let (reason, status, retry_after, refused) = match outcome {
            DeliveryOutcome::Delivered { .. } => return (true, AttemptNext::Done),
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
                let due = due_in(tier);
                control.push((control::NOT_BEFORE, due.to_string()));
                let next = AttemptNext::Retry { due_ms: due };
                (
                    self.park(message, &tier.topic, &control, cancel).await,
                    next,
                )
            }
            None => {
                control.push((control::ATTEMPT, attempt.to_string()));
                let why = if refused {
                    "target_refused"
                } else {
                    "attempts_exhausted"
                };
                let next = AttemptNext::DeadLetter { reason: why.into() };
                let settled = self
                    .dead_letter(message, &subscription.id, &control, why, cancel)
                    .await;
                (settled, next)
            }
        }
    }

    /// Parks a delivery for `wait` without spending an attempt: `attempt` is made when it is
    /// due. Used when a subscription is slow (its queue full, or its last first attempt timed
    /// out or ran past its budget), for a first attempt past its budget, and while its circuit
    /// is open.
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
        let event_id = header_text(message, headers::EVENT_ID).unwrap_or_default();
        let source = header_text(message, headers::SOURCE).unwrap_or_default();
        let postponement = Postponement {
            event_id: &event_id,
            source: &source,
            subscription: &subscription.id,
            attempt,
            why,
            test: header_text(message, headers::TEST_EVENT).is_some(),
        };
        if postponed >= self.max_postponement {
            let reason = "postponed_too_long";
            let settled = self
                .dead_letter(message, &subscription.id, &control, reason, cancel)
                .await;
            if settled {
                let next = AttemptNext::DeadLetter {
                    reason: reason.into(),
                };
                self.attempts.postponed(&postponement, next);
            }
            return settled;
        }
        let Some(tier) = tier_for(&self.tiers, wait.max(postponed)) else {
            return true;
        };
        control[1].1 = attempt.to_string();
        let due = due_in(tier);
        control.push((control::NOT_BEFORE, due.to_string()));
        self.metrics.parked(&subscription.id);
        let settled = self.park(message, &tier.topic, &control, cancel).await;
        if settled {
            self.attempts
                .postponed(&postponement, AttemptNext::Retry { due_ms: due });
        }
        settled
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
}

/// `NOT_BEFORE` of a record parked in `tier` now: exactly the tier's delay, so due times rise
/// with offsets within a tier and a lane waiting for its head never holds up a later record
/// that is due sooner (M-12).
fn due_in(tier: &RetryTier) -> u64 {
    now_ms() + millis(tier.delay)
}
