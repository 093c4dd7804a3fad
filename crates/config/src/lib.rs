//! Spillway's configuration: one YAML file, overridden by `SPILLWAY_<SECTION>__<FIELD>`
//! environment variables, then validated as a whole so that `spillway check-config` can name
//! every bad field at once.
//!
//! Unknown fields are errors (a typo must not silently fall back to a default), and signing
//! secrets are read from environment variables or files, never from the config text itself.
//! Each process reads only the secrets it uses ([`Process`], [`load_for`]): the ingress the
//! sources', the workers the subscriptions'.

mod error;
mod field;
mod files;
mod model;
mod redact;
mod resolve;
mod secrets;
mod validate;
mod warnings;

pub use error::{
    ApiTokenError, CredentialError, FileError, SigningSecretError, MIN_API_TOKEN_CHARS,
};
pub use field::{describe, FieldError};
pub use files::MAX_REFERENCED_FILE_BYTES;
pub use model::*;
pub use redact::{is_secret_key, redact_url_credentials};
pub use resolve::{ResolvedSource, ResolvedSubscription, SourceRoute};
pub use secrets::{read_credential, SubscriptionSecret};
pub use validate::{
    Process, CONNECTION_BYTES, DEFAULT_MESSAGE_MAX_BYTES, MEMORY_HEADROOM_BYTES,
    RECORD_OVERHEAD_BYTES, WORKER_BASE_BYTES,
};
pub use warnings::Warning;

use std::path::Path;

use figment::providers::{Env, Format, Yaml};
use figment::Figment;

/// The top-level sections an environment override may address. Other `SPILLWAY_*` variables
/// (for instance the ones holding secrets) are left alone instead of being parsed as config.
const ENV_SECTIONS: &[&str] = &[
    "ingress",
    "admin",
    "kafka",
    "redis",
    "sources",
    "worker",
    "telemetry",
    "objects",
    "console",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type. Values that look
    /// secret (under a secret-looking key, or a URL's credentials) are redacted from `source`.
    #[error("cannot read config {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Loads a config file with environment overrides and validates it, every secret read: for
/// `check-config` and tools that use both sides. The same as [`load_for`] with [`Process::All`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_for(path, Process::All)
}

/// Loads a config file with environment overrides and validates it for `process`, which reads
/// only the secrets it uses (see [`Config::validate_for`]).
pub fn load_for(path: &Path, process: Process) -> Result<Config, ConfigError> {
    let figment = Figment::new().merge(Yaml::file_exact(path)).merge(
        Env::prefixed("SPILLWAY_").split("__").filter(|key| {
            let section = key.as_str().split('.').next().unwrap_or_default();
            // Keys are still upper-case here: figment lower-cases them afterwards.
            ENV_SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
        }),
    );
    let mut config: Config = figment.extract().map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(redact::figment_error(e)),
    })?;
    // Every process talks to Kafka, so every one reads the properties file.
    if let Some(file) = config.kafka.properties_file.clone() {
        let merged = files::read_properties(&file).map_err(|e| {
            ConfigError::Invalid(vec![FieldError {
                path: "kafka.properties_file".into(),
                message: e.to_string(),
            }])
        })?;
        config.kafka.properties.extend(merged);
    }
    let errors = config.validate_for(process);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// Parses a config file's text as the loader would, without environment overrides and without
/// validating it (which reads its secret files): for tools that inspect a config, such as the
/// Helm chart's checks.
pub fn parse_str(yaml: &str) -> Result<Config, ConfigError> {
    Figment::new()
        .merge(Yaml::string(yaml))
        .extract()
        .map_err(|e| ConfigError::Parse {
            path: "<text>".into(),
            source: Box::new(redact::figment_error(e)),
        })
}

/// A valid config and what in it is legal but probably wrong ([`Warning`]).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// [`load_for`], and the warnings of the config for `process` ([`Config::warnings_for`]) and
/// of the config file itself (group or others can read it while it holds secrets).
pub fn load_with_warnings(path: &Path, process: Process) -> Result<Loaded, ConfigError> {
    let config = load_for(path, process)?;
    let mut warnings = config.warnings_for(process);
    warnings.extend(warnings::config_file(path));
    Ok(Loaded { config, warnings })
}

#[cfg(test)]
// figment::Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests;
