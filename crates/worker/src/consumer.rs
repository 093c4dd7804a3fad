//! The worker's consumers: the source topics (first attempts) and the retry tiers.
//!
//! At-least-once: a record's offset is stored only after the record is fully handled: each
//! matching subscription got it, or the delivery was parked in a retry tier or the dead-letter
//! topic with Kafka's acknowledgement. Offsets of a partition are stored in order, never past
//! an unfinished record; the stored offsets are committed every second and on shutdown.
//!
//! Each partition has its own lane (a task), so partitions progress in parallel and the
//! records of one key, which share a partition, are handled in order. Within a source lane each
//! subscription has its own queue and task, so subscriptions proceed independently and a slow
//! one is deferred to the retry path instead of holding up the rest. The dispatcher never
//! blocks on a lane: a lane whose backlog passes `worker.partition_backlog` has its partition
//! paused until it drains, so memory stays bounded and the consumer keeps polling (a retry
//! lane may wait minutes for its head record).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderName, HeaderValue};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::TopicPartitionList;
use spillway_config::{Config, ResolvedSource, ResolvedSubscription};
use spillway_core::headers;
use spillway_core::key::KeyInput;
use spillway_kafka::{Connection, EventProducer, ProducerSettings};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::SubscriptionApi;
use crate::breaker::Breakers;
use crate::delivery::{wants, Deliverer, DeliveryOutcome, OutboundEvent};
use crate::registry::{Follower, LiveSubscriptions, Registry};
use crate::ssrf::AddressPolicy;
use crate::topics::{dead_letter_topic, retry_tiers, tier_for, RetryTier};
use crate::RetryPolicy;
use spillway_telemetry::{serve_admin, traces, Readiness, ReadinessFuture, WorkerMetrics};
use tracing::Instrument;

/// Headers the workers add to retry and dead-letter records.
pub mod control {
    /// The subscription a parked delivery is for.
    pub const SUBSCRIPTION: &str = "spillway-subscription";
    /// The attempt a retry record is for (2 is the first retry); in a dead letter, the
    /// attempts made.
    pub const ATTEMPT: &str = "spillway-attempt";
    /// Milliseconds since the epoch before which a retry record is not attempted.
    pub const NOT_BEFORE: &str = "spillway-not-before";
    /// Why the last attempt failed.
    pub const LAST_ERROR: &str = "spillway-last-error";
    /// The last HTTP status, when there was one.
    pub const LAST_STATUS: &str = "spillway-last-status";
    /// Why an event is a dead letter: `attempts_exhausted` or `target_refused`.
    pub const DEAD_REASON: &str = "spillway-dead-reason";
    /// Milliseconds since the epoch at which the event became a dead letter.
    pub const DEAD_AT: &str = "spillway-dead-at";

    pub(crate) const ALL: &[&str] = &[
        SUBSCRIPTION,
        ATTEMPT,
        NOT_BEFORE,
        LAST_ERROR,
        LAST_STATUS,
        DEAD_REASON,
        DEAD_AT,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] spillway_kafka::ClientError),
    #[error("kafka consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Setup(#[from] crate::delivery::SetupError),
    #[error("kafka did not take the record: {0}")]
    Produce(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// What the workers need to handle a record, shared by every lane.
#[derive(Debug)]
struct Handling {
    sources: HashMap<String, ResolvedSource>,
    subscriptions: Arc<LiveSubscriptions>,
    /// Per subscription with a rate limit: its limit and the limiter enforcing it.
    limiters: std::sync::Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
    deliverer: Deliverer,
    policy: RetryPolicy,
    tiers: Vec<RetryTier>,
    dead_letter: String,
    producer: EventProducer,
    breakers: Breakers,
    metrics: WorkerMetrics,
}

/// A worker process: a consumer for the source topics and one for the retry tiers.
#[derive(Debug)]
pub struct Worker {
    config: Arc<Config>,
    handling: Arc<Handling>,
    api_token: Option<String>,
    consumer_config: ClientConfig,
    group_id: String,
    source_topics: Vec<String>,
    backlog: usize,
    limits: LaneLimits,
    flush_timeout: Duration,
    drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Source topics: first attempts, fanned out to every matching subscription.
    Source,
    /// Retry tiers: one subscription per record, once it is due.
    Retry,
}

// === impl Worker ===

impl Worker {
    pub fn from_config(config: &Config) -> Result<Self, WorkerError> {
        let joined = |errors: Vec<spillway_config::FieldError>| {
            WorkerError::Config(spillway_config::describe(&errors))
        };
        let sources = config.resolve_sources().map_err(joined)?;
        let shared = Arc::new(config.clone());
        let subscriptions = Arc::new(LiveSubscriptions::new(
            shared.clone(),
            config.resolve_subscriptions().map_err(joined)?,
        ));
        let api_token = config
            .worker
            .api_token
            .as_ref()
            .map(spillway_config::read_api_token)
            .transpose()
            .map_err(|e| WorkerError::Config(format!("worker.api_token: {e}")))?;
        let producer = EventProducer::new(&ProducerSettings::from(&config.kafka))?;
        let mut consumer_config = Connection::from(&config.kafka).client_config();
        for (k, v) in &config.worker.consumer_properties {
            consumer_config.set(k, v);
        }
        consumer_config
            // Offsets are stored by hand once a record is handled, committed every second.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            // A new group starts at the beginning: events accepted before the first worker
            // started are delivered too.
            .set("auto.offset.reset", "earliest");
        Ok(Self {
            config: shared,
            api_token,
            handling: Arc::new(Handling {
                sources: sources
                    .iter()
                    .map(|s| (s.name.clone(), s.clone()))
                    .collect(),
                subscriptions,
                limiters: std::sync::Mutex::default(),
                deliverer: Deliverer::new(AddressPolicy::new(config.worker.allow_cidrs.clone()))?,
                policy: RetryPolicy::from(&config.worker),
                tiers: retry_tiers(config),
                dead_letter: dead_letter_topic(config),
                producer,
                breakers: Breakers::new(
                    config.worker.breaker_failures,
                    config.worker.breaker_cooldown,
                ),
                metrics: WorkerMetrics::new()
                    .map_err(|e| WorkerError::Config(format!("metrics registry: {e}")))?,
            }),
            consumer_config,
            group_id: config.worker.group_id.clone(),
            source_topics: config.topics(),
            backlog: config.worker.partition_backlog.max(1),
            limits: LaneLimits {
                subscription_queue: config.worker.subscription_queue.max(1),
                slow_after: config.worker.slow_after,
                retry_concurrency: config.worker.retry_concurrency.max(1),
            },
            flush_timeout: config.kafka.delivery_timeout,
            drain_timeout: config.worker.drain_timeout,
        })
    }

    /// The worker's metrics (for tests and embedding).
    pub fn metrics(&self) -> WorkerMetrics {
        self.handling.metrics.clone()
    }

    /// Consumes until `shutdown` resolves, serving `/healthz`, `/readyz` and `/metrics` on
    /// `admin` meanwhile; then records not started are handed back, deliveries in hand get up
    /// to `worker.drain_timeout` to finish, offsets of settled records are committed and the
    /// producer is flushed.
    pub async fn run(
        self,
        admin: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        let cancel = CancellationToken::new();
        // The registry is read to its end before any record is handled: a record handled
        // before its subscriptions are known would be settled without reaching them.
        let mut follower = Follower::start(&self.config).await?;
        self.handling.subscriptions.catch_up(&mut follower).await?;
        let registry_task = tokio::spawn(
            self.handling
                .subscriptions
                .clone()
                .follow(follower, cancel.clone()),
        );
        let (source, source_lanes) = self.consumer(&self.group_id, &self.source_topics)?;
        let retry_topics: Vec<String> = self
            .handling
            .tiers
            .iter()
            .map(|t| t.topic.clone())
            .collect();
        let (retry, retry_lanes) =
            self.consumer(&format!("{}.retry", self.group_id), &retry_topics)?;
        let readiness = Arc::new(WorkerReadiness {
            producer: self.handling.producer.clone(),
            cancel: cancel.clone(),
        });
        let admin_task = tokio::spawn(serve_admin(
            admin,
            Arc::new(self.handling.metrics.clone()),
            readiness,
            self.api_token.clone().map(|token| {
                Arc::new(SubscriptionApi::new(
                    Registry::new(self.config.clone(), self.handling.producer.clone()),
                    self.handling.subscriptions.clone(),
                    token,
                )) as Arc<dyn spillway_telemetry::AdminRoutes>
            }),
            {
                let cancel = cancel.clone();
                async move { cancel.cancelled().await }
            },
        ));
        let lag_task = tokio::spawn(report_lag(
            // Source topics only: records in the retry tiers wait on purpose.
            source.clone(),
            self.handling.metrics.clone(),
            cancel.clone(),
        ));
        let tasks = [
            tokio::spawn(consume(
                source,
                source_lanes,
                Role::Source,
                self.handling.clone(),
                cancel.clone(),
                self.backlog,
                self.limits,
            )),
            tokio::spawn(consume(
                retry,
                retry_lanes,
                Role::Retry,
                self.handling.clone(),
                cancel.clone(),
                self.backlog,
                self.limits,
            )),
        ];
        shutdown.await;
        tracing::info!("shutdown: draining the deliveries in hand");
        cancel.cancel();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "consumer task failed");
            }
        }
        let _ = lag_task.await;
        let _ = admin_task.await;
        let _ = registry_task.await;
        let producer = self.handling.producer.clone();
        let timeout = self.flush_timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        tracing::info!("worker stopped");
        Ok(())
    }

    fn consumer(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<(Arc<WorkerConsumer>, Lanes), WorkerError> {
        let lanes = Lanes::default();
        let consumer: WorkerConsumer = self
            .consumer_config
            .clone()
            .set("group.id", group)
            .create_with_context(DrainingContext {
                lanes: lanes.clone(),
                drain: self.drain_timeout,
            })?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        Ok((Arc::new(consumer), lanes))
    }
}

/// Ready while not stopping and Kafka answers metadata requests.
#[derive(Debug)]
struct WorkerReadiness {
    producer: EventProducer,
    cancel: CancellationToken,
}

impl Readiness for WorkerReadiness {
    fn check(&self) -> ReadinessFuture<'_> {
        Box::pin(async move {
            if self.cancel.is_cancelled() {
                return Err("stopping".into());
            }
            let producer = self.producer.clone();
            tokio::task::spawn_blocking(move || producer.metadata_ok(Duration::from_secs(2)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }
}

/// How often consumer lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Measures, every few seconds, how far each assigned source partition's position is behind
/// its end.
async fn report_lag(
    consumer: Arc<WorkerConsumer>,
    metrics: WorkerMetrics,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(LAG_INTERVAL) => {}
        }
        let (consumer, metrics) = (consumer.clone(), metrics.clone());
        let measured = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return;
            };
            // A partition that fetched nothing since it was assigned has no position yet: it
            // stands at the group's committed offset.
            let committed = consumer.committed(Duration::from_secs(2)).ok();
            for p in positions.elements() {
                let Ok((low, high)) =
                    consumer.fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(2))
                else {
                    continue;
                };
                let stored = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(p.topic(), p.partition()))
                    .and_then(|e| match e.offset() {
                        rdkafka::Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                let at = match p.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    _ => stored.unwrap_or(low),
                };
                metrics.lag(p.topic(), p.partition(), (high - at).max(0));
            }
        });
        let _ = measured.await;
    }
}

/// A partition's lane as the dispatcher and the rebalance callback see it.
struct Lane {
    tx: mpsc::UnboundedSender<OwnedMessage>,
    queued: Arc<AtomicUsize>,
    /// Cancelled when the partition is revoked or the worker stops: the lane starts nothing
    /// new and hands back what it has not started.
    handback: CancellationToken,
    /// Cancelled when the drain bound has passed: deliveries in hand are abandoned.
    abandon: CancellationToken,
    /// Disconnected once the lane and its tasks have finished and stored their offsets.
    finished: std::sync::mpsc::Receiver<()>,
}

/// The lanes of one consumer, shared by its dispatcher and its rebalance callback.
type Lanes = Arc<std::sync::Mutex<HashMap<(String, i32), Lane>>>;

type WorkerConsumer = StreamConsumer<DrainingContext>;

/// The consumer's context: when partitions are revoked, their lanes finish what they have in
/// hand (within `drain`) and their offsets are committed before the partitions move on, so
/// the next owner neither loses nor repeats that work.
struct DrainingContext {
    lanes: Lanes,
    drain: Duration,
}

impl ClientContext for DrainingContext {}

impl ConsumerContext for DrainingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let lanes: Vec<Lane> = {
            let Ok(mut map) = self.lanes.lock() else {
                return;
            };
            revoked
                .elements()
                .iter()
                .filter_map(|e| map.remove(&(e.topic().to_owned(), e.partition())))
                .collect()
        };
        if lanes.is_empty() {
            return;
        }
        let count = lanes.len();
        // This runs inside the consumer's poll on a runtime thread: let the runtime move its
        // other tasks (the lanes among them) elsewhere while this one waits.
        let abandoned = match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| drain_lanes(lanes, self.drain))
            }
            _ => drain_lanes(lanes, self.drain),
        };
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "nothing committed on revoke");
        }
        tracing::info!(
            partitions = count,
            abandoned,
            "partitions revoked: in-hand work drained"
        );
    }
}

/// Closes `lanes` and waits up to `bound` for them to finish their deliveries in hand; the
/// lanes still busy then abandon theirs. Returns how many lanes had to abandon work.
fn drain_lanes(lanes: Vec<Lane>, bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    let waiting: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            lane.handback.cancel();
            (lane.abandon, lane.finished)
        })
        .collect();
    let mut abandoned = 0;
    for (abandon, finished) in &waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            abandon.cancel();
            abandoned += 1;
        }
    }
    // An abandoning lane stops at once; its settled offsets are still worth storing.
    for (_, finished) in &waiting {
        let _ = finished.recv_timeout(Duration::from_secs(1));
    }
    abandoned
}

async fn consume(
    consumer: Arc<WorkerConsumer>,
    lanes: Lanes,
    role: Role,
    handling: Arc<Handling>,
    stop: CancellationToken,
    backlog: usize,
    limits: LaneLimits,
) {
    let mut paused: HashSet<(String, i32)> = HashSet::new();
    let tracker = TaskTracker::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                let Ok(map) = lanes.lock() else { break };
                paused.retain(|id| {
                    let drained = map.get(id).is_none_or(|l| l.queued.load(Ordering::Relaxed) <= backlog / 2);
                    if drained {
                        let _ = consumer.resume(&partition_list(id));
                    }
                    !drained
                });
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(error = %e, ?role, "kafka consumer error");
                        continue;
                    }
                };
                let id = (message.topic().to_owned(), message.partition());
                let Ok(mut map) = lanes.lock() else { break };
                let lane = map.entry(id.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let (finished_tx, finished) = std::sync::mpsc::sync_channel(0);
                    let context = LaneContext {
                        role,
                        queued: Arc::new(AtomicUsize::new(0)),
                        consumer: consumer.clone(),
                        handling: handling.clone(),
                        handback: CancellationToken::new(),
                        abandon: CancellationToken::new(),
                        tracker: TaskTracker::new(),
                        limits,
                    };
                    let lane = Lane {
                        tx,
                        queued: context.queued.clone(),
                        handback: context.handback.clone(),
                        abandon: context.abandon.clone(),
                        finished,
                    };
                    let ledger = Ledger::new(id.0.clone(), id.1);
                    tracker.spawn(async move {
                        let _finished = finished_tx;
                        run_lane(context, rx, ledger).await;
                    });
                    lane
                });
                lane.queued.fetch_add(1, Ordering::Relaxed);
                if lane.tx.send(message).is_err() {
                    tracing::error!(topic = %id.0, partition = id.1, "lane stopped; the partition is re-read after a restart");
                }
                if lane.queued.load(Ordering::Relaxed) > backlog && paused.insert(id.clone()) {
                    let _ = consumer.pause(&partition_list(&id));
                }
            }
        }
    }
    // Stopping drains every lane as a revocation would.
    let all: Vec<Lane> = lanes
        .lock()
        .map(|mut map| map.drain().map(|(_, lane)| lane).collect())
        .unwrap_or_default();
    let drain = consumer.context().drain;
    let abandoned = tokio::task::spawn_blocking(move || drain_lanes(all, drain))
        .await
        .unwrap_or_default();
    tracing::info!(?role, abandoned, "in-hand work drained");
    tracker.close();
    tracker.wait().await;
    let committing = consumer.clone();
    // Nothing stored yet is not an error worth reporting.
    let _ = tokio::task::spawn_blocking(move || committing.commit_consumer_state(CommitMode::Sync))
        .await;
}

fn partition_list((topic, partition): &(String, i32)) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    list
}

/// A lane: the records of one partition, in order. Once handed back, it waits for the
/// deliveries it started (or their abandonment), then stores the offsets that settled.
async fn run_lane(
    lane: LaneContext,
    rx: mpsc::UnboundedReceiver<OwnedMessage>,
    mut ledger: Ledger,
) {
    let (consumer, tracker) = (lane.consumer.clone(), lane.tracker.clone());
    match lane.role {
        Role::Source => run_source_lane(lane, rx, &mut ledger).await,
        Role::Retry => run_retry_lane(lane, rx, &mut ledger).await,
    }
    tracker.close();
    tracker.wait().await;
    ledger.store_settled(&consumer);
}

/// What every lane of a consumer shares.
#[derive(Clone)]
struct LaneContext {
    role: Role,
    queued: Arc<AtomicUsize>,
    consumer: Arc<WorkerConsumer>,
    handling: Arc<Handling>,
    /// Start nothing new: the partition is revoked or the worker stops.
    handback: CancellationToken,
    /// Give up the deliveries in hand: the drain bound has passed.
    abandon: CancellationToken,
    /// The lane's own tasks (subscription queues, concurrent retries, postponements).
    tracker: TaskTracker,
    limits: LaneLimits,
}

/// The worker's knobs that lanes apply.
#[derive(Debug, Clone, Copy)]
struct LaneLimits {
    subscription_queue: usize,
    slow_after: Duration,
    retry_concurrency: usize,
}

/// A record's deliveries that are not settled yet.
struct Progress {
    offset: i64,
    unsettled: AtomicUsize,
}

impl Progress {
    fn settle_one(&self, settled: &tokio::sync::Notify) {
        self.unsettled.fetch_sub(1, Ordering::AcqRel);
        settled.notify_one();
    }
}

/// Offsets of one partition, stored in order as their records settle: never past a record
/// whose deliveries are still unsettled, whatever order they finish in.
struct Ledger {
    topic: String,
    partition: i32,
    in_order: VecDeque<Arc<Progress>>,
    /// Woken whenever a delivery settles.
    settled: Arc<tokio::sync::Notify>,
}

impl Ledger {
    fn new(topic: String, partition: i32) -> Self {
        Self {
            topic,
            partition,
            in_order: VecDeque::new(),
            settled: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn open(&mut self, offset: i64, deliveries: usize) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            offset,
            unsettled: AtomicUsize::new(deliveries),
        });
        self.in_order.push_back(progress.clone());
        progress
    }

    /// Stores the offset of every settled record at the front.
    fn store_settled(&mut self, consumer: &WorkerConsumer) {
        while self
            .in_order
            .front()
            .is_some_and(|p| p.unsettled.load(Ordering::Acquire) == 0)
        {
            let Some(done) = self.in_order.pop_front() else {
                break;
            };
            // rd_kafka_offset_store stores offset + 1: the next record to read.
            if let Err(e) = consumer.store_offset(&self.topic, self.partition, done.offset) {
                // The partition was revoked: its new owner handles the record again.
                tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "offset not stored");
            }
        }
    }
}

/// A retry tier partition: records are waited for in order (their due times rise), then
/// delivered concurrently up to `retry_concurrency`, so one hanging subscriber does not hold up
/// the others' retries.
async fn run_retry_lane(
    lane: LaneContext,
    mut rx: mpsc::UnboundedReceiver<OwnedMessage>,
    ledger: &mut Ledger,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(
        lane.limits.retry_concurrency.max(1),
    ));
    let settled = ledger.settled.clone();
    loop {
        tokio::select! {
            biased;
            () = lane.handback.cancelled() => return,
            () = settled.notified() => {}
            received = rx.recv() => {
                let Some(message) = received else { return };
                lane.queued.fetch_sub(1, Ordering::Relaxed);
                // Settled offsets are stored before a possibly long wait, not after it.
                ledger.store_settled(&lane.consumer);
                if !lane.handling.wait_until_due(&message, &lane.handback).await {
                    return;
                }
                let permit = tokio::select! {
                    () = lane.handback.cancelled() => return,
                    permit = permits.clone().acquire_owned() => permit,
                };
                let Ok(permit) = permit else { return };
                let progress = ledger.open(message.offset(), 1);
                let (handling, abandon, settled) = (lane.handling.clone(), lane.abandon.clone(), settled.clone());
                lane.tracker.spawn(async move {
                    let _permit = permit;
                    if handling.retry(&message, &abandon).await {
                        progress.settle_one(&settled);
                    }
                });
            }
        }
        ledger.store_settled(&lane.consumer);
    }
}

/// One delivery of one record to one subscription.
struct Job {
    message: Arc<OwnedMessage>,
    event: Arc<OutboundEvent>,
    /// As it stood when the record was read: a later change applies to later records.
    subscription: Arc<ResolvedSubscription>,
    progress: Arc<Progress>,
}

/// A subscription's queue within a source lane.
struct SubscriptionQueue {
    tx: mpsc::Sender<Job>,
    /// Its queue stayed full for `slow_after`: deliveries are deferred until it drains to half.
    slow: bool,
}

/// A source partition: each matching subscription has its own queue and task, so deliveries
/// to one subscription stay in order while subscriptions proceed independently. A slow
/// subscription's deliveries are deferred to the retry path instead of holding up the lane.
async fn run_source_lane(
    lane: LaneContext,
    mut rx: mpsc::UnboundedReceiver<OwnedMessage>,
    ledger: &mut Ledger,
) {
    let mut queues: HashMap<String, SubscriptionQueue> = HashMap::new();
    let settled = ledger.settled.clone();
    let capacity = lane.limits.subscription_queue.max(1);
    loop {
        tokio::select! {
            biased;
            () = lane.handback.cancelled() => return,
            () = settled.notified() => {}
            received = rx.recv() => {
                let Some(message) = received else { return };
                lane.queued.fetch_sub(1, Ordering::Relaxed);
                let event = Arc::new(lane.handling.outbound(&message));
                let message = Arc::new(message);
                let matching: Vec<Arc<ResolvedSubscription>> = lane
                    .handling
                    .subscriptions
                    .snapshot()
                    .iter()
                    .filter(|s| wants(s, &event.source, event.event_type.as_deref()))
                    .cloned()
                    .collect();
                let progress = ledger.open(message.offset(), matching.len());
                for subscription in matching {
                    let queue = queues.entry(subscription.id.clone()).or_insert_with(|| SubscriptionQueue {
                        tx: subscription_task(&lane, settled.clone()),
                        slow: false,
                    });
                    if queue.slow && queue.tx.capacity() >= capacity / 2 {
                        queue.slow = false;
                    }
                    let job = Job { message: message.clone(), event: event.clone(), subscription: subscription.clone(), progress: progress.clone() };
                    let refused = if queue.slow {
                        Some(job)
                    } else {
                        match queue.tx.send_timeout(job, lane.limits.slow_after).await {
                            Ok(()) => None,
                            Err(mpsc::error::SendTimeoutError::Timeout(job)) => {
                                tracing::info!(subscription = %subscription.id, "slow subscriber: deferring its deliveries");
                                queue.slow = true;
                                Some(job)
                            }
                            // Its task stopped: the lane is being handed back.
                            Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                        }
                    };
                    if let Some(job) = refused {
                        let (handling, abandon, settled) = (lane.handling.clone(), lane.abandon.clone(), settled.clone());
                        lane.tracker.spawn(async move {
                            let wait = handling.tiers.first().map(|t| t.delay).unwrap_or_default();
                            if handling.postpone(&job.message, &subscription, 1, wait, "the subscription is slow", &abandon).await {
                                job.progress.settle_one(&settled);
                            }
                        });
                    }
                }
            }
        }
        ledger.store_settled(&lane.consumer);
    }
}

/// The task delivering one subscription's share of a partition, in order. When the lane is
/// handed back it finishes the delivery in hand and leaves the queued ones to the next owner.
fn subscription_task(lane: &LaneContext, settled: Arc<tokio::sync::Notify>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(lane.limits.subscription_queue.max(1));
    let (handling, handback, abandon) = (
        lane.handling.clone(),
        lane.handback.clone(),
        lane.abandon.clone(),
    );
    lane.tracker.spawn(async move {
        loop {
            let job = tokio::select! {
                biased;
                () = handback.cancelled() => return,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            if !handling
                .attempt(&job.message, &job.subscription, &job.event, 1, &abandon)
                .await
            {
                return;
            }
            job.progress.settle_one(&settled);
        }
    });
    tx
}

// === impl Handling ===

impl Handling {
    /// Waits until a retry record is due; false when the worker stops first.
    async fn wait_until_due(&self, message: &OwnedMessage, cancel: &CancellationToken) -> bool {
        let not_before: u64 = header_text(message, control::NOT_BEFORE)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let wait = Duration::from_millis(not_before.saturating_sub(now_ms()));
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// The limiter of a subscription with a rate limit, made anew when its limit changed.
    fn limiter(
        &self,
        subscription: &ResolvedSubscription,
    ) -> Option<Arc<DefaultDirectRateLimiter>> {
        let rate = subscription.rate_limit?;
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = limiters
            .entry(subscription.id.clone())
            .and_modify(|(had, limiter)| {
                if *had != rate {
                    *had = rate;
                    *limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
                }
            })
            .or_insert_with(|| (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate)))));
        Some(entry.1.clone())
    }

    /// A due retry record: deliver to its subscription, settle. False when cancelled.
    async fn retry(&self, message: &OwnedMessage, cancel: &CancellationToken) -> bool {
        let attempt: u32 = header_text(message, control::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2);
        let wanted = header_text(message, control::SUBSCRIPTION);
        let Some(subscription) = wanted.as_deref().and_then(|id| self.subscriptions.find(id))
        else {
            tracing::warn!(subscription = ?wanted, "retry for a subscription that no longer exists; dropped");
            return true;
        };
        let event = self.outbound(message);
        self.attempt(message, &subscription, &event, attempt, cancel)
            .await
    }

    /// One attempt at delivering `event` to `subscription`, then its settlement. While the
    /// subscription's circuit is open the delivery is postponed instead, keeping its attempt
    /// number. An attempt in hand is abandoned if the worker stops (the record is handed back,
    /// not settled), so shutdown never waits for a hanging subscriber. False when cancelled.
    async fn attempt(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> bool {
        // The messaging "process" span continues the trace the ingress wrote into the record;
        // its fields put the event id, source and subscription on every log line inside.
        let process = if traces::exporting() {
            tracing::info_span!(
                "process",
                otel.name = %format_args!("process {}", message.topic()),
                otel.kind = "consumer",
                source = %event.source,
                event_id = %event.event_id,
                subscription = %subscription.id,
                attempt,
            )
        } else {
            tracing::info_span!(
                "process",
                source = %event.source,
                event_id = %event.event_id,
                subscription = %subscription.id,
                attempt,
            )
        };
        if traces::exporting() {
            traces::set_attributes(
                &process,
                &[
                    ("messaging.system", "kafka".into()),
                    ("messaging.operation.type", "process".into()),
                    (
                        "messaging.destination.name",
                        message.topic().to_owned().into(),
                    ),
                    (
                        "messaging.destination.partition.id",
                        message.partition().to_string().into(),
                    ),
                    ("messaging.kafka.offset", message.offset().into()),
                    ("messaging.message.id", event.event_id.clone().into()),
                ],
            );
            traces::continue_remote(&process, event.traceparent.as_deref());
        }
        self.attempt_in_span(message, subscription, event, attempt, cancel)
            .instrument(process)
            .await
    }

    async fn attempt_in_span(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        event: &OutboundEvent,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> bool {
        self.metrics.init_subscription(&subscription.id);
        if let Err(wait) = self.breakers.admit(&subscription.id, Instant::now()) {
            self.metrics.delivery(&subscription.id, "postponed", None);
            return self
                .postpone(message, subscription, attempt, wait, "circuit open", cancel)
                .await;
        }
        if let Some(limiter) = self.limiter(subscription) {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = limiter.until_ready() => {}
            }
        }
        let started = Instant::now();
        let client = delivery_span(subscription);
        // The subscriber gets this delivery's own span as its parent; without trace export it
        // gets the record's traceparent.
        let traced;
        let event = match traces::traceparent(&client) {
            Some(tp) => {
                traced = OutboundEvent {
                    traceparent: Some(tp),
                    ..event.clone()
                };
                &traced
            }
            None => event,
        };
        let outcome = tokio::select! {
            () = cancel.cancelled() => return false,
            outcome = self.deliverer.deliver(subscription, event, attempt).instrument(client.clone()) => outcome,
        };
        record_delivery(&client, &outcome);
        log_outcome(subscription, event, attempt, &outcome);
        let seconds = Some(started.elapsed().as_secs_f64());
        match &outcome {
            DeliveryOutcome::Delivered { .. } => {
                self.metrics
                    .delivery(&subscription.id, "delivered", seconds);
                self.breakers.record(&subscription.id, true, Instant::now());
            }
            DeliveryOutcome::Failed { .. } => {
                self.metrics.delivery(&subscription.id, "failed", seconds);
                self.breakers
                    .record(&subscription.id, false, Instant::now());
            }
            // A refused target says nothing about the subscriber's health.
            DeliveryOutcome::Refused { .. } => {
                self.metrics.delivery(&subscription.id, "refused", seconds)
            }
        }
        self.metrics
            .circuit(&subscription.id, self.breakers.state(&subscription.id));
        self.settle(message, subscription, attempt, outcome, cancel)
            .await
    }

    /// Parks a failed attempt in a retry tier or the dead-letter topic; nothing to do for a
    /// delivered one. Keeps trying to write the record until Kafka takes it or the worker
    /// stops, because the source offset must not move past an unsettled delivery.
    async fn settle(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        outcome: DeliveryOutcome,
        cancel: &CancellationToken,
    ) -> bool {
        let (reason, status, retry_after, refused) = match outcome {
            DeliveryOutcome::Delivered { .. } => return true,
            DeliveryOutcome::Failed {
                reason,
                status,
                retry_after,
            } => (reason, status, retry_after, false),
            DeliveryOutcome::Refused { reason } => (reason, None, None, true),
        };
        let next_delay = if refused {
            None
        } else {
            self.policy
                .delay_before(attempt + 1, retry_after, &mut rand::rng())
        };
        let mut control: Vec<(&str, String)> = vec![
            (control::SUBSCRIPTION, subscription.id.clone()),
            (control::LAST_ERROR, reason.chars().take(512).collect()),
        ];
        if let Some(status) = status {
            control.push((control::LAST_STATUS, status.to_string()));
        }
        let topic = match next_delay.and_then(|d| tier_for(&self.tiers, d).map(|t| (t, d))) {
            Some((tier, delay)) => {
                control.push((control::ATTEMPT, (attempt + 1).to_string()));
                self.metrics.parked(&subscription.id);
                control.push((control::NOT_BEFORE, (now_ms() + millis(delay)).to_string()));
                tier.topic.as_str()
            }
            None => {
                control.push((control::ATTEMPT, attempt.to_string()));
                let why = if refused {
                    "target_refused"
                } else {
                    "attempts_exhausted"
                };
                control.push((control::DEAD_REASON, why.to_owned()));
                control.push((control::DEAD_AT, now_ms().to_string()));
                self.metrics.dead_letter(&subscription.id, why);
                tracing::warn!(subscription = %subscription.id, attempts = attempt, reason = why, "dead letter");
                self.dead_letter.as_str()
            }
        };
        self.park(message, topic, &control, cancel).await
    }

    /// Parks a delivery for `wait` without spending an attempt: `attempt` is made when it is
    /// due. Used when a subscription's queue is full (it is slow) and while its circuit is open.
    async fn postpone(
        &self,
        message: &OwnedMessage,
        subscription: &ResolvedSubscription,
        attempt: u32,
        wait: Duration,
        why: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(tier) = tier_for(&self.tiers, wait) else {
            return true;
        };
        let control = [
            (control::SUBSCRIPTION, subscription.id.clone()),
            (control::ATTEMPT, attempt.to_string()),
            (
                control::NOT_BEFORE,
                (now_ms() + millis(wait.max(tier.delay))).to_string(),
            ),
            (control::LAST_ERROR, format!("postponed: {why}")),
        ];
        self.metrics.parked(&subscription.id);
        self.park(message, &tier.topic, &control, cancel).await
    }

    /// Writes `message` with `control` headers to `topic`, trying until Kafka takes it or the
    /// worker stops: the source offset must not move past an unsettled delivery.
    async fn park(
        &self,
        message: &OwnedMessage,
        topic: &str,
        control: &[(&str, String)],
        cancel: &CancellationToken,
    ) -> bool {
        let headers = parked_headers(message, control);
        loop {
            let sent = self
                .producer
                .send_record(
                    topic,
                    message.key(),
                    message.payload().unwrap_or_default(),
                    &headers,
                )
                .await;
            match sent {
                Ok(_) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, topic, "cannot park a delivery yet; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The event as the subscribers get it, from the record's value and headers.
    fn outbound(&self, message: &OwnedMessage) -> OutboundEvent {
        let header = |name: &str| header_text(message, name);
        let source = header(headers::SOURCE).unwrap_or_default();
        let body = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let event_type = self
            .sources
            .get(&source)
            .and_then(|s| event_type(s, header_pairs(message), &body));
        OutboundEvent {
            event_id: header(headers::EVENT_ID).unwrap_or_default(),
            event_type,
            content_type: header(headers::CONTENT_TYPE),
            traceparent: header(headers::TRACEPARENT),
            hops: header(headers::HOP)
                .and_then(|h| h.parse().ok())
                .unwrap_or(0),
            source,
            body,
        }
    }
}

/// The HTTP client span of one delivery attempt, when spans are exported.
fn delivery_span(subscription: &ResolvedSubscription) -> tracing::Span {
    traces::traced(|| {
        let span = tracing::info_span!("deliver", otel.name = "POST", otel.kind = "client");
        let url = &subscription.url;
        let port = url.port_u16().unwrap_or(match url.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        traces::set_attributes(
            &span,
            &[
                ("http.request.method", "POST".into()),
                (
                    "server.address",
                    url.host().unwrap_or_default().to_owned().into(),
                ),
                ("server.port", i64::from(port).into()),
            ],
        );
        span
    })
}

fn record_delivery(span: &tracing::Span, outcome: &DeliveryOutcome) {
    let (status, error) = match outcome {
        DeliveryOutcome::Delivered { status } => (Some(*status), None),
        DeliveryOutcome::Failed {
            status: Some(s), ..
        } => (Some(*s), Some("http_status")),
        DeliveryOutcome::Failed { status: None, .. } => (None, Some("no_answer")),
        DeliveryOutcome::Refused { .. } => (None, Some("refused")),
    };
    if let Some(status) = status {
        traces::set_attributes(
            span,
            &[("http.response.status_code", i64::from(status).into())],
        );
    }
    if let Some(error) = error {
        traces::set_error(span, error);
    }
}

fn log_outcome(
    subscription: &ResolvedSubscription,
    event: &OutboundEvent,
    attempt: u32,
    outcome: &DeliveryOutcome,
) {
    match outcome {
        DeliveryOutcome::Delivered { status } => {
            tracing::debug!(subscription = %subscription.id, event_id = %event.event_id, source = %event.source, attempt, status, "delivered")
        }
        DeliveryOutcome::Failed { reason, .. } | DeliveryOutcome::Refused { reason } => {
            tracing::info!(subscription = %subscription.id, event_id = %event.event_id, source = %event.source, attempt, reason = %reason, "delivery failed")
        }
    }
}

/// The original record's headers without earlier control headers, then the new ones.
fn parked_headers(message: &OwnedMessage, control: &[(&str, String)]) -> Vec<(String, Vec<u8>)> {
    with_control(header_pairs(message), control)
}

/// A record's headers as (name, value) pairs; a header without a value reads as empty.
fn header_pairs(message: &OwnedMessage) -> Vec<(&str, &[u8])> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key, h.value.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parked record's headers: the original ones without earlier control headers, then the
/// new control headers. Used for retries, dead letters, redrives and replays alike.
pub(crate) fn with_control<'a>(
    original: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    control: &[(&str, String)],
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .into_iter()
        .filter(|(k, _)| !control::ALL.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect();
    out.extend(
        control
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone().into_bytes())),
    );
    out
}

fn header_text(message: &OwnedMessage, name: &str) -> Option<String> {
    let hs = message.headers()?;
    hs.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// The event type of a record of `source`, read as the source's `event_type` says (from the
/// record's headers or its body); `None` when the source has none or the record lacks it.
pub fn event_type<'a>(
    source: &ResolvedSource,
    record_headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Option<String> {
    let key = source.event_type.as_ref()?;
    let mut map = HeaderMap::new();
    for (name, value) in record_headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    key.extract(&KeyInput::new(&map, body, None)).ok().flatten()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
