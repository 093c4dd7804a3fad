//! Reads single records back by topic, partition and offset: the console opening an event, or
//! retrying a few. One consumer serves many reads (assign, read, assign again).
//!
//! A read starts at the offset asked for and, when the broker answers with later records only,
//! again from further back, keeping the one asked for. Apache Kafka answers a fetch from the
//! batch holding the offset; tansu 0.6's memory storage from the first batch *starting* after
//! it (docs/development.md), so a record inside a batch is reached only from before the batch.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::reader::ReadRecord;
use crate::{client_error, ClientError, Connection};

/// How far back each further try starts.
const BACKOFFS: [i64; 4] = [0, 64, 1024, 16384];

/// How long a try from inside the partition waits for its first record before starting
/// further back.
const QUIET: Duration = Duration::from_millis(300);

/// Reads single records; blocking (call from `spawn_blocking`).
pub struct RecordFetcher {
    consumer: BaseConsumer,
    timeout: Duration,
}

impl std::fmt::Debug for RecordFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordFetcher")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RecordFetcher {
    /// A fetcher waiting at most `timeout` for each record.
    pub fn new(connection: &Connection, timeout: Duration) -> Result<Self, ClientError> {
        let consumer = connection
            .client_config()
            .set(
                "group.id",
                format!("spillway-fetch-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // A fetch the broker has nothing for (past the end, or inside a batch on tansu)
            // comes back at once instead of after the default half second.
            .set("fetch.wait.max.ms", "10")
            // An offset the broker calls out of range is reported, not silently moved to the end.
            .set("auto.offset.reset", "error")
            .create()
            .map_err(client_error("create fetcher"))?;
        Ok(Self { consumer, timeout })
    }

    /// The record at `offset`; None when the partition no longer (retention) or never held it
    /// (the end is found by reading to it: a few short reads). Takes at most the fetcher's
    /// timeout; an error when the broker gave nothing in that time.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<ReadRecord>, ClientError> {
        let deadline = Instant::now() + self.timeout;
        // Only the low watermark bounds the search: tansu 0.6 answers the high one with the
        // last batch's base offset plus one, short of records inside that batch (reader.rs).
        let (low, _high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(client_error(format!("watermarks of {topic}/{partition}")))?;
        if offset < low {
            return Ok(None);
        }
        for (i, back) in BACKOFFS.iter().enumerate() {
            let start = (offset - back).max(low);
            // The last try waits for what is left of the timeout: a broker slow to answer
            // must not make an event look expired.
            let last = start == low || i + 1 == BACKOFFS.len();
            let patience = if last {
                deadline.saturating_duration_since(Instant::now())
            } else {
                QUIET
            };
            match self.read_from(topic, partition, start, offset, patience, deadline)? {
                Read::Found(record) => return Ok(Some(record)),
                Read::Skipped if last => return Ok(None),
                Read::Quiet if last => {
                    return Err(ClientError {
                        context: format!(
                            "read {topic}/{partition} at {offset}: nothing within {:?}",
                            self.timeout
                        ),
                        source: KafkaError::NoMessageReceived,
                    })
                }
                Read::Skipped | Read::Quiet => {}
            }
        }
        Ok(None)
    }

    /// Reads from `start` until `wanted`, a later record or the end; `Quiet` when nothing
    /// came within `patience` (or, once records came, by `deadline`).
    fn read_from(
        &self,
        topic: &str,
        partition: i32,
        start: i64,
        wanted: i64,
        patience: Duration,
        deadline: Instant,
    ) -> Result<Read, ClientError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(client_error("assign"))?;
        self.consumer
            .assign(&list)
            .map_err(client_error("assign"))?;
        let mut until = (Instant::now() + patience).min(deadline);
        while Instant::now() < until {
            let Some(polled) = self.consumer.poll(Duration::from_millis(20)) else {
                continue;
            };
            match polled {
                // A message of an earlier assignment still queued is not this read's.
                Ok(m) if m.topic() != topic || m.partition() != partition => continue,
                Ok(m) if m.offset() == wanted => return Ok(Read::Found(ReadRecord::of(&m))),
                Ok(m) if m.offset() > wanted => return Ok(Read::Skipped),
                Ok(_) => {}
                // The end came first: the record is further back, or not there at all.
                Err(KafkaError::PartitionEOF(_)) => return Ok(Read::Skipped),
                // An offset the broker calls out of range (tansu: one inside its last batch;
                // Kafka: one its retention just deleted), reported as librdkafka's
                // auto-offset-reset error under `auto.offset.reset=error`.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                )) => return Ok(Read::Skipped),
                Err(e) => return Err(client_error(format!("read {topic}/{partition}"))(e)),
            }
            // Records are coming: the read may go on to the deadline.
            until = deadline;
        }
        Ok(Read::Quiet)
    }
}

enum Read {
    Found(ReadRecord),
    /// The broker answered with later records, the end or out of range: start further back.
    Skipped,
    /// Nothing came at all: start further back (tansu inside a batch), or the broker is slow.
    Quiet,
}
