//! The in-memory deliverer behind [`super::Deliverer::Memory`]: it answers with the outcomes it
//! is told (at once, after a delay, or never) and records every delivery it was asked to make,
//! so what the worker does with an outcome is unit-tested without a subscriber.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spillway_config::ResolvedSubscription;

use super::{DeliveryOutcome, OutboundEvent};

/// How the memory deliverer answers one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryAnswer {
    /// With this outcome, at once.
    Now(DeliveryOutcome),
    /// With this outcome after the delay (tokio's clock: pause it in tests).
    After(Duration, DeliveryOutcome),
    /// Never, like a subscriber that hangs: the attempt ends only when the worker gives it up.
    Hang,
}

/// A delivery the memory deliverer was asked to make.
#[derive(Debug, Clone)]
pub struct MemoryDelivery {
    pub subscription: String,
    pub event: OutboundEvent,
    pub attempt: u32,
}

/// Scripted answers and recorded deliveries; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryDeliverer {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Answers for the next deliveries, in order; then `usual`.
    scripted: VecDeque<MemoryAnswer>,
    /// Without one, a delivery answers 200.
    usual: Option<MemoryAnswer>,
    delivered: Vec<MemoryDelivery>,
}

// === impl MemoryDeliverer ===

impl MemoryDeliverer {
    pub fn new() -> Self {
        Self::default()
    }

    /// How every delivery answers from now on, once the scripted answers are used up.
    pub fn behave(&self, answer: MemoryAnswer) {
        self.lock().usual = Some(answer);
    }

    /// How the next delivery answers (queued after earlier scripted ones).
    pub fn then(&self, answer: MemoryAnswer) -> &Self {
        self.lock().scripted.push_back(answer);
        self
    }

    /// Every delivery asked for so far, in order, answered or not.
    pub fn deliveries(&self) -> Vec<MemoryDelivery> {
        self.lock().delivered.clone()
    }

    /// The event ids delivered, in order.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.lock()
            .delivered
            .iter()
            .map(|d| d.event.event_id.clone())
            .collect()
    }

    pub(super) async fn deliver(
        &self,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
    ) -> DeliveryOutcome {
        let answer = {
            let mut state = self.lock();
            state.delivered.push(MemoryDelivery {
                subscription: subscription.id.clone(),
                event: event.clone(),
                attempt,
            });
            let usual = state.usual.clone();
            state.scripted.pop_front().or(usual)
        };
        match answer {
            None => DeliveryOutcome::Delivered { status: 200 },
            Some(MemoryAnswer::Now(outcome)) => outcome,
            Some(MemoryAnswer::After(wait, outcome)) => {
                tokio::time::sleep(wait).await;
                outcome
            }
            Some(MemoryAnswer::Hang) => std::future::pending::<DeliveryOutcome>().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Deliverer;
    use crate::test_support::{failed, subscription};

    fn event(id: &str) -> OutboundEvent {
        OutboundEvent {
            event_id: id.into(),
            source: "github".into(),
            event_type: None,
            content_type: None,
            traceparent: None,
            dedupe_key: None,
            hops: 0,
            body: bytes::Bytes::from_static(b"{}"),
            json_body: None,
            stored: None,
            test_for: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_answers_come_first_then_the_usual_one_and_all_are_recorded() {
        let memory = MemoryDeliverer::new();
        memory
            .then(MemoryAnswer::Now(failed(500)))
            .then(MemoryAnswer::After(
                Duration::from_secs(3),
                DeliveryOutcome::Delivered { status: 204 },
            ));
        memory.behave(MemoryAnswer::Now(DeliveryOutcome::Refused {
            reason: "no".into(),
        }));
        let deliverer = Deliverer::memory(memory.clone());
        let sub = subscription("s1");
        let started = tokio::time::Instant::now();
        let mut outcomes = Vec::new();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            outcomes.push(deliverer.deliver(&sub, &event(id), i as u32 + 1).await);
        }
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(
            outcomes,
            [
                failed(500),
                DeliveryOutcome::Delivered { status: 204 },
                DeliveryOutcome::Refused {
                    reason: "no".into()
                }
            ]
        );
        let asked: Vec<_> = memory
            .deliveries()
            .into_iter()
            .map(|d| (d.subscription, d.event.event_id, d.attempt))
            .collect();
        assert_eq!(
            asked,
            [
                ("s1".into(), "a".into(), 1),
                ("s1".into(), "b".into(), 2),
                ("s1".into(), "c".into(), 3)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unscripted_delivery_answers_200_and_a_hanging_one_never_does() {
        let memory = MemoryDeliverer::new();
        let deliverer = Deliverer::memory(memory.clone());
        let sub = subscription("s1");
        assert_eq!(
            deliverer.deliver(&sub, &event("a"), 1).await,
            DeliveryOutcome::Delivered { status: 200 }
        );
        memory.then(MemoryAnswer::Hang);
        let hanging = tokio::time::timeout(
            Duration::from_secs(3600),
            deliverer.deliver(&sub, &event("b"), 1),
        )
        .await;
        assert!(hanging.is_err(), "still no answer after an hour");
        assert_eq!(memory.deliveries().len(), 2, "the hanging one is recorded");
    }
}
