//! Stages 6 and 7 for a batch source: the verified body split into records, each keyed on its
//! own and made durable with the others ([`crate::batch_durable`]), and the answer saying what
//! became of each record.
//!
//! The answer's status is the batch's as a whole, as Elasticsearch's bulk API and Kinesis's
//! PutRecords answer: 503 when any record must be retried (the retry writes only those: the
//! others are duplicates by then), 422 when every record was refused for what it is, else 202
//! (200 when every record was a duplicate) with the refused ones listed. A 4xx for a batch
//! whose other records are in Kafka would tell a sender to drop or resend records already
//! written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use spillway_batch::{split, BatchError, Limits};
use spillway_config::BatchConfig;
use spillway_core::key::KeySource;
use spillway_core::{BatchBody, BatchPlace, Envelope, EventId, RecordErrorBody};
use spillway_signature::Verified;
use spillway_telemetry::{IngressMetrics, Outcome};

use crate::answer::{self, Answer};
use crate::durable::Failure;
use crate::intake::Intake;
use crate::pipeline::Pipeline;
use crate::schema;
use crate::stages::Held;

/// One record to write, with its place in the batch.
pub(crate) struct Record {
    pub(crate) index: usize,
    pub(crate) envelope: Envelope,
}

// === impl Pipeline ===

impl Pipeline {
    /// Splits `body`, keys its records and writes them; a record whose dedupe key an earlier
    /// record of the same batch has is settled as that record is.
    pub(crate) async fn accept_batch(
        self: &Arc<Self>,
        intake: &Intake,
        batch: BatchConfig,
        headers: &HeaderMap,
        body: Bytes,
        verified: Verified,
        held: Held,
    ) -> Answer {
        // Splitting parses every record and keying may hash each: on a blocking thread, as
        // a large batch would hold an async worker (decoding goes there for the same reason).
        let prepare = {
            let (intake, headers) = (intake.clone(), headers.clone());
            move || prepare(&intake, batch, &headers, &body, &verified)
        };
        let prepared = match tokio::task::spawn_blocking(prepare).await {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(e)) => return refused_batch(&e),
            Err(e) => {
                tracing::error!(error = %e, "the batch splitting task failed");
                return answer::internal();
            }
        };
        let Prepared {
            records,
            mut report,
            repeats,
            refused_invalid,
        } = prepared;
        let source = Arc::clone(&intake.source);
        let this = Arc::clone(self);
        self.detached(
            intake.id(),
            held,
            Box::pin(async move {
                for envelope in &refused_invalid {
                    this.quarantine_refused(&source, envelope);
                }
                if !records.is_empty() {
                    this.settle_batch(&source, records, &mut report).await;
                }
                report.settle_repeats(&repeats);
                let deduplicated = source.dedupe != KeySource::None;
                report.answer(&source.name, &this.metrics, this.retry_after, deduplicated)
            }),
        )
        .await
    }
}

/// A batch split and keyed: the records to write, the report of those refused already, the
/// records repeating an earlier one's key as `(repeat, first)`, and the records refused for
/// failing the schema (`on_invalid: reject`), whose copies go to the quarantine.
struct Prepared {
    records: Vec<Record>,
    report: BatchReport,
    repeats: Vec<(usize, usize)>,
    refused_invalid: Vec<Envelope>,
}

/// Splits `body` and keys each record; a key read from the request (a header, the signed id,
/// the client certificate) is the same for all its records.
fn prepare(
    intake: &Intake,
    batch: BatchConfig,
    headers: &HeaderMap,
    body: &Bytes,
    verified: &Verified,
) -> Result<Prepared, BatchError> {
    let limits = Limits {
        max_records: batch.max_records,
        max_record_bytes: batch.max_record_bytes,
    };
    let pieces = split(batch.format, body, limits)?;
    let batch_id = intake.id();
    let mut report = BatchReport::new(batch_id, pieces.len());
    let forwarded = intake.forwarded(headers);
    let mut records = Vec::with_capacity(pieces.len());
    let mut first_with_key: HashMap<String, usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut refused_invalid = Vec::new();
    let rejects_invalid = schema::rejects(&intake.source);
    for (index, piece) in pieces.into_iter().enumerate() {
        let place = BatchPlace {
            id: batch_id,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        };
        let keyed = piece
            .map_err(|e| (e.code(), e.to_string()))
            .and_then(|record| {
                intake
                    .record(headers, record, verified, forwarded.clone(), place)
                    .map_err(|e| (e.code(), format!("no key: {e}")))
            });
        match keyed {
            Err((code, message)) => report.rejected(index, code, message),
            Ok(envelope) if rejects_invalid && envelope.invalid.is_some() => {
                let message = envelope.invalid.as_ref().map(schema::summary);
                report.rejected(index, "record_invalid", message.unwrap_or_default());
                refused_invalid.push(envelope);
            }
            Ok(envelope) => {
                if let Some(key) = &envelope.dedupe_key {
                    if let Some(&first) = first_with_key.get(key) {
                        repeats.push((index, first));
                        continue;
                    }
                    first_with_key.insert(key.clone(), index);
                }
                records.push(Record { index, envelope });
            }
        }
    }
    Ok(Prepared {
        records,
        report,
        repeats,
        refused_invalid,
    })
}

/// What became of each record of a batch, by index: the one record the answer is built from.
#[derive(Debug)]
pub(crate) struct BatchReport {
    batch_id: EventId,
    fates: Vec<Fate>,
}

#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Pending,
    Accepted(String),
    Duplicate(String),
    Refused(RecordErrorBody),
    Failed(Failure),
}

// === impl BatchReport ===

impl BatchReport {
    fn new(batch_id: EventId, records: usize) -> Self {
        Self {
            batch_id,
            fates: vec![Fate::Pending; records],
        }
    }

    fn settle(&mut self, index: usize, fate: Fate) {
        if let Some(slot) = self.fates.get_mut(index) {
            *slot = fate;
        }
    }

    /// The record at `index` was written now under `event_id`.
    pub(crate) fn accepted(&mut self, index: usize, event_id: String) {
        self.settle(index, Fate::Accepted(event_id));
    }

    /// The record at `index` was written before, under `original`.
    pub(crate) fn duplicate(&mut self, index: usize, original: String) {
        self.settle(index, Fate::Duplicate(original));
    }

    /// The record at `index` is refused for what it is: a retry would be refused again.
    pub(crate) fn rejected(&mut self, index: usize, code: &str, message: String) {
        let error = RecordErrorBody {
            index,
            error: code.to_owned(),
            message,
        };
        self.settle(index, Fate::Refused(error));
    }

    /// The record at `index` was not made durable: the batch is to be retried.
    pub(crate) fn failed(&mut self, index: usize, failure: Failure) {
        self.settle(index, Fate::Failed(failure));
    }

    /// Each `(repeat, first)`: the record `repeat` has the dedupe key of the earlier record
    /// `first` and ends as it did (a duplicate of it once it is written).
    fn settle_repeats(&mut self, repeats: &[(usize, usize)]) {
        for &(repeat, first) in repeats {
            let fate = match self.fates.get(first) {
                Some(Fate::Accepted(id) | Fate::Duplicate(id)) => Fate::Duplicate(id.clone()),
                Some(Fate::Refused(e)) => Fate::Refused(RecordErrorBody {
                    index: repeat,
                    ..e.clone()
                }),
                Some(Fate::Failed(failure)) => Fate::Failed(*failure),
                // Every record is settled before its repeats; should one not be, its repeat
                // is not reported written: the sender retries the batch.
                Some(Fate::Pending) | None => Fate::Failed(Failure::KAFKA_UNAVAILABLE),
            };
            self.settle(repeat, fate);
        }
    }

    /// The answer body, in index order; and how the first failed record is counted in
    /// `spillway_http_requests_total`, if any failed.
    fn body(&self) -> (BatchBody, Option<Outcome>) {
        let mut body = BatchBody {
            batch_id: self.batch_id.to_string(),
            records: self.fates.len(),
            event_ids: vec![None; self.fates.len()],
            ..BatchBody::default()
        };
        let mut failed_outcome = None;
        for (index, fate) in self.fates.iter().enumerate() {
            let failure = match fate {
                Fate::Accepted(id) => {
                    body.accepted += 1;
                    body.event_ids[index] = Some(id.clone());
                    continue;
                }
                Fate::Duplicate(id) => {
                    body.duplicate += 1;
                    body.event_ids[index] = Some(id.clone());
                    continue;
                }
                Fate::Refused(error) => {
                    body.rejected += 1;
                    body.errors.push(error.clone());
                    continue;
                }
                Fate::Failed(failure) => *failure,
                // Every record is settled by the time the answer is built; should one not be,
                // it is reported failed, so that the sender retries the batch.
                Fate::Pending => Failure::KAFKA_UNAVAILABLE,
            };
            body.failed += 1;
            body.errors.push(RecordErrorBody {
                index,
                error: failure.code.to_owned(),
                message: failure.message.to_owned(),
            });
            failed_outcome.get_or_insert(failure.outcome);
        }
        (body, failed_outcome)
    }

    /// The answer, with the records counted.
    /// `deduplicated`: the source's records have dedupe keys, so a retry writes only what is
    /// missing.
    fn answer(
        self,
        source: &str,
        metrics: &IngressMetrics,
        retry_after: Duration,
        deduplicated: bool,
    ) -> Answer {
        let (mut body, failed_outcome) = self.body();
        for (result, count) in [
            ("accepted", body.accepted),
            ("duplicate", body.duplicate),
            ("rejected", body.rejected),
            ("failed", body.failed),
        ] {
            if count > 0 {
                metrics.batch_records(source, result, count);
            }
        }
        let (outcome, status) = if let Some(outcome) = failed_outcome {
            body.error = Some("batch_incomplete".into());
            let retry = if deduplicated {
                "the records already written are answered as duplicates"
            } else {
                "this source does not deduplicate, so the records already written are written again"
            };
            body.message = Some(format!(
                "{} of {} records could not be made durable; retry the whole batch: {retry}",
                body.failed, body.records
            ));
            (outcome, StatusCode::SERVICE_UNAVAILABLE)
        } else if body.accepted + body.duplicate == 0 {
            body.error = Some("batch_rejected".into());
            body.message = Some("every record of the batch was refused; see errors".into());
            (Outcome::BadRequest, StatusCode::UNPROCESSABLE_ENTITY)
        } else if body.accepted > 0 {
            body.status = Some("accepted".into());
            (Outcome::Accepted, StatusCode::ACCEPTED)
        } else {
            body.status = Some("duplicate".into());
            (Outcome::Duplicate, StatusCode::OK)
        };
        let answer = Answer {
            outcome,
            response: answer::json(status, &body),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return answer::with_retry_after(answer, retry_after);
        }
        answer
    }
}

/// 400 or 413: the batch as a whole cannot be split, or breaks the record cap.
fn refused_batch(e: &BatchError) -> Answer {
    let (outcome, status) = match e {
        BatchError::TooManyRecords { .. } => (Outcome::TooLarge, StatusCode::PAYLOAD_TOO_LARGE),
        BatchError::Empty | BatchError::NotArray(_) | BatchError::BadFrame { .. } => {
            (Outcome::BadRequest, StatusCode::BAD_REQUEST)
        }
    };
    answer::error(outcome, status, e.code(), e.to_string())
}
