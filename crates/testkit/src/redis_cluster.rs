//! A private Redis Cluster (three primaries, three replicas) on six free loopback ports, from
//! `dev/redis-cluster.sh`; stopped, and its state removed, when the handle drops. Its nodes may
//! announce proxies in front of them instead of their own ports ([`ProxiedRedisCluster`]), so
//! that a test can cut or slow the network between its clients and the cluster, or take TLS
//! only, with certificates of a private CA ([`RedisCluster::start_tls`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::delay_proxy::DelayProxy;
use crate::ports::free_port_block;
use crate::repo_root;
use crate::tls::LocalCa;
use crate::wait::Wait;

#[derive(Debug)]
pub struct RedisCluster {
    dir: tempfile::TempDir,
    /// The first of the six ports; the first three nodes start as primaries.
    pub base: u16,
    /// The ports the nodes tell clients to use, when not their own.
    announced: Option<Vec<u16>>,
    /// The directory of the nodes' TLS files (`ca.crt`, `redis.crt`, `redis.key`), when the
    /// cluster takes TLS only.
    tls: Option<PathBuf>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_on(free_port_block(), None)
    }

    /// Starts the cluster on `base` ..= `base` + 5, node `i` announcing `announced[i]` to
    /// clients and replicas when given, else its own port.
    fn start_on(base: u16, announced: Option<Vec<u16>>) -> Self {
        let me = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            base,
            announced,
            tls: None,
        };
        me.script("start");
        me
    }

    /// Starts a cluster that takes TLS only, its nodes' certificate (for 127.0.0.1) signed by
    /// a private CA, in [`RedisCluster::tls_file`]`("ca.crt")`. The nodes ask clients for a
    /// certificate: the same one, in `("redis.crt")` and `("redis.key")`, signed by that CA.
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).expect("the TLS directory");
        let ca = LocalCa::write(&tls);
        std::fs::copy(&ca.ca_file, tls.join("ca.crt")).expect("the CA file");
        ca.write_server_files(&tls, "redis.crt", "redis.key");
        let me = Self {
            dir,
            base: free_port_block(),
            announced: None,
            tls: Some(tls),
        };
        me.script("start");
        me
    }

    /// One of the TLS files the nodes use (`ca.crt`, `redis.crt`, `redis.key`).
    ///
    /// # Panics
    /// When the cluster does not take TLS.
    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.tls.as_ref().expect("a TLS cluster").join(name)
    }

    /// The arguments of `dev/redis-cluster.sh` after the command: the ports, the state's
    /// directory and the TLS files.
    fn script_args(&self, command: &mut Command) {
        command
            .args(["--base-port", &self.base.to_string(), "--dir"])
            .arg(self.dir.path().join("redis"));
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg(tls);
        }
    }

    fn script(&self, cmd: &str) {
        let mut command = Command::new(repo_root().join("dev/redis-cluster.sh"));
        command.arg(cmd);
        self.script_args(&mut command);
        if let Some(ports) = self.announced.as_ref().filter(|_| cmd == "start") {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            command.args(["--announce-ports", &ports.join(",")]);
        }
        let out = command.output().expect("dev/redis-cluster.sh");
        assert!(
            out.status.success(),
            "redis-cluster.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Seed URLs of the three primaries (`rediss://` when the cluster takes TLS).
    pub fn nodes(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        (self.base..self.base + 3)
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
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
        let mut command = Command::new("redis-cli");
        if let Some(tls) = &self.tls {
            command
                .arg("--tls")
                .arg("--cacert")
                .arg(tls.join("ca.crt"))
                .arg("--cert")
                .arg(tls.join("redis.crt"))
                .arg("--key")
                .arg(tls.join("redis.key"));
        }
        command
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
        let mut command = Command::new(repo_root().join("dev/redis-cluster.sh"));
        command.arg("stop");
        self.script_args(&mut command);
        let _ = command.output();
    }
}

/// A private Redis Cluster whose six nodes clients reach only through a [`DelayProxy`] each:
/// the nodes announce the proxies' ports (CLUSTER SLOTS, MOVED), so a client that follows the
/// cluster's topology goes through them too. The replicas replicate through them as well; the
/// cluster bus does not, so a cut between clients and nodes starts no failover.
#[derive(Debug)]
pub struct ProxiedRedisCluster {
    pub cluster: RedisCluster,
    /// One per node, in the nodes' order.
    pub proxies: Vec<DelayProxy>,
}

impl ProxiedRedisCluster {
    /// Starts the proxies, then the cluster behind them. Needs a multi-threaded runtime: the
    /// proxies forward while the cluster forms.
    pub async fn start() -> Self {
        let mut listeners = Vec::new();
        for _ in 0..6 {
            listeners.push(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a proxy port"),
            );
        }
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        // The cluster's ports are known once it has picked them; the proxies connect to them
        // only when a client connects, so they can listen first.
        let base = free_port_block();
        let proxies = listeners
            .into_iter()
            .zip(base..)
            .map(|(listener, port)| {
                DelayProxy::serve(listener, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .collect();
        let cluster =
            tokio::task::spawn_blocking(move || RedisCluster::start_on(base, Some(ports)))
                .await
                .expect("starting the cluster");
        Self { cluster, proxies }
    }

    /// Seed URLs: the proxies of the three primaries.
    pub fn nodes(&self) -> Vec<String> {
        self.proxies[..3]
            .iter()
            .map(|p| format!("redis://{}", p.addr))
            .collect()
    }

    /// Applies `fault` to every node's proxy.
    pub fn each(&self, fault: impl Fn(&DelayProxy)) {
        self.proxies.iter().for_each(fault);
    }
}
