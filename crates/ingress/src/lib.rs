//! The webhook ingress: `POST /v1/hooks/{source}` verified, deduplicated, made durable in
//! Kafka and answered 202 only once Kafka acknowledged it.
//!
//! [`Ingress::from_config`] assembles a process from the config; [`Ingress::run`] serves the
//! webhook and admin listeners (injected, so tests bind port 0) until shutdown, then drains:
//! readiness turns false, new connections stop, in-flight requests finish within the drain
//! timeout, the durable sections settle, and the producer is flushed.

mod admission;
mod answer;
mod batch;
mod batch_durable;
mod blocklist;
mod budget;
mod claims;
mod client_addr;
mod commits;
mod detach;
mod drain;
mod durable;
mod encoding;
mod handshake;
mod intake;
mod keys;
mod limit;
mod offload;
mod pipeline;
mod read;
mod redis_tls;
mod reload;
mod route;
mod schema;
mod scrape;
mod server;
mod signed_url;
mod sns;
mod sns_fetch;
mod spans;
mod stages;
mod store;
mod tls;
mod verify;

/// Creates a source's series at 0: its outcomes, its secrets' and, for a batch source, its
/// records'.
pub(crate) fn init_source_metrics(metrics: &IngressMetrics, source: &ResolvedSource) {
    metrics.init_source(&source.name, &source.topic, ProduceError::CODES);
    for key_id in source.verifier.key_ids() {
        metrics.init_key(&source.name, key_id);
    }
    if source.batch.is_some() {
        metrics.init_batch_source(&source.name);
    }
}

#[cfg(test)]
mod tests;

pub use answer::CATALOG as ANSWERS;
pub use pipeline::{BodyError, Pipeline};
pub use server::{serve, ServerSettings};
pub use tls::{certificate_subject, load_tls, ClientSubject, TlsError};

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spillway_config::{Config, FailMode, ResolvedSource, TopicCheck};
use spillway_core::key::KeySource;
use spillway_kafka::durability::TopicRules;
use spillway_kafka::{EventProducer, ProduceError, ProducerSettings};
use spillway_store::{RedisSettings, RedisStore, SharedStore};
use spillway_telemetry::{serve_admin, Encode, IngressMetrics, Readiness, ReadinessFuture};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("config: {}", spillway_config::describe(.0))]
    Config(Vec<spillway_config::FieldError>),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Kafka(#[from] spillway_kafka::ClientError),
    #[error(transparent)]
    Store(#[from] spillway_store::StoreError),
    #[error("metrics registry: {0}")]
    Metrics(#[source] prometheus::Error),
    #[error(transparent)]
    Topics(#[from] spillway_kafka::durability::UnfitTopics),
    #[error("ingress.sns: {0}")]
    Sns(#[from] spillway_egress::TlsError),
    #[error(transparent)]
    Objects(#[from] spillway_objects::ObjectsError),
}

/// An assembled ingress process.
#[derive(Debug)]
pub struct Ingress {
    pipeline: Arc<Pipeline>,
    readiness: Arc<IngressReadiness>,
    settings: ServerSettings,
    delivery_timeout: Duration,
    /// Where the topics' size limits are asked at start.
    kafka: spillway_kafka::Connection,
    /// How the source topics are checked at start (`kafka.topic_check`).
    topic_rules: TopicRules,
    /// Where the sources are reloaded from, if anywhere.
    reload: Option<reload::Watch>,
}

// === impl Ingress ===

impl Ingress {
    pub fn from_config(config: &Config) -> Result<Self, IngressError> {
        let sources = config.resolve_sources().map_err(IngressError::Config)?;
        let producer = EventProducer::new(&ProducerSettings::from(&config.kafka))?;
        let dedupes = sources.iter().any(|s| s.dedupe != KeySource::None);
        let limits = sources.iter().any(|s| s.rate_limit.is_some());
        let blocks =
            config.ingress.block_failing_clients.is_some() && !config.redis.nodes.is_empty();
        let store = if dedupes || limits || blocks {
            Some(SharedStore::Redis(RedisStore::new(RedisSettings {
                nodes: config.redis.nodes.clone(),
                tls: redis_tls::read_redis_tls(&config.redis.tls)?,
                command_timeout: config.redis.command_timeout,
                claim_ttl: config.redis.claim_ttl,
                window: config.redis.window,
            })?))
        } else {
            None
        };
        let redis_required = redis_gates_readiness(&sources);
        let metrics = IngressMetrics::new().map_err(IngressError::Metrics)?;
        for source in &sources {
            init_source_metrics(&metrics, source);
        }
        let tls = match &config.ingress.tls {
            Some(t) => Some(load_tls(
                &t.cert_file,
                &t.key_file,
                t.client_ca_file.as_deref(),
            )?),
            None => None,
        };
        let sns = sns_fetch::SnsFetcher::new(&config.ingress.sns)?;
        let objects = config
            .objects
            .as_ref()
            .map(spillway_objects::Objects::open)
            .transpose()?;
        let pipeline = Arc::new(
            Pipeline::new(
                config,
                sources,
                producer.clone(),
                store.clone(),
                metrics,
                sns,
            )
            .with_objects(objects),
        );
        let readiness = Arc::new(IngressReadiness {
            draining: AtomicBool::new(false),
            producer,
            pipeline: pipeline.clone(),
            store: store.filter(|_| redis_required),
            health_key: keys::Keys::new(&config.redis.key_prefix).health(),
        });
        Ok(Self {
            pipeline,
            readiness,
            settings: ServerSettings {
                max_header_bytes: config.ingress.max_header_bytes,
                max_headers: config.ingress.max_headers,
                http2_max_concurrent_streams: config.ingress.http2_max_concurrent_streams,
                http2_window_bytes: config.ingress.http2_window_bytes,
                http2_max_pending_accept_reset_streams: config
                    .ingress
                    .http2_max_pending_accept_reset_streams,
                http2_max_local_error_reset_streams: config
                    .ingress
                    .http2_max_local_error_reset_streams,
                header_read_timeout: config.ingress.header_read_timeout,
                drain_timeout: config.ingress.drain_timeout,
                max_connections: config.ingress.max_connections,
                max_connections_per_peer: config.ingress.max_connections_per_peer,
                max_connection_age: config.ingress.max_connection_age,
                http2_keep_alive: config.ingress.http2_keep_alive,
                trusted_proxies: config.ingress.trusted_proxies.clone(),
                tls,
            },
            delivery_timeout: config.kafka.delivery_timeout,
            kafka: spillway_kafka::Connection::from(&config.kafka),
            topic_rules: TopicRules {
                check: config.kafka.topic_check,
                single_replica: config.kafka.single_replica,
                must_exist: false,
            },
            reload: None,
        })
    }

    /// With `kafka.topic_check: refuse`, an error when a source topic cannot honour acks=all
    /// (H-5): call it before serving. Under `warn` the check runs once serving (see
    /// [`Self::run`]), so a slow cluster does not hold up the start.
    pub async fn check_topics(&self) -> Result<(), IngressError> {
        if self.topic_rules.check != TopicCheck::Refuse {
            return Ok(());
        }
        spillway_kafka::durability::check_topics(
            &self.kafka,
            &self.source_topics(),
            self.topic_rules,
            TOPIC_CHECK_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Every topic the sources write to: theirs, and their quarantines (a quarantined
    /// record's 202 rests on its topic as much as any other's).
    fn source_topics(&self) -> Vec<String> {
        self.pipeline
            .sources
            .load()
            .values()
            .flat_map(|s| {
                let quarantine = s.schema.as_ref().map(|q| q.quarantine_topic.clone());
                std::iter::once(s.topic.clone()).chain(quarantine)
            })
            .collect()
    }

    /// Reloads the sources from `path` (the file this process was started with) when it or
    /// a source's secret file changes, checked every `ingress.reload_interval`, and on SIGHUP.
    pub async fn reload_from(mut self, path: std::path::PathBuf, config: &Config) -> Self {
        self.reload = Some(reload::Watch::new(path, config).await);
        self
    }

    pub fn metrics(&self) -> IngressMetrics {
        IngressMetrics::clone(&self.pipeline.metrics)
    }

    /// Serves until `shutdown` resolves, then drains. Returns once every accepted event's fate
    /// is settled and the producer is flushed.
    pub async fn run(
        mut self,
        listener: TcpListener,
        admin: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(serve_admin(
            admin,
            Arc::new(scrape::Scrape {
                metrics: Arc::clone(&self.pipeline.metrics),
                store: self.pipeline.store.clone(),
            }) as Arc<dyn Encode>,
            self.readiness.clone(),
            None,
            async move {
                let _ = admin_stop_rx.await;
            },
        ));
        let cluster_task = tokio::spawn(learn_cluster_id(self.pipeline.clone()));
        let limits_task = tokio::spawn(check_topic_limits(
            self.kafka.clone(),
            self.pipeline.sources.load().values().cloned().collect(),
        ));
        let durability_task = tokio::spawn({
            let (kafka, topics, rules) =
                (self.kafka.clone(), self.source_topics(), self.topic_rules);
            async move {
                if rules.check == TopicCheck::Warn {
                    // Warnings only: the result says nothing more.
                    let _ = spillway_kafka::durability::check_topics(
                        &kafka,
                        &topics,
                        rules,
                        TOPIC_CHECK_TIMEOUT,
                    )
                    .await;
                }
            }
        });
        let reload_task = self
            .reload
            .take()
            .map(|watch| tokio::spawn(watch.run(self.pipeline.clone(), self.kafka.clone())));
        let readiness = self.readiness.clone();
        let draining = async move {
            shutdown.await;
            readiness.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutdown: readiness off, draining");
        };
        serve(
            listener,
            self.pipeline.clone(),
            self.settings.clone(),
            draining,
        )
        .await;

        // Requests whose connections were cut still settle their claim and record, the
        // queued dedupe commits are sent, then the producer is flushed: all within one budget,
        // delivery_timeout + 5 s after the drain, which is what the chart's grace period allows
        // for (a durable section is bounded by the delivery timeout and a few Redis round
        // trips; once they are settled the flush has little left to wait for). The commits and
        // the flush keep a share of it however long the sections take.
        let budget = self.delivery_timeout + SHUTDOWN_MARGIN;
        let deadline = tokio::time::Instant::now() + budget;
        let commits_by = deadline - FLUSH_AT_LEAST;
        let sections_by = commits_by - COMMITS_AT_LEAST;
        self.pipeline.settle(sections_by, commits_by).await;
        let producer = self.pipeline.producer.clone();
        let flush_timeout = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(FLUSH_AT_LEAST);
        match tokio::task::spawn_blocking(move || producer.flush(flush_timeout)).await {
            Ok(Ok(())) => tracing::info!("producer flushed"),
            Ok(Err(e)) => tracing::error!(error = %e, "producer flush failed"),
            Err(e) => tracing::error!(error = %e, "producer flush task failed"),
        }
        cluster_task.abort();
        limits_task.abort();
        if let Some(task) = reload_task {
            task.abort();
        }
        durability_task.abort();
        let _ = admin_stop_tx.send(());
        let _ = admin_task.await;
    }
}

/// Warns about every source whose largest body (with its record's headers) is over its topic's
/// `max.message.bytes`, where the broker tells it: such bodies would be answered 413
/// `record_too_large`. The producer's own `message.max.bytes` is checked with the config.
pub(crate) async fn check_topic_limits(
    kafka: spillway_kafka::Connection,
    sources: Vec<Arc<ResolvedSource>>,
) {
    let topics: Vec<String> = sources.iter().map(|s| s.topic.clone()).collect();
    let limits = match spillway_kafka::admin::topics_max_message_bytes(
        &kafka,
        &topics,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(limits) => limits,
        Err(e) => {
            tracing::info!(error = %e, "cannot read the source topics' max.message.bytes");
            return;
        }
    };
    for source in &sources {
        // A body over `inline_max_bytes` travels as a reference, not in the record.
        let inline = source
            .inline_max_bytes
            .map_or(source.max_body_bytes, |i| i.min(source.max_body_bytes));
        let largest = inline + spillway_config::RECORD_OVERHEAD_BYTES;
        match limits.get(&source.topic).unwrap_or(&Ok(None)) {
            Ok(Some(limit)) if largest > *limit => tracing::warn!(
                source = %source.name,
                topic = %source.topic,
                largest_inline_body_bytes = inline,
                topic_max_message_bytes = *limit,
                "the topic takes smaller records than this source's largest body with its headers: such bodies will be answered 413 record_too_large; raise the topic's max.message.bytes or lower max_body_bytes"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::info!(topic = %source.topic, error = %e, "cannot read the topic's max.message.bytes");
            }
        }
    }
}

/// How long the start-up check of the source topics waits for the cluster.
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the ingress's shutdown may take after its drain, beyond the delivery timeout.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// The shares of the shutdown budget kept for the queued dedupe commits (a round trip or two)
/// and for the producer's flush, however long the durable sections take.
const COMMITS_AT_LEAST: Duration = Duration::from_secs(1);
const FLUSH_AT_LEAST: Duration = Duration::from_secs(1);

/// Whether Redis counts for readiness: only if every deduplicating source fails closed. While
/// one fails open, taking pods out of the load balancer over a Redis outage would take that
/// source down with the rest; a fail-closed source's requests are answered 503
/// `dedupe_unavailable` one by one, which is all a Redis outage should cost.
fn redis_gates_readiness(sources: &[ResolvedSource]) -> bool {
    let mut deduplicating = sources.iter().filter(|s| s.dedupe != KeySource::None);
    deduplicating.clone().next().is_some()
        && deduplicating.all(|s| s.on_redis_unavailable == FailMode::FailClosed)
}

/// Asks the cluster for its id until it answers (it names the dedupe keys, see [`keys`]);
/// until then deduplicating sources answer 503 and the pod is not ready.
async fn learn_cluster_id(pipeline: Arc<Pipeline>) {
    while pipeline.cluster_id().await.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Ready while not draining, Kafka answers metadata requests and its cluster id is known,
/// and (when every deduplicating source fails closed) Redis runs a claim-shaped command.
#[derive(Debug)]
struct IngressReadiness {
    draining: AtomicBool,
    producer: EventProducer,
    /// The sources as they are now (a reload swaps them): the check asks for the metadata
    /// of the first of their topics by name, and the cluster id is learnt here.
    pipeline: Arc<Pipeline>,
    /// Checked only when every deduplicating source fails closed.
    store: Option<SharedStore>,
    /// The key the Redis check writes: `SET NX PX GET` fails on a Redis older than 7, where
    /// no claim could succeed, which a PING would not show.
    health_key: String,
}

impl Readiness for IngressReadiness {
    fn check(&self) -> ReadinessFuture<'_> {
        Box::pin(async move {
            if self.draining.load(Ordering::SeqCst) {
                return Err("draining".into());
            }
            // A topic of a source configured now: the probe asks for nothing this process
            // would not write to (a metadata request may create a missing topic on a broker
            // that allows it, as a produce would), and never for a removed source's topic.
            let topic = self
                .pipeline
                .sources
                .load()
                .values()
                .map(|s| s.topic.clone())
                .min();
            let (producer, topic) = (self.producer.clone(), topic.unwrap_or_default());
            tokio::task::spawn_blocking(move || {
                producer.metadata_ok(&topic, Duration::from_secs(2))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            if self.pipeline.cluster.get().is_none() {
                return Err("kafka cluster id not known yet".into());
            }
            if let Some(store) = &self.store {
                store
                    .health(&self.health_key)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}
