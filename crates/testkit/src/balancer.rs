//! HAProxy (Debian's package) on loopback in front of ingress processes, as a cloud load
//! balancer or an Ingress controller would be: round robin, health checks on `/readyz`, and a
//! retry on another server when a connection cannot be made or is closed without an answer.
//! Or, in TCP mode, in front of tansu brokers that share one store, as a Kubernetes Service in
//! front of such a broker's pods would be.

use crate::free_port;
use crate::wait::Wait;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A backend: the hook listener and the admin listener whose `/readyz` is checked.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub hooks: SocketAddr,
    pub admin: SocketAddr,
}

#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Haproxy {
    pub fn start(backends: &[Backend]) -> Self {
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "  server ingress{i} {} check port {}\n",
                    b.hooks,
                    b.admin.port()
                )
            })
            .collect();
        // Retries are safe here because every request carries its idempotency key: a request
        // that reached an ingress whose answer was lost is answered "duplicate" (or "in
        // flight") on the retry, never written twice.
        Self::spawn(
            port,
            format!(
                "global\n  maxconn 4096\n\
                 defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  \
                 timeout server 30s\n  timeout http-request 10s\n  retries 3\n  option redispatch 1\n  \
                 option http-buffer-request\n  retry-on conn-failure empty-response\n\
                 frontend hooks\n  bind 127.0.0.1:{port}\n  default_backend ingress\n\
                 backend ingress\n  balance roundrobin\n  option httpchk GET /readyz\n  \
                 http-check expect status 200\n  \
                 timeout check 2s\n  \
                 default-server inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2\n\
                 {servers}"
            ),
        )
    }

    /// A TCP balancer on `port` in front of `backends`, each checked by connecting to it: a new
    /// connection goes to a backend that is up, or to another when connecting fails.
    pub fn start_tcp(port: u16, backends: &[SocketAddr]) -> Self {
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("  server backend{i} {addr} check\n"))
            .collect();
        // Kafka connections live long and may idle between requests: generous idle timeouts.
        Self::spawn(
            port,
            format!(
                "global\n  maxconn 4096\n\
                 defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10m\n  \
                 timeout server 10m\n  retries 3\n  option redispatch 1\n\
                 frontend front\n  bind 127.0.0.1:{port}\n  default_backend backends\n\
                 backend backends\n  balance roundrobin\n  \
                 default-server inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2\n\
                 {servers}"
            ),
        )
    }

    fn spawn(port: u16, config: String) -> Self {
        assert!(
            Command::new("haproxy").arg("-v").output().is_ok(),
            "haproxy is missing: run `make up` (it installs Debian's haproxy)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let me = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let listening = Wait::new().poll_blocking(|| std::net::TcpStream::connect(me.addr));
        if let Err(e) = listening {
            panic!("haproxy did not listen ({e}):\n{}", me.log_text());
        }
        me
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
