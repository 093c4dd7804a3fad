//! Reads whole topics back: every partition from its first offset to its end, as it was when
//! the read began. For reconciliation (tests, demo, load generator), not for processing: the
//! workers use consumer groups.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::{client_error, ClientError, Connection};

/// End-of-partition is how the reader knows it is done, not an error worth a log line; the
/// default context would log each one as a global error.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!(error = %error, reason, "kafka reader");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

// === impl ReadRecord ===

impl ReadRecord {
    /// A consumed message, copied.
    pub fn of<M: Message>(message: &M) -> Self {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        }
    }

    /// The first header of that name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header_text(&self.headers, name)
    }
}

/// The partition ids of `topic`; an error when its metadata carries one (it does not exist,
/// the client may not describe it, it has no leader now). Blocking.
pub fn partitions_of<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, ClientError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(client_error(format!("metadata of {topic}")))?;
    let mut partitions = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        // A topic the client may not describe, or one without a leader now, is an error, not
        // a topic without partitions: a reader must not take it for an empty one.
        if let Some(code) = t.error() {
            return Err(ClientError {
                context: format!("metadata of {topic}"),
                source: KafkaError::MetadataFetch(code.into()),
            });
        }
        partitions.extend(t.partitions().iter().map(|p| p.id()));
    }
    Ok(partitions)
}

/// The names of the topics of the cluster that this client may describe (a topic it may not
/// is left out by the broker, not reported). Blocking.
pub fn topic_names(connection: &Connection, timeout: Duration) -> Result<Vec<String>, ClientError> {
    let consumer: BaseConsumer<ReaderContext> = connection
        .client_config()
        .create_with_context(ReaderContext)
        .map_err(client_error("create reader"))?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(client_error("metadata of the cluster"))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect())
}

/// Reads every record of `topic`. Blocking: call from `spawn_blocking` in async code.
///
/// The end of a partition is where librdkafka reports end-of-partition from the Fetch path.
/// ListOffsets is only a lower bound here: tansu 0.6 answers it with the base offset of the
/// last batch plus one, short of the true end when a batch held several records.
pub fn read_topic(
    connection: &Connection,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<ReadRecord>, ClientError> {
    read_topic_where(connection, topic, timeout, |_| true)
}

/// Like [`read_topic`], keeping only the records `keep` accepts, as they are read: a tool
/// looking for a few records of a topic with days of retention holds those few, not the
/// topic (L-12). `timeout` bounds each wait for the next record, not the whole read, so a
/// long topic is read to its end.
pub fn read_topic_where(
    connection: &Connection,
    topic: &str,
    timeout: Duration,
    mut keep: impl FnMut(&ReadRecord) -> bool,
) -> Result<Vec<ReadRecord>, ClientError> {
    let consumer: BaseConsumer<ReaderContext> = connection
        .client_config()
        // A throwaway group: nothing is committed, and assign() is used, not subscribe().
        .set(
            "group.id",
            format!("spillway-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(ReaderContext)
        .map_err(client_error("create reader"))?;
    let partitions = partitions_of(&consumer, topic, timeout)?;
    if partitions.is_empty() {
        return Err(ClientError {
            context: format!("read {topic}: the cluster reports no partition of it"),
            source: KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopic),
        });
    }

    // Per partition: the lowest offset the end may be at (next offset to read must reach it).
    let mut at_least: HashMap<i32, i64> = HashMap::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, timeout)
            .map_err(client_error(format!("watermarks of {topic}/{p}")))?;
        at_least.insert(*p, high);
        next.insert(*p, low);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(low))
            .map_err(client_error("assign"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(client_error("assign"))?;

    let mut unfinished: std::collections::HashSet<i32> = partitions.iter().copied().collect();
    let mut records = Vec::new();
    let mut deadline = Instant::now() + timeout;
    let mut last_transient: Option<String> = None;
    while !unfinished.is_empty() {
        if Instant::now() > deadline {
            let cause = last_transient
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(ClientError {
                context: format!(
                    "read {topic}: partitions {unfinished:?} gave nothing for {timeout:?} before \
                     their end{cause}"
                ),
                source: KafkaError::NoMessageReceived,
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                if next.get(&p) >= at_least.get(&p) {
                    unfinished.remove(&p);
                }
                continue;
            }
            // A broker of several gone: librdkafka reconnects to another by itself, and the
            // deadline bounds the wait (and names this error if nothing comes); only what no
            // reconnection cures ends the read at once.
            Err(e) if broker_unreachable(&e) => {
                last_transient = Some(e.to_string());
                continue;
            }
            Err(e) => return Err(client_error(format!("read {topic}"))(e)),
        };
        next.insert(message.partition(), message.offset() + 1);
        deadline = Instant::now() + timeout;
        let record = ReadRecord::of(&message);
        if keep(&record) {
            records.push(record);
        }
    }
    Ok(records)
}

/// An error of the connection to a broker, not of the topic: the consumer recovers from it by
/// connecting again (to that broker or, in a cluster, to another).
fn broker_unreachable(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let KafkaError::MessageConsumption(code) = error else {
        return false;
    };
    matches!(
        code,
        Code::BrokerTransportFailure
            | Code::AllBrokersDown
            | Code::NetworkException
            | Code::RequestTimedOut
            | Code::OperationTimedOut
            | Code::NotLeaderForPartition
            | Code::LeaderNotAvailable
            | Code::BrokerNotAvailable
    )
}

/// The offsets consumer group `group` has committed for `topic`'s partitions
/// `0..partitions`, summed (a partition without a commit counts 0): how far a group has
/// settled a topic. Blocks the thread.
pub fn committed_total(
    connection: &Connection,
    group: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<i64, ClientError> {
    let consumer: BaseConsumer = connection
        .client_config()
        .set("group.id", group)
        .create()
        .map_err(client_error("create an offsets client"))?;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(client_error(format!(
            "committed offsets of {group} on {topic}"
        )))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .sum())
}
