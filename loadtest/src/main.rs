//! `spillway-loadgen`: `run` (a load test, optionally verified against Kafka), `bare` and
//! `floor` (the baseline servers), `bench` (the sweeps of `make bench`) and its other steps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use spillway_loadgen::plan::{BodySizes, Mix, Planner};
use spillway_loadgen::run::Settings;
use spillway_loadgen::signing::SignedSource;
use spillway_loadgen::verify::{read_back, reconcile};

mod bench_args;
mod steps;

#[derive(Debug, Parser)]
#[command(
    name = "spillway-loadgen",
    version,
    about = "Open-model load generator for Spillway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send signed webhooks at a constant rate and report latencies and statuses.
    Run(RunArgs),
    /// Serve the bare baseline: 202 to every POST, nothing else. Prints its address.
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Serve the floor: each POST's body claimed on the Redis Cluster and produced to Kafka,
    /// then 202; nothing else (`--work` to vary). Prints its address once connected.
    Floor(steps::FloorArgs),
    /// The benchmark sweeps of `make bench` against a release `spillway ingress`.
    Bench(bench_args::BenchArgs),
    /// `make bench`'s fleet figures: batches split into records, and large bodies streamed to
    /// the local S3 server, each through a release `spillway ingress` of its own.
    Fleet(FleetArgs),
    /// `make bench`'s console figures: the index's lag under load, a fresh indexer's
    /// catch-up rate, search latency over a large index.
    Console(ConsoleArgs),
    /// The worker's figures: the latency from the ingress's 202 to a fast subscriber's receipt
    /// at a steady rate, then one worker delivering a backlog (deliveries per second and per
    /// core, CPU per delivery).
    Worker(steps::WorkerArgs),
    /// `make bench-quick`: the ingress, the bare server and the floor at one rate and the
    /// worker's live phase, each repeated, as figures with noise bands compared with the
    /// committed run's.
    Quick(steps::QuickArgs),
    /// `make bench`'s comparison: the receiver a team writes by hand in Node.js (express,
    /// ioredis, kafkajs), swept as the ingress is, on the same load.
    Node(steps::NodeArgs),
    /// `make bench`'s cost breakdown: the ingress at one rate on two cores, pinned to one, and
    /// sampled by `perf record`.
    Profile(steps::ProfileArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The Spillway config whose sources (and secrets) the requests are signed for, and whose
    /// Kafka `--verify` reads.
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    /// Base URL of the ingress.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Only these sources (repeatable); all signing sources of the config otherwise.
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Requests per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Requests in flight at most (HTTP/1.1 connections, or HTTP/2 streams on one connection).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// HTTP/2 with prior knowledge instead of HTTP/1.1 keep-alive.
    #[arg(long)]
    http2: bool,
    /// Body size in bytes, or a distribution `size:weight,...` (e.g. `512:50,1024:30,16384:20`).
    #[arg(long, default_value = "1024")]
    body_size: BodySizes,
    /// Share of requests that repeat an earlier valid one (a sender's retry).
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Share of requests signed with the wrong key.
    #[arg(long, default_value_t = 0.0)]
    tampered: f64,
    /// Share of requests signed an hour ago.
    #[arg(long, default_value_t = 0.0)]
    stale: f64,
    /// A request not answered within this counts as timed out.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Seed of the request mix: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After the run, reconcile the answers with the source topics (exit 2 on any loss).
    #[arg(long)]
    verify: bool,
    /// Exit 1 when p99 is above this many milliseconds.
    #[arg(long)]
    max_p99: Option<f64>,
    /// Exit 1 when fewer requests than this per second were sent.
    #[arg(long)]
    min_rate: Option<f64>,
    /// Also report the CPU time per request of this process (the ingress), from /proc.
    #[arg(long)]
    pid: Option<i32>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// What the benchmarks run: the binary, the local broker and Redis Cluster.
#[derive(Debug, clap::Args)]
pub(crate) struct StackArgs {
    /// The release `spillway` binary.
    #[arg(long, default_value = "target/release/spillway")]
    pub(crate) spillway_bin: PathBuf,
    #[arg(long, env = "SPILLWAY_TEST_KAFKA", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    #[arg(
        long,
        env = "SPILLWAY_TEST_REDIS_NODES",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002"
    )]
    pub(crate) redis_nodes: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Records per batch, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    batch_sizes: Vec<usize>,
    /// Bytes of each record.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// How long each batch size is sent.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    batch_step: Duration,
    /// Records in flight at once: each batch size gets this divided by the size as senders,
    /// clamped to 2..=64.
    #[arg(long, default_value_t = 2000)]
    batch_records_in_flight: usize,
    /// Bytes of each large body.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    upload_bytes: usize,
    /// Bodies sent per upload step.
    #[arg(long, default_value_t = 24)]
    uploads: u64,
    /// Uploads in flight, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    upload_senders: Vec<usize>,
    /// The ingress's `kafka.linger`.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Where the results go: `<out>/fleet.json`, which loadtest/report.py reads.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ConsoleArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The ingress's load while the index is measured (requests/s): the ingress's half rate.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events in the index that is searched.
    #[arg(long, default_value_t = 1_000_000)]
    search_events: u64,
    /// Where the results go: `<out>/console.json`, which loadtest/report.py reads.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Bare { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("{}", listener.local_addr()?);
            spillway_loadgen::bare::serve(listener).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Floor(args) => steps::floor(args).await,
        Command::Run(args) => run(args).await,
        Command::Bench(args) => bench_args::bench(args).await,
        Command::Fleet(args) => fleet(args).await,
        Command::Console(args) => console(args).await,
        Command::Worker(args) => steps::worker(args).await,
        Command::Quick(args) => steps::quick(args).await,
        Command::Profile(args) => steps::profile(args).await,
        Command::Node(args) => steps::node(args).await,
    }
}

async fn console(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::console::ConsoleSettings {
        spillway_bin: args.stack.spillway_bin,
        brokers: args.stack.brokers,
        redis_nodes: args.stack.redis_nodes,
        rate: args.rate,
        duration: args.duration,
        search_events: args.search_events,
        dir: args.out.join(format!("console-{}", std::process::id())),
    };
    let results = spillway_loadgen::console::console(&settings).await?;
    write_results(&args.out, "console.json", &results)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a step's results as `<out>/<name>`, where loadtest/report.py reads them.
pub(crate) fn write_results(
    out: &Path,
    name: &str,
    results: &impl serde::Serialize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(results)?)?;
    eprintln!("results: {}", path.display());
    Ok(())
}

async fn fleet(args: FleetArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::fleet::FleetSettings {
        spillway_bin: args.stack.spillway_bin,
        brokers: args.stack.brokers,
        redis_nodes: args.stack.redis_nodes,
        batch_sizes: args.batch_sizes,
        record_bytes: args.record_bytes,
        batch_step: args.batch_step,
        batch_records_in_flight: args.batch_records_in_flight,
        upload_bytes: args.upload_bytes,
        uploads: args.uploads,
        upload_senders: args.upload_senders,
        linger: args.linger,
        dir: args.out.join(format!("fleet-{}", std::process::id())),
    };
    let results = spillway_loadgen::fleet::fleet(&settings).await?;
    write_results(&args.out, "fleet.json", &results)?;
    // Anything acknowledged and not found is a loss: the figures stand, the run fails. (A
    // stored body is one whose record is in Kafka too.)
    let lost: u64 = results.batches.iter().map(|b| b.lost).sum::<u64>()
        + results
            .uploads
            .iter()
            .map(|u| u.uploads.saturating_sub(u.stored))
            .sum::<u64>();
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{lost} acknowledged records or bodies were not found");
        ExitCode::from(2)
    })
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = spillway_config::load(&args.config)?;
    let mut sources = SignedSource::from_config(&config)
        .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
    if !args.sources.is_empty() {
        sources.retain(|s| args.sources.contains(&s.name));
    }
    anyhow::ensure!(!sources.is_empty(), "no signing source to send to");
    for (name, share) in [
        ("duplicates", args.duplicates),
        ("tampered", args.tampered),
        ("stale", args.stale),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&share),
            "--{name} must be between 0 and 1"
        );
    }
    anyhow::ensure!(
        args.duplicates + args.tampered + args.stale <= 1.0,
        "the shares add up to more than 1"
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topics: Vec<String> = sources.iter().map(|s| s.topic.clone()).collect();
    let planner = Planner::new(
        sources,
        Mix {
            duplicates: args.duplicates,
            tampered: args.tampered,
            stale: args.stale,
            body_sizes: args.body_size,
        },
        &run_id,
        args.seed,
    );
    let cpu_before = args.pid.map(spillway_loadgen::cpu::cpu_time).transpose()?;
    let report = spillway_loadgen::run::run(
        &Settings {
            target: args.target,
            rate: args.rate,
            duration: args.duration,
            connections: args.connections,
            http2: args.http2,
            timeout: args.timeout,
            progress: !args.quiet && !args.json,
        },
        planner,
    )
    .await?;
    let summary = report.summary();
    let cpu_us_per_req = match (args.pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let used = spillway_loadgen::cpu::cpu_time(pid)? - before;
            Some(used.as_secs_f64() * 1e6 / summary.requests.max(1) as f64)
        }
        _ => None,
    };
    let reconciliation = if args.verify {
        let connection = spillway_kafka::Connection::from(&config.kafka);
        let run = run_id.clone();
        let records = tokio::task::spawn_blocking(move || {
            read_back(&connection, &topics, &run, Duration::from_secs(120))
        })
        .await?
        .context("reading the source topics back")?;
        Some(reconcile(report.answers(), &records))
    } else {
        None
    };
    let breaches = summary.breaches(args.max_p99, args.min_rate);
    if args.json {
        let out = serde_json::json!({
            "run": run_id,
            "summary": summary,
            "cpu_us_per_req": cpu_us_per_req,
            "verify": reconciliation,
            "breaches": breaches,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", summary.text());
        if let Some(cpu) = cpu_us_per_req {
            println!(
                "CPU           {cpu:.1} us per request (process {})",
                args.pid.unwrap_or_default()
            );
        }
        if let Some(r) = &reconciliation {
            print!("{}", r.text());
        }
        for breach in &breaches {
            println!("Threshold     {breach}");
        }
    }
    if reconciliation.as_ref().is_some_and(|r| !r.ok()) {
        return Ok(ExitCode::from(2));
    }
    Ok(if breaches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
