//! Stage 7 for the records of a batch: every record's dedupe key claimed at once, every claimed
//! record produced at once, then each claim committed or released, as for a single event
//! ([`crate::durable`]) but record by record: what one record meets decides only its fate.
//!
//! The claims go to the store together ([`Pipeline::take_claims`]): one pipeline per Redis
//! primary, so a batch costs one round trip per node and one wake-up of each node's
//! connection task, not one command, timer and channel message per record. The records are
//! handed to the producer in batch order, so the records of one partition key keep their
//! order when the batch is accepted whole (the idempotent producer keeps it per partition); a
//! record the batch's retry writes lands after the later ones written the first time.

use futures::future::join_all;
use spillway_config::ResolvedSource;
use spillway_kafka::ProduceError;
use spillway_store::ClaimToken;
use spillway_telemetry::traces;
use tokio::time::Instant;
use tracing::Instrument;

use crate::batch::{BatchReport, Record};
use crate::claims::Claimed;
use crate::commits::HeldClaim;
use crate::durable::Failure;
use crate::pipeline::Pipeline;
use crate::schema;
use crate::spans;

/// A record cleared to be produced, with the claim to settle once Kafka answers.
struct Cleared {
    record: Record,
    claim: Option<HeldClaim>,
}

// === impl Pipeline ===

impl Pipeline {
    /// Claims, produces and settles `records`, writing each one's fate into `report`.
    pub(crate) async fn settle_batch(
        &self,
        source: &ResolvedSource,
        records: Vec<Record>,
        report: &mut BatchReport,
    ) {
        let started = Instant::now();
        let cleared = self.claim_records(source, records, report).await;
        if !cleared.is_empty() {
            self.produce_records(source, cleared, report).await;
        }
        // How long Kafka and Redis took is what the in-flight limit follows.
        self.limit.observe(started.elapsed());
    }

    /// The records that may be produced: those this request claimed, those without a key,
    /// and on a fail-open source those whose claim went unanswered. The others' fates are
    /// settled here.
    async fn claim_records(
        &self,
        source: &ResolvedSource,
        records: Vec<Record>,
        report: &mut BatchReport,
    ) -> Vec<Cleared> {
        let keyed = records.iter().any(|r| r.envelope.dedupe_key.is_some());
        let store = match &self.store {
            Some(store) if keyed => store,
            _ => {
                return records
                    .into_iter()
                    .map(|record| Cleared {
                        record,
                        claim: None,
                    })
                    .collect()
            }
        };
        let Some(cluster) = self.cluster_id().await else {
            // Not yet connected to Kafka: nothing could be written anyway.
            for record in records {
                report.failed(record.index, Failure::KAFKA_UNAVAILABLE);
            }
            return Vec::new();
        };
        let wanted: Vec<Option<ClaimToken>> = records
            .iter()
            .map(|record| {
                let key = record.envelope.dedupe_key.as_deref()?;
                let redis_key = self.keys.dedupe(cluster, &source.topic, key);
                Some(ClaimToken::new(redis_key, record.envelope.id.to_string()))
            })
            .collect();
        let claimed = self.take_claims(store, source, wanted).await;
        let mut cleared = Vec::with_capacity(records.len());
        let mut bypassed = false;
        for (record, claimed) in records.into_iter().zip(claimed) {
            if let Some(claimed) = &claimed {
                self.count_dedupe_hit(source, claimed);
            }
            let claim = match claimed {
                None => None,
                Some(Claimed::Held(claim)) => Some(claim),
                Some(Claimed::FailedOpen(claim)) => {
                    bypassed = true;
                    Some(claim)
                }
                Some(Claimed::Done(original)) => {
                    report.duplicate(record.index, original);
                    continue;
                }
                Some(Claimed::InFlight) => {
                    report.failed(record.index, Failure::IN_FLIGHT);
                    continue;
                }
                Some(Claimed::Unavailable) => {
                    report.failed(record.index, Failure::DEDUPE_UNAVAILABLE);
                    continue;
                }
            };
            cleared.push(Cleared { record, claim });
        }
        // Counted once per batch, however many of its claims went unanswered.
        if bypassed {
            self.metrics.fail_open(&source.name);
        }
        cleared
    }

    /// Produces the cleared records at once, then commits the claims of those Kafka took and
    /// releases the others' (so the sender's retry writes them).
    async fn produce_records(
        &self,
        source: &ResolvedSource,
        mut cleared: Vec<Cleared>,
        report: &mut BatchReport,
    ) {
        let batch_id = cleared
            .first()
            .and_then(|c| c.record.envelope.batch)
            .map(|place| place.id.to_string())
            .unwrap_or_default();
        let produce_span = spans::produce(&source.topic, &batch_id);
        // The records continue the batch's trace in the workers.
        if let Some(tp) = traces::traceparent(&produce_span) {
            for c in &mut cleared {
                c.record.envelope.traceparent.clone_from(&tp);
            }
        }
        let sends = cleared.iter().map(|c| async {
            let started = Instant::now();
            let topic = schema::topic_for(source, &c.record.envelope);
            let produced = self.producer.send(topic, &c.record.envelope).await;
            self.metrics.produce(
                topic,
                started.elapsed().as_secs_f64(),
                produced.as_ref().err().map(ProduceError::code),
            );
            produced
        });
        let produced = join_all(sends).instrument(produce_span.clone()).await;
        if let Some(Err(e)) = produced.iter().find(|p| p.is_err()) {
            traces::set_error(&produce_span, e.code());
            tracing::warn!(source = %source.name, batch_id, error = %e, code = e.code(), "kafka did not take every record of the batch");
        }
        let settled = cleared
            .into_iter()
            .zip(produced)
            .map(|(c, produced)| async move {
                let id = c.record.envelope.id.to_string();
                match produced {
                    Ok(_) => {
                        if let Some(claim) = c.claim {
                            self.commits.commit(claim, &source.name, &id).await;
                        }
                        self.count_invalid(source, &c.record.envelope, "quarantined");
                        (c.record.index, Ok(id))
                    }
                    Err(e) => {
                        if let Some(claim) = c.claim {
                            claim.release(&source.name).await;
                        }
                        (c.record.index, Err(e))
                    }
                }
            });
        for (index, settled) in join_all(settled).await {
            match settled {
                Ok(id) => report.accepted(index, id),
                Err(ProduceError::TooLarge(_)) => report.rejected(
                    index,
                    "record_too_large",
                    "the record with its headers is larger than Kafka accepts for one record"
                        .into(),
                ),
                Err(_) => report.failed(index, Failure::KAFKA_UNAVAILABLE),
            }
        }
    }
}
