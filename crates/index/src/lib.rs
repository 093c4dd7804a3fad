//! The console's index in PostgreSQL.
//!
//! - [`indexer`]: follows the source, quarantine, attempts and dead-letter topics and writes
//!   them in batches, one writer at a time, offsets in the rows' transaction;
//! - [`rows`]: what each record becomes; [`writer`]: one batch's transaction;
//! - [`search`]: finding events, reading one with its deliveries and attempts;
//! - [`schema`]: the tables; [`retention`]: deleting what is past it; [`progress`]: the
//!   indexer's counters.
//!
//! The index is an aid, never the source of truth: bodies stay in Kafka, and nothing in the
//! request or delivery path waits for it.

pub mod health;
pub mod indexer;
pub mod progress;
pub mod retention;
pub mod rows;
pub mod schema;
pub mod search;
pub mod writer;

pub use indexer::Indexer;
pub use progress::{Progress, ProgressSnapshot};
pub use schema::ensure_schema;

/// A connection pool to the index's database.
pub use deadpool_postgres::Pool;
/// The PostgreSQL client the pool holds, for the console's own statements (the audit log).
pub use tokio_postgres;

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Kafka: {context}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the indexer's metadata task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("config: {0}")]
    Config(String),
}

/// A pool of `size` connections to the database at `url` (`postgres://...`).
pub fn pool(url: &str, size: usize) -> Result<Pool, PoolSetupError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(PoolSetupError::Url)?;
    // A statement never hangs on a server gone quiet (a partition, a lock held elsewhere):
    // 30 s unless the URL's `options` say otherwise; and a dead peer is noticed in a minute.
    if config.get_options().is_none() {
        config.options("-c statement_timeout=30000");
    }
    config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(30));
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    // Bounded waits: with PostgreSQL gone or every connection taken, a request answers 503
    // after a few seconds instead of hanging.
    let wait = Some(std::time::Duration::from_secs(5));
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(wait)
        .create_timeout(wait)
        .recycle_timeout(wait)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PoolSetupError::Build(e.to_string()))
}

/// Why a pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    #[error("console.database_url is not a PostgreSQL URL")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot set up the PostgreSQL pool: {0}")]
    Build(String),
}
