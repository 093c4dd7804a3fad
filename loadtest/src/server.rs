//! The server processes the benchmarks measure: a release `spillway ingress` started on a
//! config of the bench's own, or the bare, floor and Node.js baselines; their pids for /proc,
//! their base URLs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

/// How long a baseline server may take to connect and print its address.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A server process under test, killed when stopped or dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// e.g. `http://127.0.0.1:41234`.
    pub base: String,
    pub pid: i32,
}

// === impl Server ===

impl Server {
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Starts `spillway ingress --config config`, logging to `log`, and waits until it is ready.
pub async fn start_ingress(
    spillway_bin: &Path,
    config: &Path,
    log: &Path,
) -> anyhow::Result<Server> {
    let parsed = spillway_config::load(config)?;
    let child = Command::new(spillway_bin)
        .args(["--log-format", "text", "ingress", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", spillway_bin.display()))?;
    let pid = i32::try_from(child.id().context("ingress pid")?)?;
    let ready = format!("http://{}/readyz", parsed.admin.listen);
    for _ in 0..300 {
        if http_ok(&ready).await {
            return Ok(Server {
                child,
                base: format!("http://{}", parsed.ingress.listen),
                pid,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the ingress never became ready; see {}", log.display())
}

/// `spillway topics create --config config`: every topic of the config, the workers' retry
/// tiers, dead letters and attempts too, as an operator makes them.
pub async fn create_topics(spillway_bin: &Path, config: &Path) -> anyhow::Result<()> {
    let made = Command::new(spillway_bin)
        .args(["topics", "create", "--config"])
        .arg(config)
        .output()
        .await?;
    anyhow::ensure!(
        made.status.success(),
        "spillway topics create: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(())
}

/// Starts `spillway-loadgen bare` and reads the address it prints.
pub async fn start_bare(loadgen_bin: &Path) -> anyhow::Result<Server> {
    start_printing_address(loadgen_bin, "bare", &["--listen", "127.0.0.1:0"]).await
}

/// Starts the Node.js receiver in `dir` (loadtest/node-receiver, its packages installed) with
/// `env`, and reads the address it prints once connected to both engines.
pub async fn start_node_receiver(dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Server> {
    let mut command = Command::new("node");
    command
        .arg(dir.join("receiver.js"))
        .envs(env.iter().cloned());
    read_address(command, "the Node.js receiver").await
}

/// Starts `spillway-loadgen floor` writing to its topics (which must exist), and reads the
/// address it prints once connected to both engines.
pub async fn start_floor(
    loadgen_bin: &Path,
    settings: &crate::floor::FloorSettings,
) -> anyhow::Result<Server> {
    let linger = format!("{}ms", settings.linger.as_millis());
    let topics = settings.topics.join(",");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--brokers",
        &settings.brokers,
        "--redis",
        &settings.redis_seed,
        "--topic",
        &topics,
        "--linger",
        &linger,
        "--work",
        settings.work.name(),
    ];
    start_printing_address(loadgen_bin, "floor", &args).await
}

/// Starts `loadgen_bin command args`, a server that prints its address on its first line
/// when ready.
async fn start_printing_address(
    loadgen_bin: &Path,
    command: &str,
    args: &[&str],
) -> anyhow::Result<Server> {
    let mut started = Command::new(loadgen_bin);
    started.arg(command).args(args);
    read_address(started, &format!("`spillway-loadgen {command}`")).await
}

/// Spawns `command`, a server that prints its address on its first line when ready (within
/// [`READY_WITHIN`]), and reads it.
async fn read_address(mut command: Command, what: &str) -> anyhow::Result<Server> {
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = i32::try_from(child.id().context("server pid")?)?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(READY_WITHIN, lines.next_line())
        .await
        .with_context(|| format!("{what} printed no address within {READY_WITHIN:?}"))??
        .with_context(|| format!("{what} printed no address"))?;
    Ok(Server {
        child,
        base: format!("http://{}", addr.trim()),
        pid,
    })
}

async fn http_ok(url: &str) -> bool {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    client.get(uri).await.is_ok_and(|r| r.status().is_success())
}
