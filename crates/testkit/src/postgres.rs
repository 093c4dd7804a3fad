//! A private PostgreSQL server (`dev/postgres.sh`) holding tansu's tables (the store several
//! tansu brokers share, or one broker's data across its restarts) and the console's index
//! databases. Stopped and removed when the handle drops.

use std::path::PathBuf;
use std::process::Command;

/// A running PostgreSQL server on a free loopback port, with a `tansu` database holding tansu's
/// tables and nothing else.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    /// Initialises and starts a server (`dev/postgres.sh` installs PostgreSQL from npm, once).
    pub fn start() -> Self {
        stop_abandoned();
        let port = crate::free_port();
        // Not a tempfile::TempDir: under root the server runs as `nobody`, which must be able
        // to reach its directory, and a TempDir's own directory is private to its creator.
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{port}", std::process::id()));
        let postgres = Self { port, dir };
        postgres.script("start");
        postgres
    }

    /// tansu's `--storage-engine` URL for this server's `tansu` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/tansu", self.port)
    }

    /// A new, empty database `name` on this server; its URL.
    pub fn database(&self, name: &str) -> String {
        self.query("postgres", &format!("CREATE DATABASE \"{name}\""));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The rows `sql` returns from `database`, one line each, columns separated by `|`.
    pub fn query(&self, database: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `dev/postgres.sh <command>` for this server.
    fn command(&self, command: &str) -> Command {
        let mut script = Command::new(crate::repo_root().join("dev/postgres.sh"));
        script
            .arg(command)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir);
        script
    }

    fn script(&self, command: &str) {
        let output = self.command(command).output().expect("run dev/postgres.sh");
        assert!(
            output.status.success(),
            "dev/postgres.sh {command} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Data directories are named after the test process that started the server.
const DIR_PREFIX: &str = "spillway-postgres-";

/// Stops the servers of test processes that are gone: the server runs on by itself (pg_ctl
/// detaches it), so a test killed before its handle dropped would leave it running.
fn stop_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, port)) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(port) = port.parse::<u16>() {
            let abandoned = Postgres {
                port,
                dir: entry.path(),
            };
            drop(abandoned);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.command("stop").output();
    }
}
