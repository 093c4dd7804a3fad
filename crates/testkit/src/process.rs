//! Child processes of end-to-end tests: `spillway ingress` and a private tansu broker. Both are
//! killed when their handle drops, so a failing test leaves nothing running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::wait::{eventually, eventually_blocking, patience, Wait};
use crate::Client;

/// A running `spillway ingress`.
#[derive(Debug)]
pub struct IngressProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl IngressProcess {
    /// Starts `bin ingress --config config` (the config should listen on port 0) and waits for
    /// the line announcing its addresses.
    pub fn spawn(bin: &Path, config: &Path, envs: &[(&str, &str)], log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("log file");
        // Text logs unless the test asks for another format through the environment.
        let format_chosen = envs.iter().any(|(k, _)| *k == "SPILLWAY_LOG_FORMAT");
        let mut command = Command::new(bin);
        if !format_chosen {
            command.args(["--log-format", "text"]);
        }
        let mut child = command
            .args(["ingress", "--config"])
            .arg(config)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn spillway");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).unwrap_or(0);
        if read == 0 {
            let _ = child.kill();
            panic!(
                "spillway ingress exited before listening; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let announced: serde_json::Value = serde_json::from_str(&line).expect("listening line");
        let addr = |k: &str| -> SocketAddr {
            announced[k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("address in listening line")
        };
        Self {
            addr: addr("ingress"),
            admin: addr("admin"),
            child,
            log,
        }
    }

    pub fn hook_url(&self, source: &str) -> String {
        format!("http://{}/v1/hooks/{source}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for /readyz to say 200 (within [`patience`], a guard against hangs, not a speed
    /// check).
    pub async fn wait_ready(&self) {
        let client = Client::http1();
        let ready = Wait::new()
            .poll(
                async || match client.get(&self.admin_url("/readyz")).await {
                    Ok(reply) if reply.status == 200 => Ok(()),
                    Ok(reply) => Err(format!("/readyz answered {}", reply.status)),
                    Err(e) => Err(e),
                },
            )
            .await;
        if let Err(last) = ready {
            panic!(
                "ingress not ready within {:?} ({last}); log:\n{}",
                patience(),
                self.log_text()
            );
        }
    }

    pub async fn metrics(&self) -> String {
        let reply = Client::http1()
            .get(&self.admin_url("/metrics"))
            .await
            .expect("scrape");
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Waits for the process to exit (within [`patience`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let exited = Wait::new().poll_blocking(|| self.child.try_wait().expect("try_wait"));
        exited.unwrap_or_else(|_| {
            panic!(
                "ingress did not exit within {:?}; log:\n{}",
                patience(),
                self.log_text()
            )
        })
    }
}

impl Drop for IngressProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pid}");
}

/// A private tansu broker: sqlite storage, so that a restart keeps its data, or memory storage
/// (faster, and without the sqlite storage's epoch panic; see docs/development.md) for cases
/// that never restart it.
#[derive(Debug)]
pub struct Tansu {
    child: Option<Child>,
    /// Where it listens.
    pub port: u16,
    /// The port it tells clients to connect to (its own, or a proxy's in front of it).
    advertised: u16,
    /// `--storage-engine`: a file relative to `dir`, or a PostgreSQL server's URL.
    storage: String,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker on a free loopback port.
    pub fn start_sqlite() -> Self {
        Self::start_sqlite_behind(None)
    }

    /// Starts a broker that advertises `proxy_port` (a proxy in front of it, which forwards
    /// to [`Tansu::listen_addr`]) instead of its own port, so clients reach it only through
    /// the proxy; its own port when `None`.
    pub fn start_sqlite_behind(proxy_port: Option<u16>) -> Self {
        Self::start_on("sqlite://tansu.db", proxy_port)
    }

    /// Starts a broker with memory storage that advertises `proxy_port`, as
    /// [`Tansu::start_sqlite_behind`] does; its data is gone when it stops.
    pub fn start_memory_behind(proxy_port: u16) -> Self {
        Self::start_on("memory://tansu/", Some(proxy_port))
    }

    /// A broker on a free loopback port whose storage is `postgres` (tansu's PostgreSQL
    /// storage) and that advertises `proxy_port`, not started yet. Several such brokers over
    /// one server are one cluster in which every broker answers for every partition as node
    /// 111, so clients must reach them through one address, a balancer's on `proxy_port`: a
    /// client that knew a broker by its own address would go on trying that address for the
    /// group coordinator after it died (librdkafka keeps a coordinator's address while its id
    /// stays the same).
    pub fn on_postgres_behind(postgres: &crate::Postgres, proxy_port: u16) -> Self {
        Self::prepare(postgres.url(), Some(proxy_port))
    }

    fn start_on(storage: &str, proxy_port: Option<u16>) -> Self {
        let mut tansu = Self::prepare(storage.to_owned(), proxy_port);
        tansu.start();
        tansu
    }

    fn prepare(storage: String, proxy_port: Option<u16>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tansu takes no port 0: a port reserved for this process (see `ports`).
        let port = crate::free_port();
        Self {
            child: None,
            port,
            advertised: proxy_port.unwrap_or(port),
            storage,
            dir,
        }
    }

    /// Bootstrap servers: the advertised address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// Where the broker itself listens.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// (Re)starts the broker on its port and data (sqlite storage keeps it).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = crate::tansu_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `dev/tansu.sh install` (or `make up`)",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("log");
        let child = Command::new(bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", &self.storage])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let port = self.port;
        eventually_blocking(format!("tansu to listen on {port}"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())
        });
    }

    /// Its log (both runs, when restarted).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// True while the broker process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the broker with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `spillway worker`.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    pub fn spawn(bin: &Path, config: &Path, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(["--log-format", "text", "worker", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn spillway worker");
        Self { child, log }
    }

    /// The admin address the worker bound, from its startup log line (text logs).
    pub async fn admin_addr(&mut self) -> SocketAddr {
        eventually("the worker to announce its admin address", async || {
            let text = self.log_text();
            let announced = text
                .lines()
                .filter(|l| l.contains("spillway worker started"))
                .find_map(|l| l.split("admin=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if announced.is_none() {
                assert!(self.is_running(), "worker exited:\n{text}");
            }
            announced.ok_or_else(|| format!("no announcement in its log:\n{text}"))
        })
        .await
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as Kubernetes does, and waits for the process to exit (within
    /// [`patience`]).
    pub fn terminate_and_wait(&mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        Wait::new()
            .poll_blocking(|| self.child.try_wait().expect("try_wait"))
            .unwrap_or_else(|_| {
                panic!(
                    "worker did not exit within {:?}; log:\n{}",
                    patience(),
                    self.log_text()
                )
            })
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of one series in a Prometheus text exposition (such as [`IngressProcess::metrics`]
/// returns): `series` is its name with its labels as exposed, `name{label="value"}`, or the
/// name alone for a series without labels. None when the series is not there.
pub fn series_value(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// A figure of `/proc/<pid>/status`, in bytes (`VmHWM`: the peak resident set).
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
