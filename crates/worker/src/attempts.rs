//! The attempts topic: one record per delivery attempt (see [`spillway_core::attempt`]), for
//! the console's index. Written beside the delivery, never in its way: the record is sent in
//! its own task, and a record Kafka does not take is logged and counted, not retried, since
//! the index is an aid to operators and the delivery itself is already settled.

use std::time::Duration;

use spillway_core::attempt::{cut_chars, AttemptNext, AttemptOutcome, AttemptRecord, ERROR_CHARS};
use spillway_kafka::EventProducer;
use spillway_telemetry::WorkerMetrics;

use crate::delivery::{Answered, DeliveryOutcome, OutboundEvent};

/// Where attempt records go; off when `worker.record_attempts` is false.
#[derive(Debug, Clone)]
pub(crate) struct AttemptLog {
    /// The attempts topic; None when attempts are not recorded.
    topic: Option<String>,
    producer: EventProducer,
    metrics: WorkerMetrics,
}

/// One attempt, as the handling saw it.
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    pub(crate) event: &'a OutboundEvent,
    pub(crate) subscription: &'a str,
    pub(crate) attempt: u32,
    pub(crate) at_ms: u64,
    pub(crate) took: Duration,
    pub(crate) answered: &'a Answered,
}

// === impl AttemptLog ===

impl AttemptLog {
    pub(crate) fn new(
        topic: Option<String>,
        producer: EventProducer,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            topic,
            producer,
            metrics,
        }
    }

    /// Writes the record of `attempt`, which went on to `next` (`None`: the worker stopped
    /// before settling it).
    pub(crate) fn record(&self, attempt: &Attempt<'_>, next: Option<AttemptNext>) {
        self.send(attempt_record(attempt, next));
    }

    /// Sends `record` in a task of its own.
    fn send(&self, record: AttemptRecord) {
        let Some(topic) = self.topic.clone() else {
            return;
        };
        let producer = self.producer.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let sent = producer
                .send_record(
                    &topic,
                    Some(record.event_id.as_bytes()),
                    &record.to_json(),
                    &[] as &[(&str, &[u8])],
                )
                .await;
            if let Err(e) = &sent {
                tracing::warn!(error = %e, topic, event_id = %record.event_id, "attempt record not written; the console will not show this attempt");
            }
            metrics.attempt_record(sent.is_ok());
        });
    }
}

/// A delivery parked without an attempt, as the handling saw it.
#[derive(Debug)]
pub(crate) struct Postponement<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) source: &'a str,
    pub(crate) subscription: &'a str,
    /// The attempt it will be when it is made.
    pub(crate) attempt: u32,
    pub(crate) why: &'a str,
    pub(crate) test: bool,
}

impl AttemptLog {
    /// Writes the record of a postponement that went on to `next`, so the console shows the
    /// delivery as waiting even before its first request.
    pub(crate) fn postponed(&self, p: &Postponement<'_>, next: AttemptNext) {
        let record = AttemptRecord {
            event_id: p.event_id.to_owned(),
            source: p.source.to_owned(),
            subscription: p.subscription.to_owned(),
            attempt: p.attempt,
            at_ms: spillway_core::time::now_ms(),
            latency_ms: 0,
            outcome: AttemptOutcome::Postponed,
            http_status: None,
            error: Some(cut_chars(&format!("postponed: {}", p.why), ERROR_CHARS)),
            response_head: None,
            next,
            test: p.test,
        };
        self.send(record);
    }
}

fn attempt_record(attempt: &Attempt<'_>, next: Option<AttemptNext>) -> AttemptRecord {
    let (outcome, http_status, error) = match &attempt.answered.outcome {
        DeliveryOutcome::Delivered { status } => (AttemptOutcome::Delivered, Some(*status), None),
        DeliveryOutcome::Failed { reason, status, .. } => {
            (AttemptOutcome::Failed, *status, Some(reason.as_str()))
        }
        DeliveryOutcome::Refused { reason } => {
            (AttemptOutcome::Refused, None, Some(reason.as_str()))
        }
    };
    AttemptRecord {
        event_id: attempt.event.event_id.clone(),
        source: attempt.event.source.clone(),
        subscription: attempt.subscription.to_owned(),
        attempt: attempt.attempt,
        at_ms: attempt.at_ms,
        latency_ms: u64::try_from(attempt.took.as_millis()).unwrap_or(u64::MAX),
        outcome,
        http_status,
        error: error.map(|e| cut_chars(e, ERROR_CHARS)),
        response_head: attempt
            .answered
            .response_head
            .as_ref()
            .filter(|head| !head.is_empty())
            .map(|head| String::from_utf8_lossy(head).into_owned()),
        next: next.unwrap_or(AttemptNext::Abandoned),
        test: attempt.event.test_for.is_some(),
    }
}
