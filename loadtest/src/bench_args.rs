//! `spillway-loadgen bench`, the sweeps of `make bench`: its arguments, and its results
//! written for loadtest/report.py with the headline printed last.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{write_results, StackArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// The offered rates of the sweeps, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,2000,3000,4000,5000,6000,7000,8000,9000,10000,12000,14000,16000,18000,20000,24000"
    )]
    rates: Vec<f64>,
    /// How long each rate is held.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Connections (requests in flight) of the generator: by Little's law at least the rate
    /// times the latency, or the generator itself caps the rate.
    #[arg(long, default_value_t = 1024)]
    connections: usize,
    /// The ingress's `kafka.linger` (larger batches cost the local broker less per record).
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Partitions of each source topic (the local broker pays per batch, one batch per partition).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// The rate held at the end for `--sustained-step`, whatever its latency.
    #[arg(long, default_value_t = 10000.0)]
    sustained_rate: f64,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    sustained_step: Duration,
    /// How long the overload step offers twice the highest rate held, then half of it (0s
    /// skips it).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    overload_step: Duration,
    /// The generator's connections during the overload step. By Little's law a server answering
    /// X requests/s within L holds X x L of them: senders fewer than that never show it the
    /// overload, which then queues in the generator instead (1,024 against an ingress serving
    /// 9,000/s within about 115 ms did, 2026-12-04). Below the ingress's
    /// `ingress.max_connections` (4096).
    #[arg(long, default_value_t = 4000)]
    overload_connections: usize,
    /// A rate is held while p99 stays under this many milliseconds (and nothing is lost).
    #[arg(long, default_value_t = 50.0)]
    p99_bound_ms: f64,
    /// Where the results go: `<out>/benchmarks.json` (the plot and docs/benchmarks.md are
    /// made from it by loadtest/report.py).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// Runs the sweeps and writes `<out>/benchmarks.json`.
pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings = spillway_loadgen::bench::BenchSettings {
        spillway_bin: args.stack.spillway_bin,
        loadgen_bin: std::env::current_exe()?,
        brokers: args.stack.brokers,
        redis_nodes: args.stack.redis_nodes,
        rates: args.rates,
        step: args.step,
        connections: args.connections,
        p99_bound_ms: args.p99_bound_ms,
        linger: args.linger,
        partitions: args.partitions,
        sustained_rate: args.sustained_rate,
        sustained_step: args.sustained_step,
        overload_step: args.overload_step,
        overload_connections: args.overload_connections,
        dir: args.out.join(format!("run-{}", std::process::id())),
    };
    let results = spillway_loadgen::bench::bench(&settings).await?;
    // The headline is written with the figures, so that loadtest/report.py prints the
    // same line rather than formatting it again.
    let mut written = serde_json::to_value(&results)?;
    written["headline"] = results.headline().into();
    write_results(&args.out, "benchmarks.json", &written)?;
    println!("{}", results.headline());
    Ok(ExitCode::SUCCESS)
}
