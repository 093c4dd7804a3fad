//! The fronts shipped in deploy/ (nginx and HAProxy) run on loopback from their own files, in
//! front of ingress processes. Only what a deployment changes anyway is replaced (the listen
//! address, the certificate, the ingress servers, the log file and, for one test, the rate
//! limit), each replacement checked to have matched, so what the e2e tests check is the
//! configuration a user installs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::balancer::Backend;
use crate::wait::Wait;
use crate::{free_port, repo_root};

/// Which front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
}

/// A request rate per client address that the front refuses past: `requests` within a minute
/// (a window no test gets near, so the count decides, not the clock).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests: u32,
}

/// The certificate the front serves (for `localhost`), and the PEM of it that clients trust.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug)]
pub struct Front {
    child: Child,
    pub kind: Kind,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Front {
    /// Starts `kind` from its file in deploy/, listening on a free loopback port with
    /// `certificate`, in front of `backends`; `rate` replaces the shipped rate limit with a
    /// tighter one.
    pub fn start(
        kind: Kind,
        backends: &[Backend],
        certificate: &Certificate,
        rate: Option<RateLimit>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let site = Site {
            dir: dir.path(),
            addr,
            backends,
            certificate,
            rate,
        };
        let child = match kind {
            Kind::Nginx => nginx(&site),
            Kind::Haproxy => haproxy(&site),
        };
        let me = Self {
            child,
            kind,
            addr,
            dir,
        };
        if let Err(e) = Wait::new().poll_blocking(|| std::net::TcpStream::connect(me.addr)) {
            panic!("{kind:?} did not listen ({e}):\n{}", me.log_text());
        }
        me
    }

    /// The URL of a source's hook through the front (the certificate names `localhost`).
    pub fn hook_url(&self, source: &str) -> String {
        format!("https://localhost:{}/v1/hooks/{source}", self.addr.port())
    }

    /// The front's access log and error output.
    pub fn log_text(&self) -> String {
        ["access.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with each `(from, to)` replaced, every `from` required to occur.
fn replace_all(name: &str, text: &str, replacements: &[(&str, String)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{name} no longer holds {from:?}: update the front's test harness with it"
        );
        text = text.replace(from, to);
    }
    text
}

fn shipped(path: &str) -> String {
    let file = repo_root().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// What a front is started with.
struct Site<'a> {
    dir: &'a Path,
    addr: SocketAddr,
    backends: &'a [Backend],
    certificate: &'a Certificate,
    rate: Option<RateLimit>,
}

fn require(program: &str) {
    assert!(
        Command::new(program).arg("-v").output().is_ok(),
        "{program} is missing: run `make up` (it installs Debian's {program})"
    );
}

fn nginx(site: &Site) -> Child {
    require("nginx");
    let cert = write(site.dir, "front.crt", &site.certificate.cert_pem);
    let key = write(site.dir, "front.key", &site.certificate.key_pem);
    let servers: String = site
        .backends
        .iter()
        .map(|b| format!("    server {} max_fails=2 fail_timeout=5s;\n", b.hooks))
        .collect();
    let mut replacements = vec![
        (
            "    server 10.0.1.11:8080 max_fails=2 fail_timeout=5s;\n    server 10.0.1.12:8080 max_fails=2 fail_timeout=5s;\n",
            servers,
        ),
        (
            "listen 443 ssl http2 backlog=4096;",
            format!("listen {} ssl http2 backlog=4096;", site.addr),
        ),
        ("    listen [::]:443 ssl http2 backlog=4096;\n", String::new()),
        (
            "/etc/nginx/tls/hooks.example.com.fullchain.pem",
            cert.display().to_string(),
        ),
        (
            "/etc/nginx/tls/hooks.example.com.key",
            key.display().to_string(),
        ),
        (
            "/var/log/nginx/spillway-access.log",
            site.dir.join("access.log").display().to_string(),
        ),
    ];
    if let Some(rate) = site.rate {
        // One request a minute refills; the burst is what passes at once.
        replacements.push(("rate=100r/s", "rate=1r/m".into()));
        replacements.push((
            "burst=200 nodelay",
            format!("burst={} nodelay", rate.requests.saturating_sub(1)),
        ));
    }
    let text = replace_all(
        "deploy/nginx/spillway.conf",
        &shipped("deploy/nginx/spillway.conf"),
        &replacements,
    );
    let conf_d = write(site.dir, "spillway.conf", &text);
    // What Debian's /etc/nginx/nginx.conf provides around conf.d/, with this directory's paths.
    let d = site.dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {};\n}}\n",
        conf_d.display()
    );
    let conf = write(site.dir, "nginx.conf", &main);
    let log = std::fs::File::create(site.dir.join("stderr.log")).expect("log");
    Command::new("nginx")
        .arg("-p")
        .arg(site.dir)
        .arg("-e")
        .arg(site.dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn nginx")
}

fn haproxy(site: &Site) -> Child {
    require("haproxy");
    // HAProxy takes the certificate and its key in one PEM file.
    let pem = write(
        site.dir,
        "front.pem",
        &format!("{}{}", site.certificate.cert_pem, site.certificate.key_pem),
    );
    let servers: String = site
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "    server ingress{i} {} port {}\n",
                b.hooks,
                b.admin.port()
            )
        })
        .collect();
    let mut replacements = vec![
        (
            "    server ingress1 10.0.1.11:8080 port 9090\n    server ingress2 10.0.1.12:8080 port 9090\n",
            servers,
        ),
        (
            "bind :443 ssl crt /etc/haproxy/certs/hooks.example.com.pem",
            format!("bind {} ssl crt {}", site.addr, pem.display()),
        ),
        (
            "/usr/share/spillway/haproxy/unavailable.http",
            repo_root()
                .join("deploy/haproxy/unavailable.http")
                .display()
                .to_string(),
        ),
    ];
    if let Some(rate) = site.rate {
        replacements.push(("store http_req_rate(10s)", "store http_req_rate(1m)".into()));
        replacements.push((
            "if { sc_http_req_rate(0) gt 1000 }",
            format!("if {{ sc_http_req_rate(0) gt {} }}", rate.requests),
        ));
    }
    let config = replace_all(
        "deploy/haproxy/spillway.cfg",
        &shipped("deploy/haproxy/spillway.cfg"),
        &replacements,
    );
    let config = write(site.dir, "haproxy.cfg", &config);
    // `log stdout`: the access log is HAProxy's standard output.
    let access = std::fs::File::create(site.dir.join("access.log")).expect("log");
    let errors = std::fs::File::create(site.dir.join("error.log")).expect("log");
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(access)
        .stderr(errors)
        .spawn()
        .expect("spawn haproxy")
}

/// Makes `ip` (a documentation address, not private or loopback, so that blocking applies to
/// it) an address of the loopback interface, so a test client can send from it and a front
/// sees it as its client. Idempotent; needs CAP_NET_ADMIN, as the project's machines have.
pub fn client_address(ip: std::net::Ipv4Addr) -> std::net::IpAddr {
    let out = Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .expect("run ip (iproute2)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || stderr.contains("File exists")
            || stderr.contains("already assigned"),
        "cannot add {ip} to the loopback interface (needs root): {stderr}"
    );
    std::net::IpAddr::V4(ip)
}
