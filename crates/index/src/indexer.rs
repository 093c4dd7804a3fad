//! The indexer: follows the source topics, their quarantine topics, the attempts topic and the
//! dead letters, and writes what it reads to PostgreSQL in batches.
//!
//! One indexer writes at a time: it holds a PostgreSQL advisory lock on the connection it
//! writes with, so console replicas can all run one and the others stand by. It assigns the
//! partitions itself (no consumer group rebalances) from the offsets stored with the rows, so
//! a restart resumes exactly after the last batch written. When PostgreSQL or Kafka fails it
//! starts over from those offsets; nothing else depends on it, so ingest and delivery go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use spillway_config::{Config, IndexConfig, SourceRoute};
use spillway_kafka::reader::ReadRecord;
use spillway_kafka::Connection;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::retention::delete_expired;
use crate::rows::{row_of, TopicKind};
use crate::writer::{write_batch, Batch};
use crate::IndexError;

/// An arbitrary constant: the advisory lock the writing indexer holds.
const INDEX_LOCK: i64 = 0x5350_494c_0002;

/// How often a stand-by indexer tries for the lock, and a failed one starts over.
const RETRY: Duration = Duration::from_secs(5);

/// How often the indexer looks for new topics and partitions.
const REASSIGN_EVERY: Duration = Duration::from_secs(30);

/// Follows Kafka into the index until cancelled.
#[derive(Debug, Clone)]
pub struct Indexer {
    pool: Pool,
    connection: Connection,
    settings: IndexConfig,
    topics: BTreeMap<String, TopicKind>,
    routes: Arc<HashMap<String, SourceRoute>>,
    progress: Progress,
}

impl Indexer {
    /// The indexer of `config`, writing through `pool`.
    pub fn new(config: &Config, pool: Pool, progress: Progress) -> Result<Self, IndexError> {
        let routes = config
            .resolve_source_routes()
            .map_err(|errors| {
                let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
                IndexError::Config(listed.join("; "))
            })?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        Ok(Self {
            pool,
            connection: Connection::from(&config.kafka),
            settings: config.console.index.clone(),
            topics: followed_topics(config),
            routes: Arc::new(routes),
            progress,
        })
    }

    /// Indexes until `cancel`: waits for the lock, indexes, and starts over after a failure.
    pub async fn run(self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            match self.lead(&cancel).await {
                Ok(()) => return,
                Err(e) => {
                    self.progress.set_leading(false);
                    tracing::warn!(error = %e, "indexer stopped; starting over from the stored offsets");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Takes the lock (waiting while another indexer holds it), then indexes.
    async fn lead(&self, cancel: &CancellationToken) -> Result<(), IndexError> {
        // A connection of its own, out of the pool: the lock lives as long as its session, so
        // it is released when this connection closes, whatever ends the indexing (an error, a
        // panic, the process), and no API handler ever gets a session holding it.
        let mut client = Object::take(self.pool.get().await?);
        loop {
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_LOCK])
                .await?;
            if row.try_get::<_, bool>(0)? {
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(RETRY) => {}
            }
        }
        tracing::info!("indexer holds the index lock");
        self.progress.set_leading(true);
        let result = self.index(&mut client, cancel).await;
        self.progress.set_leading(false);
        result
    }

    async fn index(
        &self,
        client: &mut tokio_postgres::Client,
        cancel: &CancellationToken,
    ) -> Result<(), IndexError> {
        let consumer: Arc<StreamConsumer> = Arc::new(
            self.connection
                .client_config()
                .set("group.id", &self.settings.group_id)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .map_err(kafka("create the consumer"))?,
        );
        let mut assigned = self
            .assign(&consumer, client, &TopicPartitionList::new())
            .await?;
        let mut reassign = tokio::time::interval(REASSIGN_EVERY);
        reassign.tick().await;
        let mut expire = tokio::time::interval(self.settings.retention_interval);
        // After a long batch, one reassignment and one deletion, not one per tick missed.
        reassign.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Only the wait for a batch's first record races the timers: it takes nothing
            // from the consumer until it completes. Filling the batch is never interrupted, or
            // the records it had taken would be lost to the offsets stored after them.
            let first = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                _ = reassign.tick() => {
                    assigned = self.assign(&consumer, client, &assigned).await?;
                    continue;
                }
                _ = expire.tick() => {
                    let deleted = delete_expired(client, self.settings.retention, self.settings.audit_retention).await?;
                    self.progress.expired(deleted);
                    continue;
                }
                first = consumer.recv() => ReadRecord::of(&first.map_err(kafka("read"))?),
            };
            let batch = self.fill_batch(&consumer, &first).await?;
            write_batch(client, &batch).await?;
            self.progress.indexed(&batch);
        }
    }

    /// A batch starting with `first`, filled until it is full or `batch_wait` has passed.
    async fn fill_batch(
        &self,
        consumer: &StreamConsumer,
        first: &ReadRecord,
    ) -> Result<Batch, IndexError> {
        let mut batch = Batch::default();
        self.add(&mut batch, first);
        let deadline = tokio::time::Instant::now() + self.settings.batch_wait;
        while batch.records < self.settings.batch_records {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Ok(message)) => self.add(&mut batch, &ReadRecord::of(&message)),
                Ok(Err(e)) => return Err(kafka("read")(e)),
            }
        }
        Ok(batch)
    }

    fn add(&self, batch: &mut Batch, record: &ReadRecord) {
        let kind = self.topics.get(&record.topic).copied();
        let row = kind.and_then(|kind| row_of(kind, record, &self.routes));
        if row.is_none() {
            self.progress.skipped();
        }
        batch.add(&record.topic, record.partition, record.offset, row);
    }

    /// Assigns the partitions of the followed topics not in `had`, each from its stored offset
    /// (from the beginning when none is stored). Topics that do not exist yet are looked for
    /// again at the next reassignment. Returns what is assigned now.
    async fn assign(
        &self,
        consumer: &Arc<StreamConsumer>,
        client: &tokio_postgres::Client,
        had: &TopicPartitionList,
    ) -> Result<TopicPartitionList, IndexError> {
        let (asking, topics) = (consumer.clone(), self.topics.clone());
        // Blocking in librdkafka: off the runtime's threads.
        let mut wanted = tokio::task::spawn_blocking(move || {
            let metadata = asking
                .fetch_metadata(None, Duration::from_secs(10))
                .map_err(kafka("fetch metadata"))?;
            let mut wanted: Vec<(String, i32)> = Vec::new();
            for topic in metadata.topics() {
                if topic.error().is_none() && topics.contains_key(topic.name()) {
                    let name = topic.name();
                    wanted.extend(topic.partitions().iter().map(|p| (name.to_owned(), p.id())));
                }
            }
            Ok::<_, IndexError>(wanted)
        })
        .await??;
        wanted.sort();
        let current: std::collections::HashSet<(String, i32)> = had
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let added: Vec<&(String, i32)> = wanted.iter().filter(|p| !current.contains(*p)).collect();
        if added.is_empty() {
            return Ok(had.clone());
        }
        // Only the new partitions are assigned, each from its stored offset: the others read
        // on from where they are (seeking them again would be harmless on Kafka, but would lose
        // records on a broker that fetches from batch starts only, see docs/development.md).
        let stored = stored_offsets(client).await?;
        let mut list = TopicPartitionList::new();
        for (topic, partition) in added {
            let offset = stored
                .get(&(topic.clone(), *partition))
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            list.add_partition_offset(topic, *partition, offset)
                .map_err(kafka("assign"))?;
        }
        consumer
            .incremental_assign(&list)
            .map_err(kafka("assign"))?;
        tracing::info!(
            added = list.count(),
            partitions = wanted.len(),
            "indexer assigned partitions"
        );
        let mut all = had.clone();
        for e in list.elements() {
            all.add_partition(e.topic(), e.partition());
        }
        Ok(all)
    }
}

/// The topics the index follows, and what each holds.
pub fn followed_topics(config: &Config) -> BTreeMap<String, TopicKind> {
    let mut topics = BTreeMap::new();
    for topic in config.source_topics() {
        topics.insert(topic, TopicKind::Source);
    }
    for topic in config.quarantine_topics() {
        topics.insert(topic, TopicKind::Quarantine);
    }
    topics.insert(
        spillway_worker::topics::attempts_topic(config),
        TopicKind::Attempts,
    );
    topics.insert(
        spillway_worker::topics::dead_letter_topic(config),
        TopicKind::DeadLetter,
    );
    topics
}

async fn stored_offsets(
    client: &tokio_postgres::Client,
) -> Result<HashMap<(String, i32), i64>, IndexError> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM spillway.index_offsets",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
        .collect()
}

fn kafka(context: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> IndexError {
    move |source| IndexError::Kafka { context, source }
}
