//! A real Prometheus (Debian's package, which `make up` installs) on loopback, scraping the
//! given targets every second, with the given rule files, and its HTTP query API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::wait::Wait;
use crate::{free_port, Client};

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    client: Client,
}

impl Prometheus {
    /// Starts Prometheus with its data and log in `dir`; waits until it is ready.
    pub async fn start(dir: &Path, targets: &[SocketAddr], rule_files: &[PathBuf]) -> Self {
        let bin = which("prometheus").expect("prometheus is not installed: run `make up`");
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|r| format!("\"{}\"", r.display()))
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n  - job_name: spillway\n    static_configs: [{{ targets: [{}] }}]\n",
                rules.join(", "),
                targets.join(", ")
            ),
        )
        .expect("prometheus.yml");
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            client: Client::http1(),
        };
        let ready = Wait::new()
            .poll(async || {
                match prometheus
                    .client
                    .get(&format!("http://{}/-/ready", prometheus.addr))
                    .await
                {
                    Ok(reply) if reply.status == 200 => Ok(()),
                    Ok(reply) => Err(format!("/-/ready answered {}", reply.status)),
                    Err(e) => Err(e),
                }
            })
            .await;
        if let Err(last) = ready {
            panic!(
                "prometheus never became ready ({last}):\n{}",
                prometheus.log_text()
            );
        }
        prometheus
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/{path}?{params}`: the `data` of a successful answer, or the error.
    pub async fn api(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let reply = self
            .client
            .get(&format!("http://{}/api/v1/{path}?{query}", self.addr))
            .await?;
        let body: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| format!("{e}: {:?}", reply.body))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query: its result vector (empty when no series matched).
    pub async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// A range query over the last `seconds`, one point a second: its series.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<serde_json::Value>, String> {
        let (start, end) = (start.to_string(), end.to_string());
        let data = self
            .api(
                "query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", "1"),
                ],
            )
            .await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
