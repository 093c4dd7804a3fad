//! The Debian package (`make deb`, cargo-deb) installed on this machine, as an administrator
//! would: its files, user and modes; `systemd-analyze verify` and `security` on its units; the
//! shipped config valid once its secret exists; the ingress, a worker instance and the console
//! started from their units' own commands (no systemd runs here), an event taken by the ingress
//! and delivered by the worker, a reload and a stop; then an upgrade in place, a removal that
//! keeps the configuration and a purge that leaves nothing.
//!
//! It installs into this machine's root, so it needs root, as `make test` has on the project's
//! machines and CI. The package holds the test build of the binary; `make deb` builds the same
//! package from the release build.

mod units;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use spillway_core::headers;
use spillway_testkit::spillway::{event_body, source, spillway_bin, subscription, worker_setup};
use spillway_testkit::{
    free_port, read_topic, repo_root, Behaviour, Client, Postgres, TestSubscriber, Wait,
};
use units::Unit;

const UNITS: &str = "/usr/lib/systemd/system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_starts_upgrades_and_removes() {
    assert_eq!(
        output("id", &["-u"]).trim(),
        "0",
        "the package test installs into this machine: run it as root"
    );
    let build = tempfile::tempdir().expect("tempdir");
    let deb = build_package(build.path());
    // A run that failed halfway may have left it installed; this one purges it however it ends.
    let _ = Command::new("dpkg").args(["--purge", "spillway"]).output();
    let _purge = PurgeOnDrop;

    let installed = output("dpkg", &["-i", &deb.display().to_string()]);
    assert!(installed.contains("Setting up spillway"), "{installed}");
    check_files();
    let ingress = Unit::read(&Path::new(UNITS).join("spillway-ingress.service"), None);
    let worker_port = free_port();
    let worker = Unit::read(
        &Path::new(UNITS).join("spillway-worker@.service"),
        Some(&worker_port.to_string()),
    );
    let console = Unit::read(&Path::new(UNITS).join("spillway-console.service"), None);
    check_units(&ingress, &worker, &console, build.path());
    check_shipped_config(&ingress);
    run_services(&ingress, &worker, worker_port, &console).await;
    // An administrator enables a worker instance; purge takes its enablement away too.
    let instance = format!("spillway-worker@{worker_port}.service");
    output("systemctl", &["enable", &instance]);
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(&instance);
    assert!(wants.is_symlink(), "{}", wants.display());

    // An upgrade in place (the same package again) keeps what the administrator changed.
    let config = std::fs::read_to_string("/etc/spillway/spillway.yaml").expect("config");
    output("dpkg", &["-i", &deb.display().to_string()]);
    assert_eq!(
        std::fs::read_to_string("/etc/spillway/spillway.yaml").expect("config"),
        config,
        "an upgrade keeps the edited config"
    );
    assert!(Path::new("/etc/spillway/secrets/github.secret").exists());

    // Removal keeps the configuration and the secrets; purge removes them.
    output("dpkg", &["-r", "spillway"]);
    assert!(!Path::new("/usr/bin/spillway").exists());
    assert!(!Path::new(UNITS).join("spillway-ingress.service").exists());
    assert!(Path::new("/etc/spillway/spillway.yaml").exists());
    assert!(Path::new("/etc/spillway/secrets/github.secret").exists());
    output("dpkg", &["--purge", "spillway"]);
    assert!(
        !Path::new("/etc/spillway").exists(),
        "purge leaves nothing in /etc/spillway"
    );
    assert!(!wants.is_symlink(), "purge disables the worker instances");
    let status = Command::new("dpkg")
        .args(["-s", "spillway"])
        .output()
        .expect("dpkg -s");
    assert!(!status.status.success(), "not installed after the purge");
}

/// Purges the package when the test ends, passed or failed.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "spillway"]).output();
    }
}

/// `cargo deb` on the test build of the binary, put where cargo-deb looks for a release build
/// in a target directory of its own (it refuses to package the dev profile by name).
fn build_package(dir: &Path) -> PathBuf {
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).expect("dir");
    std::fs::copy(spillway_bin(), release.join("spillway")).expect("copy the binary");
    let deb = dir.join("spillway.deb");
    let out = Command::new("cargo")
        .args(["deb", "-p", "spillway", "--no-build", "--fast", "-o"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .current_dir(repo_root())
        .output()
        .expect("cargo deb: run `make up`, which installs cargo-deb");
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

/// The binary, the units, the examples, the system user and the modes of /etc/spillway.
fn check_files() {
    assert!(output("/usr/bin/spillway", &["--version"]).starts_with("spillway "));
    for unit in [
        "spillway-ingress.service",
        "spillway-worker@.service",
        "spillway-console.service",
    ] {
        assert!(Path::new(UNITS).join(unit).exists(), "{unit}");
    }
    for example in [
        "sysctl/60-spillway.conf",
        "nginx/spillway.conf",
        "haproxy/spillway.cfg",
        "systemd/bind-privileged-port.conf",
    ] {
        assert!(Path::new("/usr/share/spillway").join(example).exists());
    }
    assert!(Path::new("/usr/share/doc/spillway/deploying-vm.md").exists());
    let user = output("getent", &["passwd", "spillway"]);
    assert!(user.contains(":/nonexistent:/usr/sbin/nologin"), "{user}");
    assert_eq!(
        output("stat", &["-c", "%a %U:%G", "/etc/spillway/secrets"]).trim(),
        "700 spillway:spillway"
    );
    assert_eq!(
        output("stat", &["-c", "%a %U:%G", "/etc/spillway/spillway.yaml"]).trim(),
        "640 root:spillway"
    );
}

/// `systemd-analyze verify` and `security` as installed; one hardening block in all three;
/// stop timeouts and file limits that cover the defaults they are written for.
fn check_units(ingress: &Unit, worker: &Unit, console: &Unit, scratch: &Path) {
    let names = [
        format!("{UNITS}/spillway-ingress.service"),
        worker.name.clone(),
        format!("{UNITS}/spillway-console.service"),
    ];
    verify(&names);
    // Exposure is 0-100 here (systemd prints it as 0.0-10.0); the units score 1.1.
    let security = output(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=15",
            &names[0],
            &names[2],
        ],
    );
    assert!(security.contains("OK"), "{security}");
    assert!(
        security.contains("✓ CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE"),
        "{security}"
    );
    // With the drop-in for port 443 (appended, as systemd applies it), still OK, and holding
    // only the one capability.
    let bind = std::fs::read_to_string("/usr/share/spillway/systemd/bind-privileged-port.conf")
        .expect("drop-in");
    let with_drop_in = scratch.join("spillway-ingress.service");
    let unit = std::fs::read_to_string(&names[0]).expect("unit");
    std::fs::write(&with_drop_in, format!("{unit}\n{bind}")).expect("write");
    let path = with_drop_in.display().to_string();
    verify(std::slice::from_ref(&path));
    let security = output(
        "systemd-analyze",
        &["security", "--offline=yes", "--threshold=20", &path],
    );
    assert!(security.contains("OK"), "{security}");
    assert!(
        security.contains("✗ CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE"),
        "{security}"
    );
    assert!(
        security.contains("✓ CapabilityBoundingSet=~CAP_SYS_ADMIN"),
        "{security}"
    );

    assert_eq!(ingress.hardening(), worker.hardening());
    assert_eq!(ingress.hardening(), console.hardening());
    assert!(ingress.hardening().len() > 30, "{:?}", ingress.hardening());

    let defaults: spillway_config::Config = serde_yaml_defaults();
    let margin = Duration::from_secs(5);
    let ingress_stop = defaults.ingress.drain_timeout + defaults.kafka.delivery_timeout + margin;
    assert!(seconds(ingress.one("TimeoutStopSec")) > ingress_stop);
    let worker_stop = defaults.worker.drain_timeout + defaults.kafka.delivery_timeout;
    assert!(seconds(worker.one("TimeoutStopSec")) > worker_stop);
    assert!(seconds(console.one("TimeoutStopSec")) > margin);
    let files: usize = ingress.one("LimitNOFILE").parse().expect("a number");
    assert!(files > defaults.ingress.max_connections * 2);
    for unit in [ingress, worker, console] {
        assert_eq!(unit.one("Restart"), "always", "{}", unit.name);
    }
}

/// `systemd-analyze verify` passes on `units` without a word (a warning fails too).
fn verify(units: &[String]) {
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {units:?}:\n{said}"
    );
}

fn seconds(value: &str) -> Duration {
    Duration::from_secs(value.parse().expect("whole seconds"))
}

/// The config's defaults, from a minimal valid file.
fn serde_yaml_defaults() -> spillway_config::Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("s");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let file = dir.path().join("c.yaml");
    let text = format!(
        "kafka: {{ brokers: k:9092 }}\nredis: {{ nodes: [redis://r:6379] }}\nsources:\n  s:\n    verify: {{ scheme: standard-webhooks }}\n    secrets: [{{ id: a, file: {} }}]\n",
        secret.display()
    );
    std::fs::write(&file, text).expect("config");
    spillway_config::load_for(&file, spillway_config::Process::All).expect("defaults")
}

/// The config as shipped names its secret; once the administrator writes it (as the
/// commented instructions say) `check-config`, as the service user, accepts the file.
fn check_shipped_config(ingress: &Unit) {
    let check = ingress.all("ExecStartPre")[0];
    let failed = ingress.command(check, None).output().expect("check-config");
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(said.contains("/etc/spillway/secrets/example"), "{said}");
    write_secret("example", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let said = ingress.run(check, None);
    assert!(said.contains("ok (1 sources"), "{said}");
    std::fs::remove_file("/etc/spillway/secrets/example").expect("remove");
}

/// A secret file as the administrator writes it: owned by the service user, mode 0600.
fn write_secret(name: &str, text: &str) -> String {
    let path = format!("/etc/spillway/secrets/{name}");
    std::fs::write(&path, text).expect("write secret");
    output("chown", &["spillway:spillway", &path]);
    output("chmod", &["600", &path]);
    path
}

/// Every `file:` of `value` under `dir` moved into /etc/spillway/secrets.
fn move_secrets(value: &mut Value, dir: &Path) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    Value::String(path)
                        if key == "file" && path.starts_with(&*dir.to_string_lossy()) =>
                    {
                        let name = Path::new(path.as_str()).file_name().expect("name");
                        let text = std::fs::read_to_string(&*path).expect("secret");
                        *path = write_secret(&name.to_string_lossy(), &text);
                    }
                    other => move_secrets(other, dir),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| move_secrets(v, dir)),
        _ => {}
    }
}

/// The three units started from their own commands against the local stack: an event in
/// through the ingress, in Kafka, delivered by the worker; the console ready on its index; a
/// reload of the ingress and the worker; each stopped by its KillSignal, exiting 0.
async fn run_services(ingress: &Unit, worker: &Unit, worker_port: u16, console: &Unit) {
    let subscriber = TestSubscriber::start(|_| Behaviour::Status(200)).await;
    let postgres = Postgres::start();
    let database = postgres.database("console");
    let github = source("github");
    let url = subscriber.url("/inbox");
    let (hooks, admin, console_port) = (free_port(), free_port(), free_port());
    let setup = worker_setup(&github, |dir| {
        let db = dir.join("console-database-url");
        std::fs::write(&db, &database).expect("db");
        let token = dir.join("console-token");
        std::fs::write(&token, "operator-token-0123456789").expect("token");
        json!({
            "ingress": { "listen": format!("127.0.0.1:{hooks}") },
            "admin": { "listen": format!("127.0.0.1:{admin}") },
            "subscriptions": [subscription(dir, "inbox", &url)],
            "console": {
                "listen": format!("127.0.0.1:{console_port}"),
                "database_url": { "file": db.display().to_string() },
                "tokens": [{ "name": "ops", "role": "operator", "token": { "file": token.display().to_string() } }],
            },
        })
    })
    .await;
    let mut config = setup.doc().value().clone();
    move_secrets(&mut config, setup.dir.path());
    let yaml = serde_yaml_text(&config);
    std::fs::write("/etc/spillway/spillway.yaml", yaml).expect("operator's config");

    let logs = tempfile::tempdir().expect("logs");
    let ingress_main = ingress.start(&logs.path().join("ingress.log"));
    let worker_main = worker.start(&logs.path().join("worker.log"));
    let console_main = console.start(&logs.path().join("console.log"));
    let client = Client::http1();
    for (name, url) in [
        ("ingress", format!("http://127.0.0.1:{admin}/readyz")),
        ("worker", format!("http://127.0.0.1:{worker_port}/readyz")),
        ("console", format!("http://127.0.0.1:{console_port}/readyz")),
    ] {
        Wait::new()
            .until(format!("{name} ready"), async || {
                let ready = client.get(&url).await.ok()?;
                (ready.status == 200).then_some(())
            })
            .await;
    }

    let body = event_body("packaged-1", 1);
    let reply = client
        .post(
            &format!("http://127.0.0.1:{hooks}/v1/hooks/github"),
            &github.sign("packaged-1", &body, 0),
            body,
        )
        .await
        .expect("post");
    assert_eq!(
        reply.status,
        202,
        "{:?}\n{}",
        reply.body,
        ingress_main.log_text()
    );
    let records = read_topic(&setup.brokers, &setup.topic("github")).await;
    assert!(records
        .iter()
        .any(|r| r.header(headers::DEDUPE_KEY) == Some("packaged-1")));
    Wait::new()
        .until("the worker delivered it", async || {
            (!subscriber.received().is_empty()).then_some(())
        })
        .await;

    for (unit, main) in [(ingress, &ingress_main), (worker, &worker_main)] {
        for reload in unit.all("ExecReload") {
            unit.run(reload, Some(main.child.id()));
        }
        Wait::new()
            .until(format!("{} reloaded", unit.name), async || {
                let log = main.log_text();
                log.lines()
                    .any(|l| l.contains("sources reloaded") && l.contains("SIGHUP"))
                    .then_some(())
            })
            .await;
    }
    for (name, main) in [
        ("ingress", ingress_main),
        ("worker", worker_main),
        ("console", console_main),
    ] {
        let (status, log) = main.stop();
        assert!(status.success(), "{name} exits 0 on SIGTERM:\n{log}");
    }
    drop(postgres);
}

fn serde_yaml_text(value: &Value) -> String {
    spillway_testkit::ConfigDoc::new(value.clone()).to_yaml()
}

/// Runs `program` to success and returns its standard output.
fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
