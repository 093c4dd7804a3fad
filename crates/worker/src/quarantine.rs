//! The quarantine: listing a source's records that failed its schema, and redriving them
//! into the source's topic once the schema (or the sender) is fixed. Each record is checked
//! again against the source's schema as configured now; one that still fails stays where it
//! is, and is reported.
//!
//! The quarantine topic is append-only: a redriven record stays there too, so redriving
//! twice writes twice; subscribers dedupe on `webhook-id` as for any redelivery.

use std::time::Duration;

use spillway_config::{Config, SourceRoute};
use spillway_core::headers;
use spillway_kafka::reader::{read_topic_where, ReadRecord};
use spillway_kafka::{EventProducer, ProducerSettings};

use crate::worker::ConfigProblem;
use crate::WorkerError;

/// Which quarantined records of a source a command applies to; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records whose first failure had this reason (`required`, `not_protobuf`...).
    pub reason: Option<String>,
    /// Received since (inclusive), milliseconds since the epoch.
    pub since_ms: Option<u64>,
    /// Received until (exclusive), milliseconds since the epoch.
    pub until_ms: Option<u64>,
    /// Hold at most this many, and one more to tell that there are more.
    pub max: Option<usize>,
}

/// What a redrive does or did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Written (or, in a dry run, to be written) to the source's topic.
    pub written: usize,
    /// Still failing the schema, left in the quarantine: each event id with the first
    /// failure.
    pub still_invalid: Vec<(String, String)>,
    /// Copies of records the sender was answered 422 for, left unless asked for.
    pub refused: usize,
}

// === impl Filter ===

impl Filter {
    fn matches(&self, record: &ReadRecord) -> bool {
        let received = received_at_ms(record);
        self.reason
            .as_deref()
            .is_none_or(|r| record.header(headers::INVALID_REASON) == Some(r))
            && self.since_ms.is_none_or(|s| received >= s)
            && self.until_ms.is_none_or(|u| received < u)
    }
}

/// When the ingress received a record, milliseconds since the epoch.
pub fn received_at_ms(record: &ReadRecord) -> u64 {
    record
        .header(headers::RECEIVED_AT)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// The route of `source`, which must have a schema (and so a quarantine).
pub fn quarantined_source(config: &Config, source: &str) -> Result<SourceRoute, WorkerError> {
    let routes = config
        .resolve_source_routes()
        .map_err(ConfigProblem::Invalid)?;
    let route = routes
        .into_iter()
        .find(|r| r.name == source)
        .ok_or_else(|| ConfigProblem::UnknownSource(source.to_owned()))?;
    if route.schema.is_none() {
        return Err(ConfigProblem::NoQuarantine(source.to_owned()).into());
    }
    Ok(route)
}

/// The quarantined records of `source` matching `filter`, oldest first (another source sharing
/// the quarantine topic keeps its own). Blocking: call from `spawn_blocking`.
pub fn list(
    config: &Config,
    source: &SourceRoute,
    filter: &Filter,
    timeout: Duration,
) -> Result<Vec<ReadRecord>, WorkerError> {
    let Some(schema) = &source.schema else {
        return Ok(Vec::new());
    };
    let mut cap = crate::replay::Cap::new(filter.max);
    let mut records = read_topic_where(
        &(&config.kafka).into(),
        &schema.quarantine_topic,
        timeout,
        |r| cap.keep(r.header(headers::SOURCE) == Some(source.name.as_str()) && filter.matches(r)),
    )?;
    records.sort_by_key(received_at_ms);
    Ok(records)
}

/// Checks each record against the source's schema as configured now and writes those that
/// pass to the source's topic, under their original key, event id and headers (the
/// quarantine's own headers dropped). Copies of records the sender was refused (422) are left
/// unless `include_refused`: the sender was told, and may have sent the record again. With
/// `dry_run` nothing is written: the answer says what would be.
pub async fn redrive(
    config: &Config,
    source: &SourceRoute,
    records: &[ReadRecord],
    include_refused: bool,
    dry_run: bool,
) -> Result<Redriven, WorkerError> {
    let mut out = Redriven::default();
    let Some(schema) = &source.schema else {
        return Ok(out);
    };
    let producer = if dry_run {
        None
    } else {
        Some(EventProducer::new(&ProducerSettings::from(&config.kafka))?)
    };
    for record in records {
        let id = record.header(headers::EVENT_ID).unwrap_or("-").to_owned();
        if record.header(headers::INVALID_ACTION) == Some("rejected") && !include_refused {
            out.refused += 1;
            continue;
        }
        if let Err(violations) = schema.schema.check(&record.value) {
            let first = violations
                .first()
                .map(|v| format!("{} at {:?}: {}", v.reason, v.path, v.message))
                .unwrap_or_default();
            out.still_invalid.push((id, first));
            continue;
        }
        if let Some(producer) = &producer {
            let kept: Vec<(&str, &[u8])> = record
                .headers
                .iter()
                .filter(|(k, _)| !QUARANTINE_HEADERS.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            let sent = producer
                .send_record(&source.topic, record.key.as_deref(), &record.value, &kept)
                .await;
            if let Err(e) = sent {
                // What was written is said, so that a rerun can be narrowed to the rest.
                tracing::error!(written = out.written, event_id = %id, error = %e, "redrive stopped");
                return Err(e.into());
            }
        }
        out.written += 1;
    }
    Ok(out)
}

/// The headers a quarantine record has beyond an accepted record's.
const QUARANTINE_HEADERS: [&str; 3] = [
    headers::INVALID_REASON,
    headers::SCHEMA_ERRORS,
    headers::INVALID_ACTION,
];
