//! The in-memory producer behind [`crate::EventProducer::Memory`]: it keeps every record it
//! acknowledged and answers as it is told (accept, refuse, time out, delay), so the ingress's
//! request path and the worker's settlement are unit-tested without a broker.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::{ClientError, Delivered, ProduceError, LIBRDKAFKA_MESSAGE_MAX_BYTES};

/// What [`crate::EventProducer::cluster_id`] answers for the memory producer.
pub(crate) const MEMORY_CLUSTER_ID: &str = "memory";

/// One record the memory producer acknowledged, as a consumer would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: i32,
    pub offset: i64,
}

impl ProducedRecord {
    /// The text of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header_text(&self.headers, name)
    }
}

/// How a refused send fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFault {
    /// librdkafka's local queue is full ([`ProduceError::QueueFull`]).
    QueueFull,
    /// The broker refused the record ([`ProduceError::NotAcknowledged`], here for want of
    /// authorization), nothing written.
    Refused,
    /// The record is too large for Kafka ([`ProduceError::TooLarge`]), nothing written.
    TooLarge,
    /// No broker is reachable ([`ProduceError::Unreachable`]), nothing written.
    Unreachable,
    /// The record was written but its acknowledgement was lost: the caller sees
    /// [`ProduceError::NotAcknowledged`] although the record is in the topic (the
    /// at-least-once case a sender's retry turns into a second copy).
    AcknowledgementLost,
    /// The producer shut down before the report ([`ProduceError::Canceled`]).
    Canceled,
}

/// What the memory producer does with a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBehaviour {
    /// Write the record and acknowledge it at once.
    Accept,
    /// Fail at once.
    Fail(MemoryFault),
    /// Write and acknowledge the record after the delay (tokio's clock: pause it in tests).
    Delay(Duration),
    /// Answer `MessageTimedOut` after the delay without writing, as librdkafka does once
    /// `message.timeout.ms` has passed with the broker unreachable.
    TimeOut(Duration),
}

/// Records in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryProducer {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    records: Vec<ProducedRecord>,
    next_offset: BTreeMap<String, i64>,
    /// Behaviours for the next sends, in order; then `usual`.
    scripted: VecDeque<MemoryBehaviour>,
    usual: Option<MemoryBehaviour>,
    in_flight: i32,
    /// Whether metadata requests fail, as when no broker answers.
    unreachable: bool,
    /// What [`MemoryProducer::message_max_bytes`] says; nothing is refused for it.
    message_max_bytes: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            next_offset: BTreeMap::new(),
            scripted: VecDeque::new(),
            usual: None,
            in_flight: 0,
            unreachable: false,
            message_max_bytes: LIBRDKAFKA_MESSAGE_MAX_BYTES,
        }
    }
}

// === impl MemoryProducer ===

impl MemoryProducer {
    pub fn new() -> Self {
        Self::default()
    }

    /// What every send does from now on, once the scripted ones are used up.
    pub fn behave(&self, behaviour: MemoryBehaviour) {
        self.lock().usual = Some(behaviour);
    }

    /// What the next send does (queued after earlier scripted ones).
    pub fn then(&self, behaviour: MemoryBehaviour) -> &Self {
        self.lock().scripted.push_back(behaviour);
        self
    }

    /// Whether a readiness check (`metadata_ok`) fails.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// What [`crate::EventProducer::message_max_bytes`] answers (librdkafka's default until
    /// set). Only the answer: records are refused as too large by [`MemoryFault::TooLarge`].
    pub fn set_message_max_bytes(&self, bytes: u64) {
        self.lock().message_max_bytes = bytes;
    }

    pub(crate) fn message_max_bytes(&self) -> u64 {
        self.lock().message_max_bytes
    }

    /// Every record written so far, in the order written.
    pub fn records(&self) -> Vec<ProducedRecord> {
        self.lock().records.clone()
    }

    /// The records written to `topic`, in order.
    pub fn records_in(&self, topic: &str) -> Vec<ProducedRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.topic == topic)
            .cloned()
            .collect()
    }

    /// Sends started whose answer has not been given yet.
    pub fn queued(&self) -> i32 {
        self.lock().in_flight
    }

    pub(crate) fn metadata_ok(&self) -> Result<(), ClientError> {
        if self.lock().unreachable {
            return Err(ClientError {
                context: "metadata".into(),
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
            });
        }
        Ok(())
    }

    pub(crate) async fn produce<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, V)],
    ) -> Result<Delivered, ProduceError> {
        let behaviour = {
            let mut state = self.lock();
            state.in_flight += 1;
            state
                .scripted
                .pop_front()
                .or(state.usual)
                .unwrap_or(MemoryBehaviour::Accept)
        };
        let record = || ProducedRecord {
            topic: topic.to_owned(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_vec()))
                .collect(),
            partition: 0,
            offset: 0,
        };
        let result = match behaviour {
            MemoryBehaviour::Accept => Ok(self.write(record())),
            MemoryBehaviour::Delay(wait) => {
                tokio::time::sleep(wait).await;
                Ok(self.write(record()))
            }
            MemoryBehaviour::TimeOut(wait) => {
                tokio::time::sleep(wait).await;
                Err(not_acknowledged(RDKafkaErrorCode::MessageTimedOut))
            }
            MemoryBehaviour::Fail(MemoryFault::QueueFull) => Err(ProduceError::QueueFull),
            MemoryBehaviour::Fail(MemoryFault::Refused) => {
                Err(not_acknowledged(RDKafkaErrorCode::TopicAuthorizationFailed))
            }
            MemoryBehaviour::Fail(MemoryFault::TooLarge) => Err(ProduceError::TooLarge(
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            )),
            MemoryBehaviour::Fail(MemoryFault::Unreachable) => Err(ProduceError::Unreachable),
            MemoryBehaviour::Fail(MemoryFault::AcknowledgementLost) => {
                self.write(record());
                Err(not_acknowledged(RDKafkaErrorCode::MessageTimedOut))
            }
            MemoryBehaviour::Fail(MemoryFault::Canceled) => Err(ProduceError::Canceled),
        };
        self.lock().in_flight -= 1;
        result
    }

    fn write(&self, mut record: ProducedRecord) -> Delivered {
        let mut state = self.lock();
        let next = state.next_offset.entry(record.topic.clone()).or_insert(0);
        record.offset = *next;
        *next += 1;
        let delivered = Delivered {
            partition: record.partition,
            offset: record.offset,
        };
        state.records.push(record);
        delivered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn not_acknowledged(code: RDKafkaErrorCode) -> ProduceError {
    ProduceError::NotAcknowledged(KafkaError::MessageProduction(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventProducer;

    fn producer() -> (MemoryProducer, EventProducer) {
        let memory = MemoryProducer::new();
        (memory.clone(), EventProducer::memory(memory))
    }

    #[tokio::test]
    async fn accepted_records_keep_their_bytes_and_get_rising_offsets() {
        let (memory, producer) = producer();
        for value in [b"one".as_slice(), b"two"] {
            let sent = producer
                .send_record("t", Some(b"k"), value, &[("h", b"v")])
                .await;
            assert!(sent.is_ok(), "{sent:?}");
        }
        let records = memory.records_in("t");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].value.as_deref(), Some(b"two".as_slice()));
        assert_eq!(records[1].offset, 1);
        assert_eq!(records[0].header("h"), Some("v"));
    }

    #[tokio::test]
    async fn scripted_faults_come_first_then_the_usual_behaviour() {
        let (memory, producer) = producer();
        memory
            .then(MemoryBehaviour::Fail(MemoryFault::QueueFull))
            .then(MemoryBehaviour::Fail(MemoryFault::AcknowledgementLost));
        memory.behave(MemoryBehaviour::Fail(MemoryFault::Refused));
        let answers = [
            producer
                .send_record::<&str, &[u8]>("t", None, b"a", &[])
                .await,
            producer
                .send_record::<&str, &[u8]>("t", None, b"b", &[])
                .await,
            producer
                .send_record::<&str, &[u8]>("t", None, b"c", &[])
                .await,
        ];
        let codes: Vec<_> = answers
            .iter()
            .map(|a| a.as_ref().err().map(ProduceError::code))
            .collect();
        assert_eq!(
            codes,
            [
                Some("queue_full"),
                Some("not_acknowledged"),
                Some("not_acknowledged")
            ]
        );
        // Only the record whose acknowledgement was lost is in the topic.
        let values: Vec<_> = memory.records().into_iter().map(|r| r.value).collect();
        assert_eq!(values, [Some(b"b".to_vec())]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_out_answers_after_its_delay_and_writes_nothing() {
        let (memory, producer) = producer();
        memory.behave(MemoryBehaviour::TimeOut(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        let sent = producer
            .send_record::<&str, &[u8]>("t", None, b"x", &[])
            .await;
        assert!(matches!(sent, Err(ProduceError::NotAcknowledged(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(memory.records().is_empty());
        assert_eq!(producer.queued(), 0);
    }

    #[tokio::test]
    async fn too_large_and_unreachable_write_nothing() {
        let (memory, producer) = producer();
        memory
            .then(MemoryBehaviour::Fail(MemoryFault::TooLarge))
            .then(MemoryBehaviour::Fail(MemoryFault::Unreachable));
        let too_large = producer
            .send_record::<&str, &[u8]>("t", None, b"big", &[])
            .await;
        assert!(
            matches!(too_large, Err(ProduceError::TooLarge(_))),
            "{too_large:?}"
        );
        let unreachable = producer
            .send_record::<&str, &[u8]>("t", None, b"x", &[])
            .await;
        assert!(
            matches!(unreachable, Err(ProduceError::Unreachable)),
            "{unreachable:?}"
        );
        assert!(memory.records().is_empty());
        assert_eq!(producer.queued(), 0);
    }

    #[test]
    fn the_memory_cluster_and_its_size_limit() {
        let (memory, producer) = producer();
        assert_eq!(
            producer.cluster_id(Duration::from_secs(1)).as_deref(),
            Some("memory")
        );
        assert_eq!(producer.message_max_bytes(), 1_000_000);
        memory.set_message_max_bytes(2048);
        assert_eq!(producer.message_max_bytes(), 2048);
    }

    #[tokio::test]
    async fn tombstones_have_no_value_and_readiness_follows_reachability() {
        let (memory, producer) = producer();
        assert!(producer.send_tombstone("c", b"key").await.is_ok());
        assert_eq!(memory.records()[0].value, None);
        assert!(producer.metadata_ok("c", Duration::from_secs(1)).is_ok());
        memory.set_unreachable(true);
        assert!(producer.metadata_ok("c", Duration::from_secs(1)).is_err());
    }
}
