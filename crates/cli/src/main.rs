//! `spillway`: the one binary. Each subcommand is a thin shell over the library crates.

mod demo;
mod inbox;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about = "Webhook and API-callback ingestion cluster"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks: verify, dedupe, write to Kafka, answer 202.
    Ingress {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
    },
    /// Deliver events to subscribers: consume the source topics, sign, retry, dead-letter.
    Worker {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file (secrets included) and name every bad field.
    CheckConfig { config: PathBuf },
    /// Kafka topic administration.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Send a signed demo burst (valid, duplicate, tampered, stale) and show where it went.
    Demo {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        /// Base URLs of the ingress processes, e.g. http://127.0.0.1:8080; requests alternate.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Also receive the worker's deliveries for this subscription (on its URL's address),
        /// verify their signatures, and report what arrived.
        #[arg(long)]
        inbox: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the topic of every configured source, and the workers' retry tiers and
    /// dead-letter topic (existing topics are left alone).
    Create {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    spillway_telemetry::init_logs(cli.log_format == "json");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingress { config } => {
            let config = load(&config)?;
            ingress(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { config } => {
            let config = load(&config)?;
            let worker = spillway_worker::Worker::from_config(&config)?;
            tracing::info!(
                subscriptions = config.subscriptions.len(),
                "spillway worker started"
            );
            worker.run(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => match spillway_config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} sources: {})",
                    config.display(),
                    c.sources.len(),
                    c.topics().join(", ")
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Topics {
            command: TopicsCommand::Create { config },
        } => {
            let config = load(&config)?;
            let mut topics = config.topics();
            topics.extend(spillway_worker::topics::worker_topics(&config));
            spillway_kafka::admin::ensure_topics(
                &config.kafka.brokers,
                &topics,
                config.kafka.partitions,
                config.kafka.replication_factor,
            )
            .await
            .context("creating topics")?;
            println!("topics ready: {}", topics.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            targets,
            inbox,
        } => {
            let config = load(&config)?;
            demo::run(&config, &targets, inbox.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<spillway_config::Config> {
    spillway_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn ingress(config: spillway_config::Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.ingress.listen)
        .await
        .with_context(|| format!("binding ingress.listen {}", config.ingress.listen))?;
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding admin.listen {}", config.admin.listen))?;
    let ingress = spillway_ingress::Ingress::from_config(&config)?;
    // One machine-readable line on stdout with the bound addresses (port 0 picks free ports).
    println!(
        "{}",
        serde_json::json!({
            "event": "listening",
            "ingress": listener.local_addr()?.to_string(),
            "admin": admin.local_addr()?.to_string(),
            "tls": config.ingress.tls.is_some(),
        })
    );
    tracing::info!(ingress = %listener.local_addr()?, admin = %admin.local_addr()?, "spillway ingress started");
    ingress.run(listener, admin, shutdown_signal()).await;
    tracing::info!("spillway ingress stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// How long the demo waits for Kafka when reading topics back.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);
