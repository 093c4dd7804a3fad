//! The floor server and the worker, quick, profile and Node.js receiver steps of
//! `spillway-loadgen`: their arguments and how their results are written and printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use spillway_loadgen::stage::StageSettings;

use crate::{write_results, StackArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct FloorArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    #[arg(long, env = "SPILLWAY_TEST_KAFKA", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Any node of the Redis Cluster.
    #[arg(long, default_value = "redis://127.0.0.1:7000")]
    redis: String,
    /// The topics written to, in turn (as the ingress writes each source to its own); they
    /// must exist.
    #[arg(long = "topic", value_delimiter = ',', required = true)]
    topics: Vec<String>,
    /// The producer's `linger.ms`, as the ingress's `kafka.linger`.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Which round trips each request makes.
    #[arg(long, value_enum, default_value = "both")]
    work: spillway_loadgen::floor::FloorWork,
}

/// Serves the floor until killed.
pub(crate) async fn floor(args: FloorArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let settings = spillway_loadgen::floor::FloorSettings {
        brokers: args.brokers,
        redis_seed: args.redis,
        topics: args.topics,
        linger: args.linger,
        work: args.work,
    };
    spillway_loadgen::floor::serve(listener, &settings).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The ingress's load while the latency is measured (requests/s): the ingress's half rate.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events written while no worker runs, then delivered by one.
    #[arg(long, default_value_t = 40_000)]
    backlog: u64,
    /// The rate at which the backlog is written (requests/s).
    #[arg(long, default_value_t = 4000.0)]
    backlog_rate: f64,
    /// Where the results go: `<out>/worker.json`, which loadtest/report.py reads.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct QuickArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The rate of every step (requests/s): the committed run's half rate.
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// How many times each step runs: its samples, whose spread is the figure's band (one
    /// sample has no band).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..))]
    repeats: u16,
    /// Exit 2 when a figure moved beyond its band (`make bench-quick`, before a commit).
    #[arg(long)]
    fail_on_moved: bool,
    /// The committed figures to compare with.
    #[arg(long, default_value = "docs/benchmarks.json")]
    compare: PathBuf,
    /// Where the results go: `<out>/quick.json`.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProfileArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The rate of every step (requests/s): the sweep's half rate.
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// The `perf` binary for the sampled step; `--perf none` skips that step.
    #[arg(long, default_value = "perf")]
    perf: String,
    /// Where the results go: `<out>/profile.json`, and the samples in
    /// `<out>/profile-run/ingress.perf.data`.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

pub(crate) async fn profile(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::profile::ProfileSettings {
        stage: stage(
            args.stack,
            args.rate,
            args.step,
            &args.out.join("profile-run"),
        )?,
        perf: (args.perf != "none").then(|| PathBuf::from(&args.perf)),
    };
    let results = spillway_loadgen::profile::profile(&settings).await?;
    write_results(&args.out, "profile.json", &results)?;
    for step in &results.steps {
        println!(
            "{:<10} {:>7.0}/s  {:>7.1} µs/req  p50 {:.2} ms  p99 {:.2} ms",
            step.case, step.achieved, step.cpu_us_per_req, step.p50_ms, step.p99_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::worker::WorkerSettings {
        spillway_bin: args.stack.spillway_bin,
        brokers: args.stack.brokers,
        redis_nodes: args.stack.redis_nodes,
        rate: args.rate,
        duration: args.duration,
        backlog: args.backlog,
        backlog_rate: args.backlog_rate,
        dir: fresh_dir(&args.out.join("worker-run"))?,
    };
    let results = spillway_loadgen::worker::worker(&settings).await?;
    write_results(&args.out, "worker.json", &results)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::quick::QuickSettings {
        stage: stage(
            args.stack,
            args.rate,
            args.step,
            &args.out.join("quick-run"),
        )?,
        repeats: usize::from(args.repeats),
        committed: Some(args.compare),
    };
    let results = spillway_loadgen::quick::quick(&settings).await?;
    write_results(&args.out, "quick.json", &results)?;
    for figure in &results.figures {
        println!(
            "{:<32} {:>9.2} {:<3} ±{:.1}% over {} samples",
            figure.name,
            figure.median,
            figure.unit,
            figure.band_pct,
            figure.samples.len()
        );
    }
    if results.comparison.is_empty() {
        println!("no committed figures to compare with");
    } else {
        for line in spillway_loadgen::guard::describe(&results.comparison) {
            println!("{line}");
        }
        let moved = results.comparison.iter().filter(|c| c.moved).count();
        println!(
            "quick: {moved} of {} figures moved beyond their noise band since the committed run",
            results.comparison.len()
        );
        if moved > 0 && args.fail_on_moved {
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The stage of a single-rate run in `dir` (emptied first).
fn stage(
    stack: StackArgs,
    rate: f64,
    step: Duration,
    dir: &std::path::Path,
) -> anyhow::Result<StageSettings> {
    Ok(StageSettings {
        spillway_bin: stack.spillway_bin,
        loadgen_bin: std::env::current_exe()?,
        brokers: stack.brokers,
        redis_nodes: stack.redis_nodes,
        rate,
        step,
        dir: fresh_dir(dir)?,
    })
}

/// `dir`, emptied of an earlier run's logs and configs.
fn fresh_dir(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The receiver's directory, its packages installed (dev/node-receiver.sh).
    #[arg(long, default_value = "loadtest/node-receiver")]
    receiver: PathBuf,
    /// The offered rates, in order: finer than the ingress's sweep, as the Node.js receiver's
    /// highest rate is the ratio's denominator.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,1500,2000,2500,3000,3500,4000,5000,6000"
    )]
    rates: Vec<f64>,
    /// How long each rate is held, as in the ingress's sweep.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Where the results go: `<out>/node.json`, which loadtest/report.py reads.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// Sweeps the Node.js receiver and writes `<out>/node.json`.
pub(crate) async fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let rate = args.rates.first().copied().unwrap_or_default();
    let settings = spillway_loadgen::node_steps::NodeSettings {
        stage: stage(args.stack, rate, args.step, &args.out.join("node-run"))?,
        receiver: args.receiver,
        rates: args.rates,
    };
    let results = spillway_loadgen::node_steps::node(&settings).await?;
    write_results(&args.out, "node.json", &results)?;
    Ok(ExitCode::SUCCESS)
}
