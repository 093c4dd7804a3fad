//! `spillway topics`: Kafka topic administration, i.e. creating every topic Spillway uses.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use spillway_config::Process;

use super::load;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topic of every configured source, and the workers' retry tiers and
    /// dead-letter topic (existing topics are left alone).
    Create {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
    },
}

pub async fn run(command: TopicsCommand) -> anyhow::Result<ExitCode> {
    match command {
        TopicsCommand::Create { config } => create(&load(&config, Process::Ingress)?).await,
    }
}

/// Creates the source topics, the retry tiers and the dead-letter topic, then the compacted
/// subscription registry topic.
async fn create(config: &spillway_config::Config) -> anyhow::Result<ExitCode> {
    let mut topics = config.topics();
    topics.extend(spillway_worker::topics::worker_topics(config));
    let connection = spillway_kafka::Connection::from(&config.kafka);
    spillway_kafka::admin::ensure_topics(
        &connection,
        &topics,
        config.kafka.partitions,
        config.kafka.replication_factor,
    )
    .await
    .context("creating topics")?;
    let registry = spillway_worker::topics::registry_topic(config);
    spillway_kafka::admin::ensure_compacted_topic(
        &connection,
        &registry,
        config.kafka.replication_factor,
    )
    .await
    .context("creating the subscription registry topic")?;
    topics.push(registry);
    println!("topics ready: {}", topics.join(", "));
    Ok(ExitCode::SUCCESS)
}
