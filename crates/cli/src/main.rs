//! `spillway`: the one binary. Each subcommand is a thin shell over the library crates.

mod demo;
mod inbox;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use spillway_worker::registry::{LiveSubscriptions, Registry};
use tokio::net::TcpListener;

/// mimalloc instead of glibc's allocator: under load the ingress allocates and frees per request
/// on many threads, and glibc's arena locks showed up in profiles (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about = "Webhook and API-callback ingestion cluster"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "SPILLWAY_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
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
    /// The subscription registry: add, list and remove subscribers (the workers pick up
    /// changes within moments).
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
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
enum SubscriptionsCommand {
    /// Add a subscription to the registry, or replace the one with that id.
    Add {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        id: String,
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// A source whose events it receives (repeatable); every source when none.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// An event type it receives (repeatable); every type when none.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Environment variable holding its signing secret (`whsec_...`). Without
        /// --secret-env or --secret-file a secret is generated and printed once.
        #[arg(long, conflicts_with = "secret_file")]
        secret_env: Option<String>,
        /// File holding its signing secret.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// An extra header sent with every delivery, `Name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A delivery not answered within this has failed.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Deliveries per second each worker makes to it at most.
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List every subscription: the config file's and the registry's (secrets redacted).
    List {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a subscription from the registry.
    Remove {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        id: String,
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
    // The serving processes read their config before anything else: it says where their
    // traces go, and the subscriber is installed once.
    let serving = match &cli.command {
        Command::Ingress { config } => Some((config, "spillway-ingress")),
        Command::Worker { config } => Some((config, "spillway-worker")),
        _ => None,
    };
    let loaded = match serving.map(|(path, service)| load(path).map(|c| (c, service))) {
        None => None,
        Some(Ok(loaded)) => Some(loaded),
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let export = loaded
        .as_ref()
        .and_then(|(c, service)| trace_export(c, service));
    let _telemetry = match spillway_telemetry::init(cli.log_format == "json", export.as_ref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.map(|(c, _)| c);
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
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the serving processes send their spans, if anywhere.
fn trace_export(
    config: &spillway_config::Config,
    service: &str,
) -> Option<spillway_telemetry::TraceExport> {
    let t = &config.telemetry;
    t.otlp_endpoint
        .as_ref()
        .map(|endpoint| spillway_telemetry::TraceExport {
            endpoint: endpoint.clone(),
            service_name: service.to_owned(),
            sample_ratio: t.trace_sample_ratio,
            export_interval: t.export_interval,
            export_queue: t.export_queue,
        })
}

/// Runs `command`; `loaded` is the config of `ingress` and `worker`, read by `main`.
async fn run(
    command: Command,
    loaded: Option<spillway_config::Config>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingress { config } => {
            let config = match loaded {
                Some(c) => c,
                None => load(&config)?,
            };
            ingress(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { config } => {
            let config = match loaded {
                Some(c) => c,
                None => load(&config)?,
            };
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
        Command::Subscriptions { command } => subscriptions(command).await,
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
            let subscriptions = LiveSubscriptions::load(Arc::new(config.clone()))
                .await?
                .snapshot();
            let selecting = config.clone();
            let replays = tokio::task::spawn_blocking(move || {
                spillway_worker::replay::select(
                    &selecting,
                    &subscriptions,
                    &range,
                    READ_BACK_TIMEOUT,
                )
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
            let connection = spillway_kafka::Connection::from(&config.kafka);
            spillway_kafka::admin::ensure_topics(
                &connection,
                &topics,
                config.kafka.partitions,
                config.kafka.replication_factor,
            )
            .await
            .context("creating topics")?;
            let registry = spillway_worker::topics::registry_topic(&config);
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

async fn subscriptions(command: SubscriptionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubscriptionsCommand::Add {
            config,
            id,
            url,
            sources,
            event_types,
            secret_env,
            secret_file,
            headers,
            timeout,
            rate_limit,
        } => {
            let config = Arc::new(load(&config)?);
            let (secret, generated) = match (secret_env, secret_file) {
                (None, None) => {
                    let secret = spillway_worker::registry::generate_secret("generated");
                    let text = secret.secret.clone();
                    (secret, Some(text))
                }
                (env, file) => {
                    let text =
                        spillway_config::read_credential(&spillway_config::CredentialConfig {
                            env,
                            file,
                        })
                        .map_err(|e| anyhow::anyhow!("signing secret: {e}"))?;
                    let secret = spillway_config::StoredSecret {
                        id: "s1".into(),
                        secret: text,
                        not_after: None,
                    };
                    (secret, None)
                }
            };
            let mut parsed_headers = std::collections::BTreeMap::new();
            for header in headers {
                let (name, value) = header
                    .split_once(':')
                    .with_context(|| format!("--header {header:?}: expected `Name: value`"))?;
                parsed_headers.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            let sub = spillway_config::StoredSubscription {
                id,
                url,
                sources,
                event_types,
                secrets: vec![secret],
                headers: parsed_headers,
                timeout,
                rate_limit,
            };
            let registry = registry(&config)?;
            match registry.put(&sub).await {
                Ok(_) => {
                    println!("subscription {} registered", sub.id);
                    if let Some(secret) = generated {
                        println!("signing secret (shown once): {secret}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        SubscriptionsCommand::List { config, json } => {
            let config = Arc::new(load(&config)?);
            let registry = registry(&config)?;
            let views = registry.views(&registry.read_all().await?);
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<48} {:<16} EVENT TYPES",
                    "ID", "ORIGIN", "URL", "SOURCES"
                );
                for v in views {
                    let or_all = |list: &[String]| {
                        if list.is_empty() {
                            "*".to_owned()
                        } else {
                            list.join(",")
                        }
                    };
                    let origin = match v.origin {
                        spillway_worker::registry::Origin::Config => "config",
                        spillway_worker::registry::Origin::Registry => "registry",
                    };
                    println!(
                        "{:<24} {:<8} {:<48} {:<16} {}",
                        v.id,
                        origin,
                        v.url,
                        or_all(&v.sources),
                        or_all(&v.event_types)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscriptionsCommand::Remove { config, id } => {
            let config = Arc::new(load(&config)?);
            let registry = registry(&config)?;
            if !registry.is_config_managed(&id)
                && !registry.read_all().await?.iter().any(|s| s.id == id)
            {
                eprintln!("no subscription {id:?} in the registry");
                return Ok(ExitCode::FAILURE);
            }
            match registry.remove(&id).await {
                Ok(_) => {
                    println!("subscription {id} removed");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn registry(config: &Arc<spillway_config::Config>) -> anyhow::Result<Registry> {
    let producer =
        spillway_kafka::EventProducer::new(&spillway_kafka::ProducerSettings::from(&config.kafka))?;
    Ok(Registry::new(config.clone(), producer))
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
