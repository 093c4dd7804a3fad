//! `--verify`: after a run, read the source topics back and reconcile them with the answers.
//! Every acknowledged event (a 202, or a 200 for a duplicate of it) must be in Kafka exactly
//! once, under the id the answer gave; nothing may be in Kafka that was not acknowledged,
//! except events whose outcome the sender was never told: a request that got no answer (a
//! client timeout: the server may well have taken it), or a 503 `kafka_unavailable` (the
//! write was attempted and its acknowledgement did not come in time; Kafka may still have
//! it), or a 503 `in_flight`. Those are counted separately.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use spillway_core::headers;
use spillway_kafka::{reader, Connection};

use crate::plan::run_and_seq;
use crate::report::Answer;

/// The outcome of a reconciliation; `missing`, `produced_twice`, `unexpected` and
/// `id_mismatch` must all be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Events acknowledged with a 2xx.
    pub acknowledged: usize,
    /// Of those, found in Kafka exactly once under the acknowledged id.
    pub in_kafka_once: usize,
    /// Acknowledged but not in Kafka: lost.
    pub missing: Vec<u64>,
    /// In Kafka more than once, though no answer left the outcome open.
    pub produced_twice: Vec<u64>,
    /// In Kafka more than once after an unconfirmed answer: the first write landed although
    /// the sender was told to retry, and the retry wrote it again (at least once, as
    /// docs/delivery-semantics.md says; consumers dedupe on the dedupe key).
    pub written_again: Vec<u64>,
    /// In Kafka without ever being acknowledged, though every request of it was answered.
    pub unexpected: Vec<u64>,
    /// In Kafka under another id than the answer gave.
    pub id_mismatch: Vec<u64>,
    /// In Kafka, unacknowledged because a request of it got no answer (timed out), a 503
    /// `kafka_unavailable` or a 503 `in_flight`: the sender retries, and its retry is answered
    /// as a duplicate.
    pub unconfirmed_in_kafka: usize,
}

impl Reconciliation {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.produced_twice.is_empty()
            && self.unexpected.is_empty()
            && self.id_mismatch.is_empty()
    }

    pub fn text(&self) -> String {
        let few = |v: &[u64]| {
            let shown: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
            format!(
                "{}{}",
                shown.join(","),
                if v.len() > 10 { ",..." } else { "" }
            )
        };
        format!(
            "Verify        {} acknowledged, {} in Kafka exactly once; missing {} [{}], produced twice {} [{}], \
             unacknowledged in Kafka {} [{}], wrong id {} [{}], unconfirmed requests found in Kafka {} (written again {})  => {}\n",
            self.acknowledged,
            self.in_kafka_once,
            self.missing.len(),
            few(&self.missing),
            self.produced_twice.len(),
            few(&self.produced_twice),
            self.unexpected.len(),
            few(&self.unexpected),
            self.id_mismatch.len(),
            few(&self.id_mismatch),
            self.unconfirmed_in_kafka,
            self.written_again.len(),
            if self.ok() { "OK" } else { "FAILED" }
        )
    }
}

/// Answers that tell the sender to retry although the event may be in Kafka already: a 503
/// `kafka_unavailable` (the write was attempted and not acknowledged in time; Kafka may have it
/// all the same) and a 503 `in_flight` (another request of the event was being written: the
/// case of a balancer retrying a request whose first answer it lost).
fn is_unconfirmed(status: u16, error: &str) -> bool {
    matches!(
        (status, error),
        (503, "kafka_unavailable") | (503, "in_flight")
    )
}

/// Reconciles the answers of a run with the records found in Kafka for it: (sequence number,
/// event id) of each record.
pub fn reconcile(answers: &[Answer], records: &[(u64, String)]) -> Reconciliation {
    #[derive(Default)]
    struct Seen {
        ids: BTreeSet<String>,
        acknowledged: bool,
        unconfirmed: bool,
    }
    let mut by_seq: BTreeMap<u64, Seen> = BTreeMap::new();
    for answer in answers {
        let seen = by_seq.entry(answer.seq).or_default();
        match &answer.result {
            Ok((status, id)) if (200..300).contains(status) => {
                seen.acknowledged = true;
                seen.ids.extend(id.clone());
            }
            Ok((status, Some(error))) if is_unconfirmed(*status, error) => {
                seen.unconfirmed = true;
            }
            Ok(_) => {}
            Err(_) => seen.unconfirmed = true,
        }
    }
    let mut in_kafka: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (seq, id) in records {
        in_kafka.entry(*seq).or_default().push(id);
    }
    let mut out = Reconciliation::default();
    for (seq, seen) in &by_seq {
        let found = in_kafka.get(seq).map(Vec::as_slice).unwrap_or_default();
        if found.len() > 1 {
            if seen.unconfirmed {
                out.written_again.push(*seq);
            } else {
                out.produced_twice.push(*seq);
            }
        }
        if seen.acknowledged {
            out.acknowledged += 1;
            let under_the_answered_id = found.iter().filter(|id| seen.ids.contains(**id)).count();
            match (found.len(), under_the_answered_id) {
                (0, _) => out.missing.push(*seq),
                (_, 1) => out.in_kafka_once += 1,
                (_, 0) => out.id_mismatch.push(*seq),
                // The acknowledged record itself twice: already in `produced_twice`.
                _ => {}
            }
        } else if !found.is_empty() {
            if seen.unconfirmed {
                out.unconfirmed_in_kafka += 1;
            } else {
                out.unexpected.push(*seq);
            }
        }
    }
    // Records of this run that no request accounts for at all.
    out.unexpected
        .extend(in_kafka.keys().filter(|s| !by_seq.contains_key(s)));
    out
}

/// The records of run `run_id` in `topics`: (sequence number, event id). Blocking.
pub fn read_back(
    connection: &Connection,
    topics: &[String],
    run_id: &str,
    timeout: Duration,
) -> Result<Vec<(u64, String)>, spillway_kafka::ClientError> {
    let mut found = Vec::new();
    for topic in topics {
        for record in reader::read_topic(connection, topic, timeout)? {
            if let Some((run, seq)) = run_and_seq(&record.value) {
                if run == run_id {
                    let id = record
                        .header(headers::EVENT_ID)
                        .unwrap_or_default()
                        .to_owned();
                    found.push((seq, id));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Kind;

    fn answer(seq: u64, result: Result<(u16, Option<&str>), &str>) -> Answer {
        Answer {
            seq,
            kind: Kind::Valid,
            source: 0,
            latency: Duration::from_millis(1),
            at: std::time::Instant::now(),
            result: result
                .map(|(s, id)| (s, id.map(str::to_owned)))
                .map_err(str::to_owned),
        }
    }

    fn records(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter().map(|(s, id)| (*s, (*id).to_owned())).collect()
    }

    #[test]
    fn a_clean_run_reconciles() {
        let answers = [
            answer(0, Ok((202, Some("a")))),
            answer(0, Ok((200, Some("a")))), // its duplicate
            answer(1, Ok((401, None))),      // tampered: not in Kafka
            answer(2, Err("timeout")),       // unknown: allowed either way
            answer(3, Ok((503, None))),      // refused: not in Kafka
            answer(4, Ok((503, Some("kafka_unavailable")))), // written, unconfirmed
            answer(5, Ok((503, Some("kafka_unavailable")))), // not written
            answer(6, Ok((503, Some("in_flight")))), // a retry of a request whose answer was lost
            answer(7, Ok((503, Some("kafka_unavailable")))), // landed all the same...
            answer(7, Ok((202, Some("h2")))), // ...and its retry wrote it again
        ];
        let got = reconcile(
            &answers,
            &records(&[(0, "a"), (2, "c"), (4, "e"), (6, "g"), (7, "h1"), (7, "h2")]),
        );
        assert!(got.ok(), "{got:?}");
        assert_eq!(
            (
                got.acknowledged,
                got.in_kafka_once,
                got.unconfirmed_in_kafka
            ),
            (2, 2, 3)
        );
        assert_eq!(got.written_again, vec![7]);
    }

    #[test]
    fn every_kind_of_damage_is_named() {
        let answers = [
            answer(0, Ok((202, Some("a")))),                  // lost
            answer(1, Ok((202, Some("b")))),                  // written twice
            answer(2, Ok((401, None))),                       // in Kafka though refused
            answer(3, Ok((202, Some("d")))),                  // under another id
            answer(4, Ok((503, Some("dedupe_unavailable")))), // refused before any write
        ];
        let got = reconcile(
            &answers,
            &records(&[(1, "b"), (1, "b"), (2, "c"), (3, "x"), (4, "e"), (9, "z")]),
        );
        assert!(!got.ok());
        assert_eq!(got.missing, vec![0]);
        assert_eq!(got.produced_twice, vec![1]);
        assert_eq!(got.unexpected, vec![2, 4, 9]);
        assert_eq!(got.id_mismatch, vec![3]);
        assert!(got.text().contains("FAILED"));
    }
}
