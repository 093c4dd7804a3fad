//! The operator console (`spillway console`): a JSON API under `/v1/` over the index in
//! PostgreSQL and Kafka, with an OpenAPI document at `/v1/openapi.json`.
//!
//! - [`routes`]: the handlers, one module per resource, and the OpenAPI document;
//! - [`auth`]: bearer tokens with a role, or an authenticating proxy's identity header;
//! - [`audit`]: the log of every change; [`problem`]: the error answers and their codes;
//! - [`state`]: what the handlers share.
//!
//! Stateless: any number of console processes serve the same index; one at a time indexes
//! (see `spillway_index::indexer`).

pub mod audit;
pub mod auth;
pub mod csrf;
pub mod page;
pub mod problem;
pub mod prometheus;
pub mod reference;
pub mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use spillway_config::{Config, CredentialConfig};
use spillway_index::{Indexer, Progress};
use spillway_kafka::{EventProducer, ProducerSettings};
use spillway_worker::registry::{Follower, LiveSubscriptions, RegistryError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, TokenError};
use crate::prometheus::Prometheus;
use crate::state::{AppState, Shared};

pub use routes::ApiDoc;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console.database_url is required: the console keeps its index in PostgreSQL")]
    NoDatabase,
    #[error("cannot read console.database_url")]
    DatabaseUrl(#[source] spillway_config::CredentialError),
    #[error(transparent)]
    Pool(#[from] spillway_index::PoolSetupError),
    #[error("cannot create the index's tables")]
    Schema(#[source] spillway_index::IndexError),
    #[error("cannot set up the indexer")]
    Indexer(#[source] spillway_index::IndexError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the subscriptions cannot be read")]
    Subscriptions(#[source] RegistryError),
    #[error("the config's subscriptions are invalid: {0}")]
    InvalidSubscriptions(String),
    #[error("cannot create the Kafka producer")]
    Producer(#[source] spillway_kafka::ClientError),
    #[error(transparent)]
    Prometheus(#[from] prometheus::PrometheusError),
    #[error("the console's listener failed")]
    Serve(#[source] std::io::Error),
}

/// A console ready to serve.
#[derive(Debug)]
pub struct Console {
    state: Shared,
    follower: Follower,
    indexer: Option<Indexer>,
}

impl Console {
    /// Connects to PostgreSQL (creating the index's tables when missing), reads the tokens,
    /// and reads the subscription registry to its end.
    pub async fn start(config: Config) -> Result<Self, ConsoleError> {
        let config = Arc::new(config);
        let console = &config.console;
        let url = console
            .database_url
            .as_ref()
            .ok_or(ConsoleError::NoDatabase)?;
        let url = CredentialConfig::read(url).map_err(ConsoleError::DatabaseUrl)?;
        let pool = spillway_index::pool(&url, console.database_pool)?;
        spillway_index::ensure_schema(&pool)
            .await
            .map_err(ConsoleError::Schema)?;
        let auth = Auth::from_config(console)?;
        let from_config = config.resolve_subscriptions().map_err(|errors| {
            let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
            ConsoleError::InvalidSubscriptions(listed.join("; "))
        })?;
        let live = Arc::new(LiveSubscriptions::new(config.clone(), from_config));
        let mut follower = Follower::start(&config)
            .await
            .map_err(ConsoleError::Subscriptions)?;
        live.catch_up(&mut follower)
            .await
            .map_err(ConsoleError::Subscriptions)?;
        let producer = EventProducer::new(&ProducerSettings::from(&config.kafka))
            .map_err(ConsoleError::Producer)?;
        let progress = Progress::default();
        let indexer = if console.index.enabled {
            Some(
                Indexer::new(&config, pool.clone(), progress.clone())
                    .map_err(ConsoleError::Indexer)?,
            )
        } else {
            None
        };
        let prometheus = console
            .prometheus_url
            .as_deref()
            .map(Prometheus::new)
            .transpose()?;
        let mut state = AppState::new(config, pool, auth, live, producer, progress);
        state.prometheus = prometheus;
        let state = Arc::new(state);
        Ok(Self {
            state,
            follower,
            indexer,
        })
    }

    /// The routes, for tests that call them without a listener.
    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    /// Serves on `listener` and indexes until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        let cancel = CancellationToken::new();
        let registry = tokio::spawn(
            self.state
                .live
                .clone()
                .follow(self.follower, cancel.clone()),
        );
        let indexer = self.indexer.map(|i| tokio::spawn(i.run(cancel.clone())));
        let app = app(self.state.clone());
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        cancel.cancel();
        let _ = registry.await;
        if let Some(indexer) = indexer {
            let _ = indexer.await;
        }
        self.state
            .producer
            .flush(std::time::Duration::from_secs(5))
            .ok();
        served.map_err(ConsoleError::Serve)
    }
}

fn app(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(page::router())
        .merge(routes::router())
        .layer(axum::middleware::from_fn(csrf::same_origin))
        .with_state(state)
}

/// Ready while the index's database answers.
async fn ready(
    axum::extract::State(state): axum::extract::State<Shared>,
) -> (StatusCode, &'static str) {
    match state.pool.get().await {
        Ok(client) if client.simple_query("SELECT 1").await.is_ok() => (StatusCode::OK, "ready"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the index's database does not answer",
        ),
    }
}
