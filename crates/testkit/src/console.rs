//! `spillway console` as the end-to-end tests run it: the process on a test's config, its
//! address from its startup line, and its API called with a token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::{eventually, Client, Reply};

/// A running `spillway console`.
#[derive(Debug)]
pub struct ConsoleProcess {
    child: Child,
    log: PathBuf,
    addr: Option<SocketAddr>,
}

impl ConsoleProcess {
    pub fn spawn(bin: &Path, config: &Path, log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(["--log-format", "text", "console", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn spillway console");
        Self {
            child,
            log,
            addr: None,
        }
    }

    /// Waits for the console to announce its address, then for `/readyz`.
    pub async fn wait_ready(&mut self) -> SocketAddr {
        let addr = eventually("the console to announce its address", async || {
            let text = self.log_text();
            let announced = text
                .lines()
                .filter(|l| l.contains("spillway console started"))
                .find_map(|l| l.split("listen=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if announced.is_none() {
                assert!(self.is_running(), "console exited:\n{text}");
            }
            announced.ok_or_else(|| format!("no announcement in its log:\n{text}"))
        })
        .await;
        self.addr = Some(addr);
        let client = Client::http1();
        eventually("the console to be ready", async || {
            let reply = client.get(&format!("http://{addr}/readyz")).await?;
            if reply.status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ))
            }
        })
        .await;
        addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        let addr = self.addr.expect("wait_ready first");
        format!("http://{addr}{path}")
    }

    /// Calls the API with `token` (none: unauthenticated) and a JSON body (`Value::Null`: none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Reply {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        let body = if body.is_null() {
            Bytes::new()
        } else {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            Bytes::from(body.to_string())
        };
        Client::http1()
            .send(method.clone(), &self.url(path), &headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// The process id, for its CPU time in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
