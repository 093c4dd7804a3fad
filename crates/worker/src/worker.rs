//! A worker process assembled from its config and run: a consumer for the source topics (first
//! attempts) and one for the retry tiers, the registry it follows, its admin listener
//! (readiness, metrics, the subscription API) and its consumer-lag gauge.
//!
//! At-least-once: a record's offset is stored only after the record is fully handled: each
//! matching subscription got it, or the delivery was parked in a retry tier or the dead-letter
//! topic with Kafka's acknowledgement (see [`crate::ledger`]). The stored offsets are committed
//! every second, when partitions are revoked and on shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use spillway_config::{Config, CredentialConfig, FieldError};
use spillway_kafka::{Connection, EventProducer, ProducerSettings};
use spillway_telemetry::{serve_admin, Readiness, ReadinessFuture, WorkerMetrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::SubscriptionApi;
use crate::attempts::AttemptLog;
use crate::breaker::Breakers;
use crate::delivery::Deliverer;
use crate::handling::Handling;
use crate::lanes::{
    consume, DrainingContext, LaneLimits, Lanes, RecordMemory, Role, WorkerConsumer,
};
use crate::registry::{Follower, LiveSubscriptions, Registry};
use crate::reload::SourceReload;
use crate::topics::{
    attempts_topic, dead_letter_topic, registry_topic, retry_tier_pattern, retry_tiers,
};
use crate::RetryPolicy;
use spillway_egress::AddressPolicy;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(#[from] ConfigProblem),
    #[error(transparent)]
    Kafka(#[from] spillway_kafka::ClientError),
    #[error("kafka consumer: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Setup(#[from] crate::delivery::SetupError),
    #[error("kafka did not take the record: {0}")]
    Produce(#[from] spillway_kafka::ProduceError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Topics(#[from] spillway_kafka::durability::UnfitTopics),
    #[error(transparent)]
    Objects(#[from] spillway_objects::ObjectsError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a config cannot run a worker, a replay or a redrive.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// Sources or subscriptions that do not resolve.
    #[error("{}", spillway_config::describe(.0))]
    Invalid(Vec<FieldError>),
    /// The API token cannot be read.
    #[error("worker.api_token: {0}")]
    ApiToken(#[source] spillway_config::ApiTokenError),
    #[error("metrics registry: {0}")]
    Metrics(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no source named {0:?}")]
    UnknownSource(String),
    #[error("no subscription named {0:?}")]
    UnknownSubscription(String),
    #[error("source {0:?} has no schema, and so no quarantine")]
    NoQuarantine(String),
    #[error("no `objects:` is configured: no body is in object storage")]
    NoObjects,
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
    connection: Connection,
    /// Where the sources are reloaded from, if anywhere.
    reload: Option<SourceReload>,
}

// === impl Worker ===

impl Worker {
    pub fn from_config(config: &Config) -> Result<Self, WorkerError> {
        let sources = config
            .resolve_source_routes()
            .map_err(ConfigProblem::Invalid)?;
        let shared = Arc::new(config.clone());
        let subscriptions = Arc::new(LiveSubscriptions::new(
            shared.clone(),
            config
                .resolve_subscriptions()
                .map_err(ConfigProblem::Invalid)?,
        ));
        let api_token = config
            .worker
            .api_token
            .as_ref()
            .map(CredentialConfig::read_api_token)
            .transpose()
            .map_err(ConfigProblem::ApiToken)?;
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
        prefetch_within(&mut consumer_config, config.worker.prefetch_bytes());
        let objects = config
            .objects
            .as_ref()
            .map(spillway_objects::Objects::open)
            .transpose()?;
        let metrics = WorkerMetrics::new().map_err(|e| ConfigProblem::Metrics(Box::new(e)))?;
        Ok(Self {
            config: shared,
            api_token,
            handling: Arc::new(Handling {
                sources: arc_swap::ArcSwap::from_pointee(
                    sources
                        .iter()
                        .map(|s| (s.name.clone(), s.clone()))
                        .collect(),
                ),
                subscriptions,
                limiters: std::sync::Mutex::default(),
                deliverer: Deliverer::new(
                    AddressPolicy::new(config.worker.allow_cidrs.clone()),
                    &Deliverer::roots(config.worker.extra_roots.as_deref()),
                )?
                .with_objects(objects),
                policy: RetryPolicy::from(&config.worker),
                tiers: retry_tiers(config),
                dead_letter: dead_letter_topic(config),
                attempts: AttemptLog::new(
                    config
                        .worker
                        .record_attempts
                        .then(|| attempts_topic(config)),
                    producer.clone(),
                    metrics.clone(),
                ),
                producer,
                breakers: Breakers::new(
                    config.worker.breaker_failures,
                    config.worker.breaker_cooldown,
                ),
                metrics,
                first_attempt_budget: config.worker.first_attempt_budget,
                max_postponement: config.worker.max_postponement,
            }),
            consumer_config,
            group_id: config.worker.group_id.clone(),
            source_topics: config.source_topics(),
            backlog: config.worker.partition_backlog.max(1),
            limits: LaneLimits {
                subscription_queue: config.worker.subscription_queue.max(1),
                delivery_concurrency: config.worker.delivery_concurrency.max(1),
                slow_after: config.worker.slow_after,
                retry_concurrency: config.worker.retry_concurrency.max(1),
            },
            flush_timeout: config.kafka.delivery_timeout,
            drain_timeout: config.worker.drain_timeout,
            connection: Connection::from(&config.kafka),
            reload: None,
        })
    }

    /// Reloads the sources from `path` (the file `config` was read from) when it changes,
    /// checked every `worker.reload_interval`, and on SIGHUP: a new source's topic is
    /// consumed without a restart.
    pub async fn reload_from(mut self, path: std::path::PathBuf, config: &Config) -> Self {
        self.reload = Some(SourceReload::new(path, config).await);
        self
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
        mut self,
        admin: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        let cancel = CancellationToken::new();
        // The registry is read to its end before any record is handled: a record handled
        // before its subscriptions are known would be settled without reaching them.
        let mut follower = Follower::start(&self.config).await?;
        self.handling.subscriptions.catch_up(&mut follower).await?;
        // Before anything is spawned: a refusal leaves nothing running behind it.
        self.check_topics().await?;
        let registry_task = tokio::spawn(
            self.handling
                .subscriptions
                .clone()
                .follow(follower, cancel.clone()),
        );
        let (source, source_lanes) = self.consumer(&self.group_id, &self.source_topics)?;
        let reload_task = self.reload.take().map(|reload| {
            tokio::spawn(reload.run(
                self.handling.clone(),
                source.clone(),
                self.source_topics.iter().cloned().collect(),
                cancel.clone(),
            ))
        });
        // Every tier topic of the prefix, not only the current policy's: records parked in the
        // tiers of an earlier policy still drain after `retry_initial` or `retry_max_delay`
        // changed (M-6).
        let (retry, retry_lanes) = self.consumer(
            &format!("{}.retry", self.group_id),
            &[retry_tier_pattern(&self.config)],
        )?;
        let readiness = Arc::new(WorkerReadiness {
            producer: self.handling.producer.clone(),
            probe_topic: dead_letter_topic(&self.config),
            cancel: cancel.clone(),
        });
        let admin_task = tokio::spawn(serve_admin(
            admin,
            Arc::new(self.handling.metrics.clone()),
            readiness,
            self.api_token.clone().map(|token| {
                Arc::new(SubscriptionApi::new(
                    Registry::following(
                        self.handling.subscriptions.clone(),
                        self.handling.producer.clone(),
                    ),
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
            self.handling.clone(),
            cancel.clone(),
        ));
        // One budget for both consumers' lanes.
        let memory = RecordMemory::new(self.config.worker.max_record_memory);
        let tasks = [
            tokio::spawn(consume(
                source,
                source_lanes,
                Role::Source,
                self.handling.clone(),
                cancel.clone(),
                self.backlog,
                self.limits,
                memory.clone(),
            )),
            tokio::spawn(consume(
                retry,
                retry_lanes,
                Role::Retry,
                self.handling.clone(),
                cancel.clone(),
                self.backlog,
                self.limits,
                memory,
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
        if let Some(task) = reload_task {
            let _ = task.await;
        }
        let _ = admin_task.await;
        let _ = registry_task.await;
        let producer = self.handling.producer.clone();
        let timeout = self.flush_timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Refuses to start when a topic the worker writes (its retry tiers, the dead-letter topic,
    /// the registry) is missing, or cannot honour acks=all under `kafka.topic_check: refuse`.
    async fn check_topics(&self) -> Result<(), WorkerError> {
        let mut written: Vec<String> = self
            .handling
            .tiers
            .iter()
            .map(|t| t.topic.clone())
            .collect();
        written.push(self.handling.dead_letter.clone());
        written.push(registry_topic(&self.config));
        let rules = spillway_kafka::durability::TopicRules {
            check: self.config.kafka.topic_check,
            single_replica: self.config.kafka.single_replica,
            must_exist: true,
        };
        spillway_kafka::durability::check_topics(
            &self.connection,
            &written,
            rules,
            Duration::from_secs(10),
        )
        .await?;
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
            .create_with_context(DrainingContext::new(lanes.clone(), self.drain_timeout))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        Ok((Arc::new(consumer), lanes))
    }
}

/// librdkafka's read-ahead bounded by the worker's prefetch (H-6; `consumer_prefetch_bytes`, or
/// sized from `memory_limit`): its own default is 64 MiB per consumer, queued before a lane
/// ever sees a record. Either setting in
/// `consumer_properties` wins. `fetch.max.bytes` is lowered with it (librdkafka raises it to
/// `message.max.bytes` where that is larger, so the largest record still fits).
fn prefetch_within(consumer: &mut ClientConfig, prefetch: u64) {
    /// librdkafka's own default for `fetch.max.bytes`, and below its `receive.message.max.bytes`.
    const FETCH_MAX: u64 = 50 << 20;
    let kbytes = (prefetch / 1024).clamp(1, 2_097_151);
    if consumer.get("queued.max.messages.kbytes").is_none() {
        consumer.set("queued.max.messages.kbytes", kbytes.to_string());
    }
    if consumer.get("fetch.max.bytes").is_none() {
        consumer.set("fetch.max.bytes", prefetch.min(FETCH_MAX).to_string());
    }
}

/// Ready while not stopping and Kafka answers metadata requests.
#[derive(Debug)]
struct WorkerReadiness {
    producer: EventProducer,
    /// The topic whose metadata the check asks for: the dead-letter topic, which the worker
    /// writes (so the probe asks for nothing it would not write to) and checks at start.
    probe_topic: String,
    cancel: CancellationToken,
}

impl Readiness for WorkerReadiness {
    fn check(&self) -> ReadinessFuture<'_> {
        Box::pin(async move {
            if self.cancel.is_cancelled() {
                return Err("stopping".into());
            }
            let (producer, topic) = (self.producer.clone(), self.probe_topic.clone());
            tokio::task::spawn_blocking(move || {
                producer.metadata_ok(&topic, Duration::from_secs(2))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        })
    }
}

/// How often consumer lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Measures, every few seconds, how far each assigned source partition's position is behind
/// its end; and drops the series of partitions no longer assigned and of subscriptions no
/// longer there, whose last values would otherwise keep alerts firing.
async fn report_lag(
    consumer: Arc<WorkerConsumer>,
    handling: Arc<Handling>,
    cancel: CancellationToken,
) {
    let mut reported: HashSet<(String, i32)> = HashSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(LAG_INTERVAL) => {}
        }
        let (measuring, metrics) = (consumer.clone(), handling.metrics.clone());
        let measured = tokio::task::spawn_blocking(move || measure_lag(&measuring, &metrics)).await;
        if let Ok(Some(now)) = measured {
            for (topic, partition) in reported.difference(&now) {
                handling.metrics.forget_lag(topic, *partition);
            }
            reported = now;
        }
        let current: HashSet<String> = handling
            .subscriptions
            .snapshot()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        for gone in handling.metrics.subscriptions_seen() {
            if !current.contains(&gone) {
                handling.metrics.forget_subscription(&gone);
                handling.breakers.forget(&gone);
            }
        }
    }
}

/// Reports the lag of every assigned source partition; returns the partitions reported, or
/// `None` when the assignment could not be read.
fn measure_lag(
    consumer: &WorkerConsumer,
    metrics: &WorkerMetrics,
) -> Option<HashSet<(String, i32)>> {
    let positions = consumer.position().ok()?;
    // A partition that fetched nothing since it was assigned has no position yet: it
    // stands at the group's committed offset.
    let committed = consumer.committed(Duration::from_secs(2)).ok();
    let mut reported = HashSet::new();
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
        reported.insert((p.topic().to_owned(), p.partition()));
    }
    Some(reported)
}
