//! A private Redis Cluster (three primaries, three replicas) on six free loopback ports, from
//! `dev/redis-cluster.sh`; stopped, and its state removed, when the handle drops.

use std::process::Command;
use std::time::Duration;

use crate::repo_root;
use crate::wait::Wait;

#[derive(Debug)]
pub struct RedisCluster {
    dir: tempfile::TempDir,
    /// The first of the six ports; the first three nodes start as primaries.
    pub base: u16,
}

impl RedisCluster {
    pub fn start() -> Self {
        let me = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            base: free_port_block(),
        };
        me.script("start");
        me
    }

    fn script(&self, cmd: &str) {
        let out = Command::new(repo_root().join("dev/redis-cluster.sh"))
            .args([cmd, "--base-port", &self.base.to_string(), "--dir"])
            .arg(self.dir.path().join("redis"))
            .output()
            .expect("dev/redis-cluster.sh");
        assert!(
            out.status.success(),
            "redis-cluster.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Seed URLs of the three primaries.
    pub fn nodes(&self) -> Vec<String> {
        (self.base..self.base + 3)
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Stops every node (the whole cluster is down).
    pub fn stop(&self) {
        self.script("stop");
    }

    /// Kills one node with SIGKILL, as a crash would.
    pub fn kill_node(&self, port: u16) {
        let pidfile = self.dir.path().join(format!("redis/{port}/redis.pid"));
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {}", pid.trim());
    }

    /// `redis-cli -p port args...`, its output; empty when the node does not answer.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The node's role: `master` or `slave`.
    pub fn role(&self, port: u16) -> String {
        self.cli(port, &["role"])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the cluster has marked `dead` as failed and serves every slot again (a
    /// replica took over).
    pub fn wait_failover(&self, dead: u16) {
        let alive: Vec<u16> = (self.base..self.base + 6).filter(|&p| p != dead).collect();
        // Every poll runs seven redis-cli processes: not too often.
        Wait::new()
            .every(Duration::from_millis(100))
            .until_blocking(format!("a failover of {dead}"), || {
                let nodes = self.cli(alive[0], &["cluster", "nodes"]);
                let dead_marked = nodes.lines().any(|l| {
                    l.contains(&format!("127.0.0.1:{dead}@"))
                        && l.split_whitespace()
                            .nth(2)
                            .is_some_and(|flags| flags.contains("fail") && !flags.contains("fail?"))
                });
                let serving = alive.iter().all(|&p| {
                    self.cli(p, &["cluster", "info"])
                        .contains("cluster_state:ok")
                });
                if dead_marked && serving {
                    Ok(())
                } else {
                    Err(format!(
                        "dead marked: {dead_marked}, every node serving: {serving}:\n{nodes}"
                    ))
                }
            });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("dev/redis-cluster.sh"))
            .args(["stop", "--base-port", &self.base.to_string(), "--dir"])
            .arg(self.dir.path().join("redis"))
            .output();
    }
}

/// Six consecutive free ports whose cluster-bus ports (port + 10000) are free too, so that
/// concurrent runs on one machine do not collide.
fn free_port_block() -> u16 {
    let start = 21_000 + (std::process::id() % 900) as u16 * 10;
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    (0..900u16)
        .map(|i| 21_000 + (start - 21_000 + i * 10) % 9_000)
        .find(|&base| (base..base + 6).all(|p| free(p) && free(p + 10_000)))
        .expect("a free block of ports")
}
