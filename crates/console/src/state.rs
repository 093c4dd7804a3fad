//! What every handler works with, built once at start: the config, the index's pool, the
//! callers, the subscriptions as the registry has them, a Kafka producer, and readers of
//! single records.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spillway_config::Config;
use spillway_index::{Pool, Progress};
use spillway_kafka::fetch::RecordFetcher;
use spillway_kafka::reader::ReadRecord;
use spillway_kafka::{ClientError, Connection, EventProducer};
use spillway_worker::registry::{LiveSubscriptions, Registry};

use crate::auth::Auth;
use crate::problem::ApiError;

/// How long reading one record back from Kafka may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The state shared by every handler.
pub type Shared = Arc<AppState>;

#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub auth: Auth,
    /// The config file's subscriptions and the registry's, followed.
    pub live: Arc<LiveSubscriptions>,
    pub registry: Registry,
    pub producer: EventProducer,
    pub progress: Progress,
    /// Where the health figures of the ingress and workers are read (`console.prometheus_url`).
    pub prometheus: Option<crate::prometheus::Prometheus>,
    /// Readers of single records not in use; one per request at a time.
    fetchers: Mutex<Vec<RecordFetcher>>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        pool: Pool,
        auth: Auth,
        live: Arc<LiveSubscriptions>,
        producer: EventProducer,
        progress: Progress,
    ) -> Self {
        Self {
            registry: Registry::following(live.clone(), producer.clone()),
            config,
            pool,
            auth,
            live,
            producer,
            progress,
            prometheus: None,
            fetchers: Mutex::default(),
        }
    }

    /// The records at `places` (`(topic, partition, offset)`), None where Kafka no longer
    /// holds one. Read off the runtime's threads.
    pub async fn fetch(
        self: &Arc<Self>,
        places: Vec<(String, i32, i64)>,
    ) -> Result<Vec<Option<ReadRecord>>, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let fetcher = state.fetcher()?;
            let read = places
                .iter()
                .map(|(topic, partition, offset)| fetcher.fetch(topic, *partition, *offset))
                .collect::<Result<Vec<_>, ClientError>>();
            if read.is_ok() {
                state.lock_fetchers().push(fetcher);
            }
            read
        })
        .await
        .map_err(|e| ApiError::internal("a Kafka read stopped", &e))?
        .map_err(|e| ApiError::kafka(&e))
    }

    fn fetcher(&self) -> Result<RecordFetcher, ClientError> {
        match self.lock_fetchers().pop() {
            Some(f) => Ok(f),
            None => RecordFetcher::new(&Connection::from(&self.config.kafka), FETCH_TIMEOUT),
        }
    }

    fn lock_fetchers(&self) -> std::sync::MutexGuard<'_, Vec<RecordFetcher>> {
        self.fetchers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
