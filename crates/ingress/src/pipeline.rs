//! What every request of a process shares: the sources, the producer, the shared store, the
//! limits. The stages that use it are in [`crate::stages`] and the modules it names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spillway_config::{Config, ResolvedSource};
use spillway_kafka::EventProducer;
use spillway_store::SharedStore;
use spillway_telemetry::IngressMetrics;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::blocklist::Blocklist;
use crate::budget::{BodyBudget, ClientPlaces};
use crate::commits::Commits;
use crate::keys::Keys;
use crate::limit::InFlightLimit;
use crate::sns_fetch::SnsFetcher;

/// The configured sources by name: the `{source}` of `/v1/hooks/{source}`.
pub(crate) type Sources = HashMap<String, Arc<ResolvedSource>>;

/// The error of a request body that [`Pipeline::handle`] can read: hyper's, or a test's.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request needs, shared by all connections of a process.
#[derive(Debug)]
pub struct Pipeline {
    /// The configured sources, swapped whole by a reload (see [`crate::reload`]): a request
    /// keeps the source it was routed to.
    pub(crate) sources: arc_swap::ArcSwap<Sources>,
    /// Where accepted events are written; a 202 waits for its acknowledgement.
    pub(crate) producer: EventProducer,
    /// Dedupe claims, rate-limit and failure counters; None when no source needs Redis.
    pub(crate) store: Option<SharedStore>,
    /// The names of the keys this process writes to the shared store.
    pub(crate) keys: Keys,
    /// The id of the Kafka cluster events go to, in every dedupe key; learnt once the
    /// producer reaches the cluster (see [`Pipeline::cluster_id`]).
    pub(crate) cluster: Arc<OnceCell<String>>,
    /// Requests past their body read at once: at most `ingress.max_in_flight`, fewer while
    /// Kafka and Redis answer slower than `ingress.latency_target`; past it 503 `overloaded`.
    pub(crate) limit: InFlightLimit,
    /// Bytes of bodies held at once (`ingress.max_body_memory`); past it 503 `memory_full`.
    pub(crate) budget: BodyBudget,
    /// Requests open per client (`ingress.max_requests_per_client`).
    pub(crate) client_places: ClientPlaces,
    /// After `body_rate_grace`, bytes per second a body must keep arriving at (0: off).
    pub(crate) min_body_rate: u64,
    pub(crate) body_rate_grace: Duration,
    /// Bytes of a body refused for its size read before the 413 (see [`crate::drain`]).
    pub(crate) refused_body_drain_bytes: u64,
    /// Shared behind one `Arc`: a claim holds the handles until its commit, and cloning two
    /// dozen of them per request was two dozen contended reference counts.
    pub(crate) metrics: Arc<IngressMetrics>,
    /// How long a body may take to arrive once the headers are in.
    pub(crate) body_read_timeout: Duration,
    /// The pause a 503 asks the sender to wait (Retry-After).
    pub(crate) retry_after: Duration,
    /// Deliveries by Spillway workers an event may have been through (loop protection).
    pub(crate) max_hops: u32,
    /// Whether each request is logged on the `spillway::access` target.
    pub(crate) access_log: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Clients refused for failing verification too often; None when off or without Redis.
    pub(crate) blocklist: Option<Blocklist>,
    /// The durable sections (claim, produce, then commit queued or release) in progress;
    /// drained on shutdown.
    pub(crate) tasks: TaskTracker,
    /// The commits of accepted events' claims, sent after the 202 (see [`crate::commits`]).
    pub(crate) commits: Commits,
    /// SNS signing certificates and subscription confirmations.
    pub(crate) sns: SnsFetcher,
    /// Where bodies over a source's `inline_max_bytes` go; None without `objects`.
    pub(crate) objects: Option<spillway_objects::Objects>,
}

// === impl Pipeline ===

impl Pipeline {
    /// The pipeline of `config`'s ingress serving `sources`, writing to `producer` and sharing
    /// state through `store` (None when no source needs Redis).
    pub(crate) fn new(
        config: &Config,
        sources: Vec<ResolvedSource>,
        producer: EventProducer,
        store: Option<SharedStore>,
        metrics: IngressMetrics,
        sns: SnsFetcher,
    ) -> Self {
        let blocklist =
            config
                .ingress
                .block_failing_clients
                .zip(store.clone())
                .map(|(block, store)| {
                    Blocklist::new(
                        block,
                        store,
                        Keys::new(&config.redis.key_prefix),
                        config.ingress.block_check_interval,
                        config.ingress.trusted_proxies.clone(),
                    )
                });
        // Learnt once the process runs (see `Ingress::run`); unit tests set it.
        let cluster = Arc::new(OnceCell::new());
        let client_places = ClientPlaces::new(
            config.ingress.max_requests_per_client,
            client_share(config, &sources),
            &config.ingress.trusted_proxies,
        );
        Self {
            client_places,
            sources: arc_swap::ArcSwap::from_pointee(by_name(sources)),
            producer,
            store,
            keys: Keys::new(&config.redis.key_prefix),
            cluster,
            limit: InFlightLimit::new(
                config.ingress.max_in_flight,
                config.ingress.latency_target,
                metrics.in_flight_limit().clone(),
            ),
            budget: BodyBudget::new(config.ingress.max_body_memory),
            min_body_rate: config.ingress.min_body_rate,
            body_rate_grace: config.ingress.body_rate_grace,
            refused_body_drain_bytes: config.ingress.refused_body_drain_bytes,
            metrics: Arc::new(metrics),
            body_read_timeout: config.ingress.body_read_timeout,
            retry_after: config.ingress.retry_after,
            max_hops: config.ingress.max_hops,
            access_log: config.telemetry.access_log,
            trusted_proxies: config.ingress.trusted_proxies.clone(),
            blocklist,
            tasks: TaskTracker::new(),
            commits: Commits::new(config.redis.commit_delay),
            sns,
            objects: None,
        }
    }

    /// The pipeline storing large bodies in `objects`.
    pub(crate) fn with_objects(mut self, objects: Option<spillway_objects::Objects>) -> Self {
        self.objects = objects;
        self
    }
}

/// `sources` keyed by name.
pub(crate) fn by_name(sources: Vec<ResolvedSource>) -> Sources {
    sources
        .into_iter()
        .map(|s| (s.name.clone(), Arc::new(s)))
        .collect()
}

/// The body bytes one client may hold at once: an eighth of the budget, so that a few clients
/// cannot fill it, or the largest body a source takes (or one upload's parts, for a body
/// streamed to object storage) if that is more.
fn client_share(config: &Config, sources: &[ResolvedSource]) -> usize {
    let largest = sources.iter().map(|s| s.max_body_bytes).max().unwrap_or(0);
    let upload = config
        .objects
        .as_ref()
        .map_or(0, spillway_objects::ObjectsConfig::upload_bytes);
    let share = (config.ingress.max_body_memory / 8)
        .max(largest)
        .max(upload);
    usize::try_from(share).unwrap_or(usize::MAX)
}

/// How long a request waits for the cluster id when the process does not know it yet (it has
/// just started); then it is answered 503 `kafka_unavailable`.
const CLUSTER_ID_WAIT: Duration = Duration::from_secs(2);

impl Pipeline {
    /// Shutdown, once no connection is left: waits for the durable sections still running
    /// (their clients gone) until `sections_by`, then sends the commits they and earlier
    /// requests queued, until `commits_by`. The queued commits go out even when some section
    /// was not waited for: each one lost is a duplicate once its sender retries after
    /// `claim_ttl`.
    pub(crate) async fn settle(&self, sections_by: Instant, commits_by: Instant) {
        self.tasks.close();
        if tokio::time::timeout_at(sections_by, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!("durable sections still running at shutdown");
        }
        if tokio::time::timeout_at(commits_by, self.commits.finish())
            .await
            .is_err()
        {
            tracing::error!(
                "dedupe commits still running at shutdown; their keys stay claimed until claim_ttl"
            );
        }
    }

    /// The Kafka cluster's id, asked once (callers that come meanwhile wait for the same
    /// answer, up to [`CLUSTER_ID_WAIT`]); None while the cluster does not answer.
    pub(crate) async fn cluster_id(&self) -> Option<&str> {
        if let Some(id) = self.cluster.get() {
            return Some(id);
        }
        let producer = self.producer.clone();
        let ask = async move {
            let asked = tokio::task::spawn_blocking(move || producer.cluster_id(CLUSTER_ID_WAIT));
            match asked.await {
                Ok(Some(id)) => {
                    tracing::info!(cluster_id = %id, "kafka cluster id learnt");
                    Ok(id)
                }
                _ => Err(()),
            }
        };
        let learnt = tokio::time::timeout(CLUSTER_ID_WAIT, self.cluster.get_or_try_init(|| ask));
        learnt.await.ok()?.ok().map(String::as_str)
    }
}
