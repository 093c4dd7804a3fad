//! `spillway`: the one binary. Each subcommand is a thin shell over the library crates, with
//! its implementation in its own module under [`commands`]; this file parses the command line,
//! installs logging and tracing, and starts the runtime.

mod allocator;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spillway_config::{Config, Process};

use crate::commands::{dlq, objects, quarantine, replay, subscriptions, topics};

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
    /// The operator console: search events, see every attempt, retry, replay and redrive,
    /// health, test webhooks (the page under /ui/, the JSON API under /v1/), and index events
    /// and attempts into PostgreSQL.
    Console {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file (secrets included) and name every bad field.
    CheckConfig {
        config: PathBuf,
        /// Check only what this process reads (its secrets and files), as it will at start:
        /// an ingress host need not hold the subscriptions' secrets, nor a worker host the
        /// sources'. `all` by default.
        #[arg(long, value_enum, default_value_t = CheckedProcess::All)]
        process: CheckedProcess,
    },
    /// Dead letters: list them, or redrive them for a fresh set of attempts.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// A source's quarantine (records that failed its schema): list them, or redrive them to
    /// the source's topic once they pass.
    Quarantine {
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
    },
    /// Stored bodies (object storage): remove those no record refers to any more.
    Objects {
        #[command(subcommand)]
        command: objects::ObjectsCommand,
    },
    /// Re-deliver a range of a source topic from Kafka retention to its subscriptions.
    Replay(replay::ReplayArgs),
    /// The subscription registry: add, list and remove subscribers (the workers pick up
    /// changes within moments).
    Subscriptions {
        #[command(subcommand)]
        command: subscriptions::SubscriptionsCommand,
    },
    /// Kafka topic administration.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Send a signed demo burst (valid, duplicate, tampered, stale) and show where it went.
    Demo(commands::demo::DemoArgs),
    /// The provider presets a source can name in `verify.scheme`: family, dedupe key, event
    /// type (`--format json` for every detail).
    Providers {
        #[arg(long, value_enum, default_value_t = ProvidersFormat::Table)]
        format: ProvidersFormat,
    },
}

/// Which process's view of the config `check-config` takes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CheckedProcess {
    Ingress,
    Worker,
    Console,
    All,
}

impl CheckedProcess {
    fn process(self) -> Process {
        match self {
            Self::Ingress => Process::Ingress,
            // The console resolves the subscriptions as the workers do, secrets included.
            Self::Worker | Self::Console => Process::Worker,
            Self::All => Process::All,
        }
    }
}

/// How `spillway providers` prints the catalogue.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ProvidersFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The serving processes read their config before anything else: it says where their
    // traces go, and the subscriber is installed once.
    let loaded = match serving_config(&cli.command) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {}", commands::report(&e));
            return ExitCode::FAILURE;
        }
    };
    let export = loaded
        .as_ref()
        .and_then(|(l, service)| trace_export(&l.config, service));
    let telemetry = match spillway_telemetry::init(cli.log_format == "json", export.as_ref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.map(|(loaded, _)| {
        for warning in &loaded.warnings {
            tracing::warn!(field = %warning.path, "{}", warning.message);
        }
        loaded.config
    });
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
    let result = runtime.block_on(run(cli.command, config));
    // The log lines still held are written before the error that ends the process, which
    // they explain.
    drop(runtime);
    drop(telemetry);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The config of a serving process (`ingress`, `worker`, `console`) with its service name for traces;
/// `None` for every other command, which reads its config itself.
fn serving_config(
    command: &Command,
) -> anyhow::Result<Option<(spillway_config::Loaded, &'static str)>> {
    let serving = match command {
        Command::Ingress { config } => Some((config, Process::Ingress, "spillway-ingress")),
        Command::Worker { config } => Some((config, Process::Worker, "spillway-worker")),
        // The console resolves the subscriptions as the workers do, secrets included.
        Command::Console { config } => Some((config, Process::Worker, "spillway-console")),
        _ => None,
    };
    serving
        .map(|(path, process, service)| {
            commands::load_with_warnings(path, process).map(|l| (l, service))
        })
        .transpose()
}

/// Where the serving processes send their spans, if anywhere.
fn trace_export(config: &Config, service: &str) -> Option<spillway_telemetry::TraceExport> {
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
async fn run(command: Command, loaded: Option<Config>) -> anyhow::Result<ExitCode> {
    let config_of = |path: PathBuf, process| match loaded {
        Some(config) => Ok(config),
        None => commands::load(&path, process),
    };
    match command {
        Command::Ingress { config } => {
            let path = config.clone();
            commands::ingress::run(config_of(config, Process::Ingress)?, path).await
        }
        Command::Worker { config } => {
            let path = config.clone();
            commands::worker::run(config_of(config, Process::Worker)?, path).await
        }
        Command::Console { config } => {
            commands::console::run(config_of(config, Process::Worker)?).await
        }
        Command::CheckConfig { config, process } => {
            Ok(commands::check_config::run(&config, process.process()))
        }
        Command::Dlq { command } => dlq::run(command).await,
        Command::Quarantine { command } => quarantine::run(command).await,
        Command::Objects { command } => objects::run(command).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Subscriptions { command } => subscriptions::run(command).await,
        Command::Topics { command } => topics::run(command).await,
        Command::Demo(args) => commands::demo::run(args).await,
        Command::Providers { format } => {
            match format {
                ProvidersFormat::Table => print!("{}", spillway_providers::listing::table()),
                ProvidersFormat::Json => println!("{}", spillway_providers::listing::json()),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
