//! `make bench`'s worker figures, on the local stack with a release ingress and worker and a
//! fast keep-alive subscriber in this process ([`crate::sink`]): the latency from the
//! ingress's 202 to the subscriber's receipt while the ingress takes its half rate (the live
//! phase), then how fast one worker delivers a backlog, and its CPU per delivery (the backlog
//! phase); both over HTTP/1.1, then both over HTTP/2 (HTTPS, a private CA in
//! `worker.extra_roots`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use spillway_testkit::{free_port, LocalCa, WorkerProcess};

use crate::plan::{Mix, Planner};
use crate::run::Settings;
use crate::server::{create_topics, start_ingress, Server};
use crate::signing::SignedSource;
use crate::sink::Sink;

/// How long a phase waits for deliveries after the last one came: tansu skips some for good
/// (docs/development.md), and those are counted as missing, not waited for.
const PATIENCE: Duration = Duration::from_secs(5);

/// A phase run before the measured ones and thrown away: connections, first round trips, a
/// worker joining its consumer group.
pub(crate) const WARM_UP: Duration = Duration::from_secs(2);

/// The worker's `fetch.wait.max.ms` here (librdkafka's default is 500). Kafka answers a
/// fetch as soon as it has a record, whatever the wait; the local broker (tansu 0.6) sleeps
/// for half of what is left of it even when it found records (docs/development.md), which put
/// 250 ms behind every delivery and capped a worker near 1,000 deliveries/s. 10 ms keeps
/// that sleep to about 5 ms, closer to how Kafka answers (measured 2026-12-04 at 2,500/s:
/// p99 of 202 to receipt 520 ms with 500, 47 ms with 20, 27 ms with 10).
pub const FETCH_WAIT_MS: u32 = 10;

/// What the worker benchmark runs with.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub spillway_bin: PathBuf,
    pub brokers: String,
    pub redis_nodes: Vec<String>,
    /// The ingress's load during the live phase (requests/s): its half rate.
    pub rate: f64,
    pub duration: Duration,
    /// Events written while no worker runs, then delivered by one.
    pub backlog: u64,
    /// The rate at which the backlog is written.
    pub backlog_rate: f64,
    pub dir: PathBuf,
}

/// Everything the worker benchmark measured: over HTTP/1.1 (`live`, `backlog`) and over
/// HTTP/2 with TLS (`h2`).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerResults {
    /// The worker's `fetch.wait.max.ms` ([`FETCH_WAIT_MS`]).
    pub fetch_wait_ms: u32,
    pub live: Live,
    pub backlog: Backlog,
    pub h2: Phases,
}

/// The two phases over one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    pub live: Live,
    pub backlog: Backlog,
}

/// How the worker reaches the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Plain HTTP/1.1 keep-alive.
    Http1,
    /// HTTPS, h2 by ALPN, the subscriber's certificate signed by a private CA the worker
    /// trusts through `worker.extra_roots`.
    Http2,
}

/// From the ingress's 202 to the subscriber's receipt, while the ingress takes `rate`.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub rate: f64,
    pub accepted: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The worker's CPU per delivery during this phase (µs).
    pub cpu_us_per_delivery: f64,
}

/// One worker delivering events that waited in Kafka.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub events: u64,
    pub delivered: u64,
    /// From the first delivery to the last.
    pub seconds: f64,
    pub deliveries_per_s: f64,
    /// The worker's CPU per delivery (µs), its start included.
    pub cpu_us_per_delivery: f64,
    /// Deliveries one core of the worker would make per second: 1 s of CPU / CPU per delivery.
    pub deliveries_per_core_s: f64,
}

/// An ingress and a subscriber on the bench's own config, for workers to run between.
pub(crate) struct Rig {
    sink: Sink,
    config: PathBuf,
    sources: Vec<SignedSource>,
    ingress: Server,
    dir: PathBuf,
    spillway_bin: PathBuf,
}

impl Rig {
    pub(crate) async fn start(
        spillway_bin: &Path,
        brokers: &str,
        redis_nodes: &[String],
        dir: &Path,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca = (protocol == Protocol::Http2).then(|| LocalCa::write(dir));
        let sink = Sink::start(ca.as_ref().map(LocalCa::acceptor)).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let config = write_config(
            dir,
            brokers,
            redis_nodes,
            &run,
            &sink.url(),
            ca.as_ref().map(|ca| ca.ca_file.as_path()),
        )?;
        let parsed = spillway_config::load(&config)?;
        create_topics(spillway_bin, &config).await?;
        let sources = SignedSource::from_config(&parsed)
            .map_err(|e| anyhow::anyhow!(spillway_config::describe(&e)))?;
        let ingress = start_ingress(spillway_bin, &config, &dir.join("ingress.log")).await?;
        Ok(Self {
            sink,
            config,
            sources,
            ingress,
            dir: dir.to_owned(),
            spillway_bin: spillway_bin.to_owned(),
        })
    }

    pub(crate) fn spawn_worker(&self, name: &str) -> WorkerProcess {
        WorkerProcess::spawn(
            &self.spillway_bin,
            &self.config,
            self.dir.join(format!("{name}.log")),
        )
    }

    pub(crate) async fn stop(self) {
        self.ingress.stop().await;
    }

    /// The ingress takes `rate` for `duration` while the worker `pid` delivers: each event's
    /// latency from its 202 to its receipt, and the worker's CPU per delivery.
    pub(crate) async fn live(
        &self,
        pid: i32,
        rate: f64,
        duration: Duration,
        seed: u64,
    ) -> anyhow::Result<Live> {
        let cpu_before = crate::cpu::cpu_time(pid)?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let planner = Planner::new(self.sources.clone(), mix()?, &run_id, seed);
        let report = crate::run::run(&load(&self.ingress.base, rate, duration), planner).await?;
        let accepted: Vec<(String, Instant)> = report
            .answers()
            .iter()
            .filter_map(|a| match &a.result {
                Ok((202, Some(id))) => Some((id.clone(), a.at)),
                _ => None,
            })
            .collect();
        let ids: Vec<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
        self.sink.wait_for(&ids, PATIENCE, || Ok(())).await?;
        let cpu = crate::cpu::cpu_time(pid)?.saturating_sub(cpu_before);
        let received = self.sink.take();
        let mut latencies: Vec<f64> = accepted
            .iter()
            .filter_map(|(id, at)| {
                let got = received.get(id)?;
                Some(got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let live = Live {
            rate,
            accepted: accepted.len() as u64,
            delivered: latencies.len() as u64,
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / (latencies.len().max(1) as f64),
        };
        eprintln!(
            "worker live: {} accepted at {}/s, {} delivered, 202 to receipt p50 {:.1} ms p99 {:.1} ms, worker {:.1} µs per delivery",
            live.accepted, live.rate, live.delivered, live.p50_ms, live.p99_ms, live.cpu_us_per_delivery
        );
        Ok(live)
    }

    /// Events written while no worker runs, then one fresh worker delivers them all: from its
    /// first delivery to its last, and its CPU over the same span (its start and its group
    /// join left out).
    async fn backlog(&self, events: u64, rate: f64) -> anyhow::Result<Backlog> {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let planner = Planner::new(self.sources.clone(), mix()?, &run_id, 13);
        let duration = Duration::from_secs_f64(events as f64 / rate);
        let report = crate::run::run(&load(&self.ingress.base, rate, duration), planner).await?;
        let accepted: Vec<&str> = report
            .answers()
            .iter()
            .filter_map(|a| match &a.result {
                Ok((202, Some(id))) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        // Only this backlog's deliveries count.
        self.sink.take();
        let mut worker = self.spawn_worker("worker-backlog");
        let pid = i32::try_from(worker.pid())?;
        let mut cpu_at_first = None;
        self.sink
            .wait_for(&accepted, PATIENCE, || {
                if cpu_at_first.is_none() && self.sink.count() > 0 {
                    cpu_at_first = Some(crate::cpu::cpu_time(pid)?);
                }
                Ok(())
            })
            .await?;
        let cpu = crate::cpu::cpu_time(pid)?.saturating_sub(cpu_at_first.unwrap_or_default());
        let received = self.sink.take();
        let times: Vec<Instant> = accepted
            .iter()
            .filter_map(|id| received.get(*id).copied())
            .collect();
        let delivered = times.len();
        let seconds = match (times.iter().min(), times.iter().max()) {
            (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
            _ => 0.0,
        };
        // n deliveries span n - 1 intervals.
        let intervals = delivered.saturating_sub(1).max(1) as f64;
        let cpu_us_per_delivery = cpu.as_secs_f64() * 1e6 / intervals;
        let backlog = Backlog {
            events: accepted.len() as u64,
            delivered: delivered as u64,
            seconds,
            deliveries_per_s: intervals / seconds.max(f64::EPSILON),
            cpu_us_per_delivery,
            deliveries_per_core_s: 1e6 / cpu_us_per_delivery.max(f64::EPSILON),
        };
        eprintln!(
            "worker backlog: {} of {} delivered in {:.1} s: {:.0}/s, {:.1} µs of worker CPU per delivery ({:.0} per core-second)",
            backlog.delivered, backlog.events, backlog.seconds, backlog.deliveries_per_s, backlog.cpu_us_per_delivery, backlog.deliveries_per_core_s
        );
        let _ = worker.terminate_and_wait();
        Ok(backlog)
    }
}

pub async fn worker(settings: &WorkerSettings) -> anyhow::Result<WorkerResults> {
    let http1 = phases(settings, Protocol::Http1, "http1").await?;
    let h2 = phases(settings, Protocol::Http2, "h2").await?;
    Ok(WorkerResults {
        fetch_wait_ms: FETCH_WAIT_MS,
        live: http1.live,
        backlog: http1.backlog,
        h2,
    })
}

/// The live phase, then the backlog, on a rig of their own reaching the subscriber over
/// `protocol`.
async fn phases(
    settings: &WorkerSettings,
    protocol: Protocol,
    name: &str,
) -> anyhow::Result<Phases> {
    eprintln!("worker phases over {protocol:?}");
    let rig = Rig::start(
        &settings.spillway_bin,
        &settings.brokers,
        &settings.redis_nodes,
        &settings.dir.join(name),
        protocol,
    )
    .await?;
    let mut worker = rig.spawn_worker("worker-live");
    worker.admin_addr().await;
    let pid = i32::try_from(worker.pid())?;
    // The worker joins its group after it logs its start: a short phase first, thrown away,
    // so that the join is not in the figures.
    rig.live(pid, settings.rate, WARM_UP, 99).await?;
    let live = rig.live(pid, settings.rate, settings.duration, 11).await?;
    let _ = worker.terminate_and_wait();
    let backlog = rig.backlog(settings.backlog, settings.backlog_rate).await?;
    let (h2, older) = rig.sink.versions();
    rig.stop().await;
    if protocol == Protocol::Http2 {
        // The worker offers h2 and http/1.1 by ALPN: a fallback would label HTTP/1.1 figures
        // as HTTP/2.
        anyhow::ensure!(
            older == 0 && h2 > 0,
            "the HTTPS subscriber got {h2} HTTP/2 and {older} HTTP/1.x requests: h2 was not negotiated"
        );
    }
    Ok(Phases { live, backlog })
}

fn mix() -> anyhow::Result<Mix> {
    Ok(Mix {
        duplicates: 0.0,
        tampered: 0.0,
        stale: 0.0,
        body_sizes: "1024".parse().map_err(anyhow::Error::msg)?,
    })
}

fn load(target: &str, rate: f64, duration: Duration) -> Settings {
    Settings {
        target: target.to_owned(),
        rate,
        duration,
        connections: 256,
        http2: false,
        timeout: Duration::from_secs(10),
        progress: false,
    }
}

/// A config for the ingress and a worker delivering every event once to `sink`.
fn write_config(
    dir: &Path,
    brokers: &str,
    redis_nodes: &[String],
    run: &str,
    sink: &str,
    extra_roots: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let file = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let nodes: Vec<String> = redis_nodes.iter().map(|n| format!("\"{n}\"")).collect();
    let yaml = format!(
        "ingress: {{ listen: 127.0.0.1:{}, max_in_flight: 8192, block_failing_clients: null }}\n\
         admin: {{ listen: 127.0.0.1:{} }}\n\
         kafka: {{ brokers: \"{}\", topic_prefix: \"worker.{run}.\", single_replica: true, linger: 5ms }}\n\
         redis: {{ nodes: [{}], key_prefix: \"worker.{run}.\" }}\n\
         worker: {{ admin_listen: \"127.0.0.1:0\", group_id: \"worker.{run}.workers\", allow_cidrs: [127.0.0.0/8, \"::1/128\"], record_attempts: false, consumer_properties: {{ fetch.wait.max.ms: \"{}\" }}{} }}\n\
         subscriptions: [{{ id: sink, url: \"{sink}\", secrets: [{{ id: s, file: \"{}\" }}] }}]\n\
         sources:\n  acme: {{ verify: {{ scheme: standard-webhooks }}, secrets: [{{ id: acme-1, file: \"{}\" }}] }}\n",
        free_port(),
        free_port(),
        brokers,
        nodes.join(", "),
        FETCH_WAIT_MS,
        extra_roots.map_or(String::new(), |ca| format!(", extra_roots: \"{}\"", ca.display())),
        file("sink.secret", "whsec_c2luay1zZWNyZXQta2V5LTk4NzY1NDMy")?,
        file("acme.secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?,
    );
    let path = dir.join("worker.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}
