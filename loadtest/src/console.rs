//! `make bench`'s console figures, on the local stack with a release ingress, worker and
//! console and a private PostgreSQL: how far behind the index is while the ingress takes a
//! steady rate and the worker delivers every event (one attempt each) to a fast subscriber;
//! how fast a fresh indexer catches up on all of it; and search latency over an index of a
//! million events ([`search`]).

pub mod search;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::Method;
use serde::Serialize;
use serde_json::Value;
use spillway_testkit::{free_port, ConsoleProcess, Postgres, WorkerProcess};

use crate::plan::{Mix, Planner};
use crate::run::Settings;
use crate::server::{create_topics, start_bare, start_ingress};
use crate::signing::SignedSource;

/// The bench's operator token.
const TOKEN: &str = "bench-console-token-0123456789";

/// What the console benchmark runs with.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub spillway_bin: PathBuf,
    pub brokers: String,
    pub redis_nodes: Vec<String>,
    /// The ingress's load while the index is measured (requests/s).
    pub rate: f64,
    pub duration: Duration,
    /// Events in the index searched.
    pub search_events: u64,
    pub dir: PathBuf,
}

/// Everything the console benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleResults {
    pub live: LiveIndex,
    pub catch_up: CatchUp,
    pub search: search::SearchResults,
}

/// The index while the ingress takes `rate`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveIndex {
    pub rate: f64,
    pub accepted: u64,
    /// Attempts indexed: one per accepted event, less the deliveries the worker never made
    /// because tansu skips the rest of a record batch after a paused partition resumes
    /// (docs/development.md); Kafka does not.
    pub attempts: u64,
    pub duration_s: f64,
    /// Age of the newest indexed event, sampled every 250 ms while the load ran (ms); absent
    /// when nothing was indexed during the load.
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    /// From the end of the load until every accepted event was indexed.
    pub events_indexed_after_ms: f64,
    /// From the end of the load until the last attempt was indexed: the worker's backlog
    /// more than the index's.
    pub drained_after_ms: f64,
    /// Events and attempts written per second over the run, load and drain.
    pub rows_per_s: f64,
    /// CPU of the console process per indexed row (µs).
    pub console_cpu_us_per_row: f64,
}

/// A fresh indexer reading everything from the start of the topics.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUp {
    pub events: u64,
    pub attempts: u64,
    pub seconds: f64,
    /// Events and attempts per second into PostgreSQL.
    pub rows_per_s: f64,
}

/// The stack of one run: its config, directory and PostgreSQL.
struct Stack {
    postgres: Postgres,
    dir: PathBuf,
    run: String,
}

pub async fn console(settings: &ConsoleSettings) -> anyhow::Result<ConsoleResults> {
    std::fs::create_dir_all(&settings.dir)?;
    let stack = Stack {
        postgres: Postgres::start(),
        dir: settings.dir.clone(),
        run: uuid::Uuid::new_v4().simple().to_string(),
    };
    let bare = start_bare(&std::env::current_exe()?).await?;
    let config = stack.write_config(settings, "live", &format!("{}/sink", bare.base))?;
    let parsed = spillway_config::load(&config)?;
    // Every topic, the workers' retry tiers, dead letters and attempts too, as an operator
    // makes them.
    create_topics(&settings.spillway_bin, &config).await?;
    let sources = SignedSource::from_config(&parsed)
        .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
    let ingress = start_ingress(
        &settings.spillway_bin,
        &config,
        &stack.dir.join("ingress.log"),
    )
    .await?;
    let mut worker = WorkerProcess::spawn(
        &settings.spillway_bin,
        &config,
        stack.dir.join("worker.log"),
    );
    worker.admin_addr().await;
    let mut console = ConsoleProcess::spawn(
        &settings.spillway_bin,
        &config,
        stack.dir.join("console.log"),
    );
    console.wait_ready().await;
    let live = live(settings, &ingress.base, &console, sources).await?;
    eprintln!(
        "console live: {} accepted at {}/s, {} attempts, index lag p50 {:?} ms p99 {:?} ms, drained {:.0} ms after the load",
        live.accepted, live.rate, live.attempts, live.lag_p50_ms, live.lag_p99_ms, live.drained_after_ms
    );
    drop(console);
    ingress.stop().await;
    drop(worker);

    // A second console on an empty database reads the same topics from their start.
    let fresh = stack.write_config(settings, "fresh", &format!("{}/sink", bare.base))?;
    let mut console = ConsoleProcess::spawn(
        &settings.spillway_bin,
        &fresh,
        stack.dir.join("console-fresh.log"),
    );
    console.wait_ready().await;
    // From ready: the process's start (schema, registry) is not the indexer's rate. It
    // indexes from the moment it starts, so this errs on the fast side by that much.
    let started = Instant::now();
    let Indexed {
        events,
        attempts,
        settled,
        ..
    } = wait_indexed(
        &console,
        live.accepted,
        Some(live.attempts),
        Duration::from_secs(600),
    )
    .await?;
    let seconds = settled.duration_since(started).as_secs_f64();
    let catch_up = CatchUp {
        events,
        attempts,
        seconds,
        rows_per_s: (events + attempts) as f64 / seconds,
    };
    eprintln!(
        "console catch-up: {} events and {} attempts in {:.1} s: {:.0} rows/s",
        events, attempts, seconds, catch_up.rows_per_s
    );
    let search = search::run(
        &stack.postgres,
        "fresh",
        &console,
        TOKEN,
        settings.search_events,
    )
    .await?;
    bare.stop().await;
    Ok(ConsoleResults {
        live,
        catch_up,
        search,
    })
}

impl Stack {
    /// A config for the ingress, a worker delivering everything to `sink`, and a console on
    /// the database `name` (created here).
    fn write_config(
        &self,
        settings: &ConsoleSettings,
        name: &str,
        sink: &str,
    ) -> anyhow::Result<PathBuf> {
        let dir = &self.dir;
        let database = self.postgres.database(name);
        let file = |file: &str, text: &str| -> anyhow::Result<String> {
            let path = dir.join(file);
            std::fs::write(&path, text)?;
            Ok(path.display().to_string())
        };
        let nodes: Vec<String> = settings
            .redis_nodes
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        let run = &self.run;
        let yaml = format!(
            "ingress: {{ listen: 127.0.0.1:{}, max_in_flight: 8192, block_failing_clients: null }}\n\
             admin: {{ listen: 127.0.0.1:{} }}\n\
             kafka: {{ brokers: \"{}\", topic_prefix: \"console.{run}.\", single_replica: true }}\n\
             redis: {{ nodes: [{}], key_prefix: \"console.{run}.\" }}\n\
             worker: {{ admin_listen: \"127.0.0.1:0\", group_id: \"console.{run}.workers\", allow_cidrs: [127.0.0.0/8] }}\n\
             subscriptions: [{{ id: sink, url: \"{sink}\", secrets: [{{ id: s, file: \"{}\" }}] }}]\n\
             console: {{ listen: \"127.0.0.1:0\", database_url: {{ file: \"{}\" }}, \
             tokens: [{{ name: bench, role: operator, token: {{ file: \"{}\" }} }}] }}\n\
             sources:\n  acme: {{ verify: {{ scheme: standard-webhooks }}, secrets: [{{ id: acme-1, file: \"{}\" }}] }}\n",
            free_port(),
            free_port(),
            settings.brokers,
            nodes.join(", "),
            file("sink.secret", "whsec_c2luay1zZWNyZXQta2V5LTk4NzY1NDMy")?,
            file(&format!("{name}.database"), &database)?,
            file("console.token", TOKEN)?,
            file("acme.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?,
        );
        let path = dir.join(format!("console-{name}.yaml"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }
}

/// The load at `settings.rate` while `/v1/status` is sampled; then the wait for the rest.
async fn live(
    settings: &ConsoleSettings,
    target: &str,
    console: &ConsoleProcess,
    sources: Vec<SignedSource>,
) -> anyhow::Result<LiveIndex> {
    let mix = Mix {
        duplicates: 0.0,
        tampered: 0.0,
        stale: 0.0,
        body_sizes: "1024".parse().map_err(anyhow::Error::msg)?,
    };
    let planner = Planner::new(sources, mix, "console", 7);
    let pid = console_pid(console)?;
    let cpu_before = crate::cpu::cpu_time(pid)?;
    let started = Instant::now();
    let load = tokio::spawn({
        let settings = Settings {
            target: target.to_owned(),
            rate: settings.rate,
            duration: settings.duration,
            connections: 256,
            http2: false,
            timeout: Duration::from_secs(10),
            progress: false,
        };
        async move { crate::run::run(&settings, planner).await }
    });
    let mut lags = Vec::new();
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(age) = status(console).await?["newest_event_age_ms"].as_f64() {
            lags.push(age);
        }
    }
    let report = load.await??;
    let load_ended = Instant::now();
    let accepted = report.summary().statuses.get(&202).copied().unwrap_or(0);
    // Every event gets one attempt, except those the worker skips on tansu (below).
    let indexed = wait_indexed(console, accepted, None, Duration::from_secs(600)).await?;
    let after_load = |at: Instant| at.saturating_duration_since(load_ended).as_secs_f64() * 1000.0;
    let (events, attempts, settled) = (indexed.events, indexed.attempts, indexed.settled);
    let drained_after_ms = after_load(settled);
    let events_indexed_after_ms = after_load(indexed.events_done);
    let rows = (events + attempts) as f64;
    let cpu = crate::cpu::cpu_time(pid)?.saturating_sub(cpu_before);
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    Ok(LiveIndex {
        rate: settings.rate,
        accepted,
        lag_p50_ms: at(0.5),
        lag_p99_ms: at(0.99),
        lag_max_ms: lags.last().copied(),
        duration_s: settings.duration.as_secs_f64(),
        drained_after_ms,
        events_indexed_after_ms,
        attempts,
        rows_per_s: rows / settled.duration_since(started).as_secs_f64(),
        console_cpu_us_per_row: cpu.as_secs_f64() * 1e6 / rows.max(1.0),
    })
}

async fn status(console: &ConsoleProcess) -> anyhow::Result<Value> {
    let reply = console
        .call(Method::GET, "/v1/status", Some(TOKEN), &Value::Null)
        .await;
    anyhow::ensure!(reply.status == 200, "/v1/status answered {}", reply.status);
    Ok(reply.json())
}

/// How long the attempts count must stand still before the index counts as drained.
const QUIET: Duration = Duration::from_secs(5);

/// What [`wait_indexed`] saw.
struct Indexed {
    events: u64,
    attempts: u64,
    /// When the last row was indexed.
    settled: Instant,
    /// When the last event was indexed.
    events_done: Instant,
}

/// Waits until the console has indexed `events` events and `attempts` attempts, or, without
/// `attempts`, until the attempts stop growing for [`QUIET`].
async fn wait_indexed(
    console: &ConsoleProcess,
    events: u64,
    attempts: Option<u64>,
    patience: Duration,
) -> anyhow::Result<Indexed> {
    let deadline = Instant::now() + patience;
    let mut last = (0, 0, Instant::now());
    let mut events_done = None;
    loop {
        let now = status(console).await?;
        let counts = (
            now["events"].as_u64().unwrap_or(0),
            now["attempts"].as_u64().unwrap_or(0),
        );
        if counts != (last.0, last.1) {
            last = (counts.0, counts.1, Instant::now());
        }
        if counts.0 >= events && events_done.is_none() {
            events_done = Some(last.2);
        }
        let attempts_done = match attempts {
            Some(wanted) => counts.1 >= wanted,
            None => last.2.elapsed() >= QUIET,
        };
        if let (Some(events_done), true) = (events_done, attempts_done) {
            return Ok(Indexed {
                events: last.0,
                attempts: last.1,
                settled: last.2,
                events_done,
            });
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the index holds {} events and {} attempts of {events} after {patience:?}",
            counts.0,
            counts.1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn console_pid(console: &ConsoleProcess) -> anyhow::Result<i32> {
    Ok(i32::try_from(console.pid())?)
}
