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
    /// Dead letters: list them, or redrive them for a fresh set of attempts.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Re-deliver a range of a source topic from Kafka retention to its subscriptions.
    Replay {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        source: String,
        /// Start: an RFC 3339 time (events accepted then or later) or an offset (every partition).
        #[arg(long, value_parser = parse_position)]
        from: Option<Position>,
        /// End (exclusive): an RFC 3339 time or an offset.
        #[arg(long, value_parser = parse_position)]
        to: Option<Position>,
        /// Only events of this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only to this subscription (by default every subscription that wants the events).
        #[arg(long)]
        subscription: Option<String>,
        /// Deliveries queued per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Only print how many deliveries the range selects.
        #[arg(long)]
        dry_run: bool,
    },
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
enum DlqCommand {
    /// Print the dead letters that match the filters, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Put the matching dead letters back into the retry path, due now, as attempt 1.
    Redrive {
        #[command(flatten)]
        filter: DlqFilter,
        /// Only print what would be redriven.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
struct DlqFilter {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    /// Only this subscription's dead letters.
    #[arg(long)]
    subscription: Option<String>,
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Dead at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Dead before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
}

/// A place in a topic: a time or an offset.
#[derive(Debug, Clone, Copy)]
enum Position {
    TimeMs(u64),
    Offset(i64),
}

/// A position as (time, offset): one of them, or neither.
fn split(position: Option<Position>) -> (Option<u64>, Option<i64>) {
    match position {
        Some(Position::TimeMs(t)) => (Some(t), None),
        Some(Position::Offset(o)) => (None, Some(o)),
        None => (None, None),
    }
}

fn parse_position(text: &str) -> Result<Position, String> {
    match text.parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(Position::Offset(offset)),
        Ok(_) => Err("an offset cannot be negative".into()),
        Err(_) => parse_time(text).map(Position::TimeMs),
    }
}

/// An RFC 3339 time as milliseconds since the epoch.
fn parse_time(text: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 time such as 2026-11-23T10:00:00Z: {e}")
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "time before 1970".to_owned())
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
            let admin = TcpListener::bind(config.worker.admin_listen)
                .await
                .with_context(|| {
                    format!("binding worker.admin_listen {}", config.worker.admin_listen)
                })?;
            let worker = spillway_worker::Worker::from_config(&config)?;
            tracing::info!(
                subscriptions = config.subscriptions.len(),
                admin = %admin.local_addr()?,
                "spillway worker started"
            );
            worker.run(admin, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { command } => dlq(command).await,
        Command::Replay {
            config,
            source,
            from,
            to,
            event_type,
            subscription,
            rate,
            dry_run,
        } => {
            let config = load(&config)?;
            let (since_ms, from_offset) = split(from);
            let (until_ms, to_offset) = split(to);
            let range = spillway_worker::replay::Range {
                source,
                since_ms,
                until_ms,
                from_offset,
                to_offset,
                event_type,
                subscription,
            };
            let selecting = config.clone();
            let replays = tokio::task::spawn_blocking(move || {
                spillway_worker::replay::select(&selecting, &range, READ_BACK_TIMEOUT)
            })
            .await??;
            if dry_run {
                println!("{} deliveries would be replayed (dry run)", replays.len());
            } else {
                let n = spillway_worker::replay::replay(&config, &replays, rate).await?;
                println!("{n} deliveries queued for the workers");
            }
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

async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let (filter, redrive) = match command {
        DlqCommand::List { filter } => (filter, None),
        DlqCommand::Redrive { filter, dry_run } => (filter, Some(dry_run)),
    };
    let config = load(&filter.config)?;
    let wanted = spillway_worker::dlq::Filter {
        subscription: filter.subscription,
        source: filter.source,
        since_ms: filter.since,
        until_ms: filter.until,
    };
    let listing = config.clone();
    let letters = tokio::task::spawn_blocking(move || {
        spillway_worker::dlq::list(&listing, &wanted, READ_BACK_TIMEOUT)
    })
    .await??;
    println!(
        "{:<26} {:<20} {:<12} {:<36} {:<20} {:>8} {:>6}",
        "dead at", "subscription", "source", "event id", "reason", "attempts", "status"
    );
    for d in &letters {
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.dead_at_ms()) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
        let h = |name: &str| d.header(name).unwrap_or("-").to_owned();
        println!(
            "{at:<26} {:<20} {:<12} {:<36} {:<20} {:>8} {:>6}",
            h(spillway_worker::control::SUBSCRIPTION),
            h(spillway_core::headers::SOURCE),
            h(spillway_core::headers::EVENT_ID),
            h(spillway_worker::control::DEAD_REASON),
            h(spillway_worker::control::ATTEMPT),
            h(spillway_worker::control::LAST_STATUS),
        );
    }
    match redrive {
        None => println!("{} dead letters", letters.len()),
        Some(true) => println!("{} dead letters would be redriven (dry run)", letters.len()),
        Some(false) => {
            let n = spillway_worker::dlq::redrive(&config, &letters).await?;
            println!("{n} dead letters redriven");
        }
    }
    Ok(ExitCode::SUCCESS)
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
