//! Replay: re-deliver a range of a source topic from Kafka retention, for instance after a
//! subscriber lost data. The selected events go to the first retry tier as fresh deliveries
//! (attempt 1, due now), so the running workers deliver them with the usual signing, retries and
//! dead letters. Writing them is rate-limited, and so is the load on the subscribers.

use std::sync::Arc;
use std::time::Duration;

use spillway_config::{Config, ResolvedSubscription};
use spillway_core::headers;
use spillway_core::time::now_ms;
use spillway_kafka::reader::{read_topic_where, ReadRecord};
use spillway_kafka::{EventProducer, ProducerSettings};

use crate::control::{self, event_type, with_control};
use crate::delivery::wants;
use crate::topics::retry_tiers;
use crate::worker::ConfigProblem;
use crate::WorkerError;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub source: String,
    /// Accepted at or after, milliseconds since the epoch (`spillway-received-at`).
    pub since_ms: Option<u64>,
    /// Accepted before.
    pub until_ms: Option<u64>,
    /// From this offset on, in every partition.
    pub from_offset: Option<i64>,
    /// Before this offset, in every partition.
    pub to_offset: Option<i64>,
    pub event_type: Option<String>,
    /// Only to this subscription; to every subscription that wants the event otherwise.
    pub subscription: Option<String>,
    /// Hold at most this many records of the range (each with at least one delivery), and
    /// one more to tell that there are more: a preview of a range too large to act on need
    /// not hold it all.
    pub max_records: Option<usize>,
}

impl Range {
    /// Whether a record of `source` is in the range: accepted and written within its bounds,
    /// of its event type.
    fn selects(&self, source: &spillway_config::SourceRoute, record: &ReadRecord) -> bool {
        let received: u64 = record
            .header(headers::RECEIVED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let in_range = self.since_ms.is_none_or(|s| received >= s)
            && self.until_ms.is_none_or(|u| received < u)
            && self.from_offset.is_none_or(|o| record.offset >= o)
            && self.to_offset.is_none_or(|o| record.offset < o);
        in_range
            && self.event_type.as_ref().is_none_or(|wanted| {
                let pairs = record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()));
                event_type(source, pairs, &record.value).as_ref() == Some(wanted)
            })
    }
}

/// Keeps at most `max + 1` of the records a filter selects: enough to tell a read over `max`
/// without holding all of it.
#[derive(Debug)]
pub(crate) struct Cap {
    max: Option<usize>,
    kept: usize,
}

impl Cap {
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self { max, kept: 0 }
    }

    /// Whether to keep a record the filter `selected`.
    pub(crate) fn keep(&mut self, selected: bool) -> bool {
        if !selected || self.max.is_some_and(|max| self.kept > max) {
            return false;
        }
        self.kept += 1;
        true
    }
}

/// One event to one subscription.
#[derive(Debug, Clone)]
pub struct Replay {
    pub record: ReadRecord,
    pub subscription: String,
}

/// The deliveries a range selects for `subscriptions` (the config file's and the registry's,
/// see [`crate::registry::LiveSubscriptions::load`]), in partition and offset order.
/// Blocking: it reads the source topic; call from `spawn_blocking`.
pub fn select(
    config: &Config,
    subscriptions: &[Arc<ResolvedSubscription>],
    range: &Range,
    timeout: Duration,
) -> Result<Vec<Replay>, WorkerError> {
    let sources = config
        .resolve_source_routes()
        .map_err(ConfigProblem::Invalid)?;
    let source = sources
        .iter()
        .find(|s| s.name == range.source)
        .ok_or_else(|| ConfigProblem::UnknownSource(range.source.clone()))?;
    if let Some(wanted) = &range.subscription {
        if !subscriptions.iter().any(|s| &s.id == wanted) {
            return Err(ConfigProblem::UnknownSubscription(wanted.clone()).into());
        }
    }
    // The subscriptions a record of event type `kind` goes to.
    let takers = |kind: Option<&str>| -> Vec<String> {
        subscriptions
            .iter()
            .filter(|s| range.subscription.as_ref().is_none_or(|id| &s.id == id))
            .filter(|s| wants(s, &source.name, kind))
            .map(|s| s.id.clone())
            .collect()
    };
    let kind_of = |record: &ReadRecord| {
        let pairs = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()));
        event_type(source, pairs, &record.value)
    };
    // Filtered as read: only the records in the range that some subscription takes are held
    // (L-12), up to the cap.
    let mut cap = Cap::new(range.max_records);
    let mut records = read_topic_where(&(&config.kafka).into(), &source.topic, timeout, |r| {
        cap.keep(range.selects(source, r) && !takers(kind_of(r).as_deref()).is_empty())
    })?;
    records.sort_by_key(|r| (r.partition, r.offset));
    let mut out = Vec::new();
    for record in records {
        for subscription in takers(kind_of(&record).as_deref()) {
            out.push(Replay {
                record: record.clone(),
                subscription,
            });
        }
    }
    Ok(out)
}

/// Queues the selected deliveries for the workers, at most `per_second` a second.
pub async fn replay(
    config: &Config,
    replays: &[Replay],
    per_second: u32,
) -> Result<usize, WorkerError> {
    let items = replays.iter().map(|r| (&r.record, r.subscription.as_str()));
    requeue(config, items, "replay", Some(per_second)).await
}

/// Puts records back into the first retry tier as fresh deliveries to a subscription: attempt 1,
/// due now, noted `why` in `spillway-last-error`. Used by replay and by dead-letter redrive.
pub async fn requeue<'a>(
    config: &Config,
    items: impl ExactSizeIterator<Item = (&'a ReadRecord, &'a str)>,
    why: &str,
    per_second: Option<u32>,
) -> Result<usize, WorkerError> {
    let Some(tier) = retry_tiers(config).into_iter().next() else {
        return Ok(0);
    };
    let count = items.len();
    let producer = EventProducer::new(&ProducerSettings::from(&config.kafka))?;
    let mut pace = per_second.map(|n| tokio::time::interval(Duration::from_secs(1) / n.max(1)));
    for (record, subscription) in items {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let fresh = [
            (control::SUBSCRIPTION, subscription.to_owned()),
            (control::ATTEMPT, "1".to_owned()),
            (control::NOT_BEFORE, now_ms().to_string()),
            (control::LAST_ERROR, why.to_owned()),
        ];
        let original = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()));
        let headers = with_control(original, &fresh);
        producer
            .send_record(&tier.topic, record.key.as_deref(), &record.value, &headers)
            .await?;
    }
    Ok(count)
}

#[cfg(test)]
mod cap_tests {
    use super::Cap;

    #[test]
    fn a_cap_keeps_one_more_than_its_max_of_what_is_selected() {
        let mut cap = Cap::new(Some(2));
        let kept: Vec<bool> = [true, false, true, true, true, false]
            .into_iter()
            .map(|selected| cap.keep(selected))
            .collect();
        assert_eq!(kept, [true, false, true, true, false, false]);
        let mut uncapped = Cap::new(None);
        assert!((0..1000).all(|_| uncapped.keep(true)));
    }
}
