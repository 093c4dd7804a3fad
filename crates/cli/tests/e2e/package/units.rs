//! The installed systemd units read as systemd reads them (`[Service]` assignments, `%i`,
//! `$MAINPID`), and their commands run the way the units say where no systemd is running: as
//! their `User=`, without capabilities, with `NoNewPrivileges`, in their `Environment=`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A unit file's assignments, in order, with `%i` replaced by the instance.
#[derive(Debug)]
pub struct Unit {
    pub name: String,
    assignments: Vec<(String, String, String)>,
}

impl Unit {
    pub fn read(path: &Path, instance: Option<&str>) -> Self {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut section = String::new();
        let mut assignments = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not an assignment: {line}", path.display()));
            let value = match instance {
                Some(i) => value.replace("%i", i),
                None => value.to_owned(),
            };
            assignments.push((section.clone(), key.trim().to_owned(), value));
        }
        let file = path.file_name().expect("name").to_string_lossy();
        let name = match instance {
            Some(i) => file.replace("@.", &format!("@{i}.")),
            None => file.into_owned(),
        };
        Self { name, assignments }
    }

    /// Every value of `key` in `[Service]`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.assignments
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The one value of `key` in `[Service]`.
    pub fn one(&self, key: &str) -> &str {
        match self.all(key).as_slice() {
            [value] => value,
            other => panic!("{}: {key} set {} times", self.name, other.len()),
        }
    }

    /// The hardening assignments: everything after `LimitNOFILE` in `[Service]`, which each
    /// unit keeps in the same block.
    pub fn hardening(&self) -> Vec<(String, String)> {
        self.assignments
            .iter()
            .filter(|(s, _, _)| s == "Service")
            .skip_while(|(_, k, _)| k != "LimitNOFILE")
            .skip(1)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `command` (an `Exec*=` value) as this unit runs it, `$MAINPID` being `main_pid`.
    pub fn command(&self, command: &str, main_pid: Option<u32>) -> Command {
        let command = match main_pid {
            Some(pid) => command.replace("$MAINPID", &pid.to_string()),
            None => command.to_owned(),
        };
        let argv: Vec<&str> = command.split_whitespace().collect();
        let user = self.one("User");
        let group = self.one("Group");
        assert_eq!(self.one("NoNewPrivileges"), "yes");
        assert_eq!(self.one("CapabilityBoundingSet"), "");
        let mut run = Command::new("setpriv");
        run.args(["--reuid", user, "--regid", group, "--init-groups"])
            .args([
                "--no-new-privs",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--",
            ])
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("SPILLWAY_LOG_FORMAT", "text");
        for assignment in self.all("Environment") {
            let (key, value) = assignment.split_once('=').expect("VAR=value");
            run.env(key, value);
        }
        run
    }

    /// Runs `command` to its end, returning its output; panics when it fails.
    pub fn run(&self, command: &str, main_pid: Option<u32>) -> String {
        let out = self
            .command(command, main_pid)
            .output()
            .unwrap_or_else(|e| panic!("{}: run {command}: {e}", self.name));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{}: {command} failed:\n{text}",
            self.name
        );
        text
    }

    /// Starts the unit: each `ExecStartPre`, then `ExecStart` in the background with its
    /// output in `log`.
    pub fn start(&self, log: &Path) -> Service {
        for pre in self.all("ExecStartPre") {
            self.run(pre, None);
        }
        let file = std::fs::File::create(log).expect("log");
        let child = self
            .command(self.one("ExecStart"), None)
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: start: {e}", self.name));
        Service {
            child,
            log: log.to_owned(),
        }
    }
}

/// A unit's main process.
#[derive(Debug)]
pub struct Service {
    pub child: Child,
    log: PathBuf,
}

impl Service {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends the unit's `KillSignal` (SIGTERM) and waits for the exit.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        (status, self.log_text())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
