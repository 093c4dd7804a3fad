//! The stage of the steps run apart from the sweeps (`quick`, `profile`, `node`): the bench
//! settings of a run, its config written and loaded, its topics made, and its sources signed.

use std::path::PathBuf;
use std::time::Duration;

use spillway_kafka::Connection;

use crate::bench::{write_config, BenchSettings};
use crate::signing::SignedSource;

/// What a single-rate run starts from.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub spillway_bin: PathBuf,
    pub loadgen_bin: PathBuf,
    pub brokers: String,
    pub redis_nodes: Vec<String>,
    pub rate: f64,
    pub step: Duration,
    pub dir: PathBuf,
}

/// A config on the local stack, ready for an ingress to start on.
pub(crate) struct Stage {
    pub(crate) bench: BenchSettings,
    pub(crate) config_path: PathBuf,
    pub(crate) connection: Connection,
    pub(crate) topics: Vec<String>,
    pub(crate) sources: Vec<SignedSource>,
}

// === impl Stage ===

impl Stage {
    /// Writes the config (the sweeps' one: three signed sources, `kafka.linger` 5 ms, one
    /// partition per topic) and makes its topics.
    pub(crate) async fn prepare(settings: &StageSettings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.dir)?;
        let bench = BenchSettings {
            spillway_bin: settings.spillway_bin.clone(),
            loadgen_bin: settings.loadgen_bin.clone(),
            brokers: settings.brokers.clone(),
            redis_nodes: settings.redis_nodes.clone(),
            rates: vec![settings.rate],
            step: settings.step,
            connections: 1024,
            p99_bound_ms: 50.0,
            linger: Duration::from_millis(5),
            partitions: 1,
            sustained_rate: 0.0,
            sustained_step: Duration::ZERO,
            overload_step: Duration::ZERO,
            overload_connections: 0,
            dir: settings.dir.clone(),
        };
        let run = uuid::Uuid::new_v4().simple().to_string();
        let config_path = write_config(&bench, &run)?;
        let config = spillway_config::load(&config_path)?;
        let connection = Connection::from(&config.kafka);
        let topics = config.topics();
        spillway_kafka::admin::ensure_topics(&connection, &topics, 1, 1).await?;
        let sources = SignedSource::from_config(&config)
            .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
        Ok(Self {
            bench,
            config_path,
            connection,
            topics,
            sources,
        })
    }
}
