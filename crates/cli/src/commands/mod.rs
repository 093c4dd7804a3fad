//! One module per subcommand, each the implementation of one command line; and what several of
//! them share: loading the config, the time arguments, and waiting for a stop signal.

pub mod check_config;
pub mod console;
pub mod demo;
pub mod dlq;
pub mod ingress;
pub mod objects;
pub mod quarantine;
pub mod replay;
pub mod subscriptions;
pub mod topics;
pub mod worker;

use std::path::Path;
use std::time::Duration;

use spillway_config::{Config, ConfigError, Loaded, Process};

/// Milliseconds since the epoch as RFC 3339, or empty when out of range.
pub fn format_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// How long the commands that read topics back (`demo`, `dlq`, `quarantine`, `replay`) wait
/// for Kafka.
pub const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads the config at `path` and validates what `process` serves (the ingress never reads a
/// subscriber's secret, the worker never a provider's), keeping why it failed as the error's
/// cause.
pub fn load(path: &Path, process: Process) -> anyhow::Result<Config> {
    spillway_config::load_for(path, process).map_err(load_error)
}

/// [`load`], and what in the config is legal but probably wrong: the serving processes log it
/// once their logging has started (their logs are JSON lines), `check-config` prints it.
pub fn load_with_warnings(path: &Path, process: Process) -> anyhow::Result<Loaded> {
    spillway_config::load_with_warnings(path, process).map_err(load_error)
}

fn load_error(e: ConfigError) -> anyhow::Error {
    match e {
        // The message of `Parse` already ends with its source's text, and `main` prints the
        // whole chain (`{:#}`): the source goes under the message without its own text, so that
        // the line reads as before instead of naming the cause twice.
        ConfigError::Parse { path, source } => {
            anyhow::Error::new(source).context(format!("cannot read config {path}"))
        }
        other => anyhow::Error::new(other),
    }
}

/// An error and its causes on one line, for the terminal. Library errors both keep their cause
/// as a source and say it in their own message (so a log line of the error alone is whole):
/// a cause whose text the line already holds is not repeated.
pub fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// An RFC 3339 time as milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 time such as 2026-11-23T10:00:00Z: {e}")
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "time before 1970".to_owned())
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (a terminal).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_cannot_be_read_keeps_its_cause_and_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spillway.yaml");
        std::fs::write(&path, "kafka: [not, a, map]\n").unwrap();
        let error = load(&path, Process::All).unwrap_err();
        let plain = spillway_config::load(&path).unwrap_err().to_string();
        assert_eq!(format!("{error:#}"), plain, "printed as before");
        assert_eq!(
            error.chain().count(),
            2,
            "the parser's error is kept as the cause"
        );
    }

    /// An error that says its cause and keeps it, as the library errors do.
    #[derive(Debug)]
    struct Says {
        source: std::io::Error,
    }

    impl std::fmt::Display for Says {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer: {}", self.source)
        }
    }

    impl std::error::Error for Says {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_report_names_each_cause_once() {
        let cause = || std::io::Error::other("disk on fire");
        let says = anyhow::Error::new(Says { source: cause() });
        assert_eq!(report(&says), "outer: disk on fire");
        let context = anyhow::Error::new(cause()).context("cannot read config x");
        assert_eq!(report(&context), "cannot read config x: disk on fire");
        let nested = anyhow::Error::new(Says { source: cause() }).context("replay");
        assert_eq!(report(&nested), "replay: outer: disk on fire");
    }

    #[test]
    fn an_invalid_config_is_printed_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spillway.yaml");
        std::fs::write(
            &path,
            "kafka: { brokers: x }\nsources:\n  acme:\n    verify: { scheme: github }\n    secrets: []\n",
        )
        .unwrap();
        let error = load(&path, Process::All).unwrap_err();
        let invalid = spillway_config::load(&path).unwrap_err();
        assert!(matches!(invalid, ConfigError::Invalid(_)), "{invalid}");
        let plain = invalid.to_string();
        assert_eq!(format!("{error:#}"), plain);
        assert!(error.downcast_ref::<ConfigError>().is_some());
    }

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(
            parse_time("1969-12-31T23:59:59Z"),
            Err("time before 1970".into())
        );
    }
}
