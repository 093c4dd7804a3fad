//! Spillway's configuration: one YAML file, overridden by `SPILLWAY_<SECTION>__<FIELD>`
//! environment variables, then validated as a whole so that `spillway check-config` can name
//! every bad field at once.
//!
//! Unknown fields are errors (a typo must not silently fall back to a default), and signing
//! secrets are read from environment variables or files, never from the config text itself.

mod model;
mod resolve;

pub use model::*;
pub use resolve::{
    describe, read_api_token, read_credential, read_secret, FieldError, ResolvedSource,
    ResolvedSubscription, SubscriptionSecret,
};

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
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("invalid config:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Loads a config file with environment overrides and validates it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let figment = Figment::new().merge(Yaml::file_exact(path)).merge(
        Env::prefixed("SPILLWAY_").split("__").filter(|key| {
            let section = key.as_str().split('.').next().unwrap_or_default();
            // Keys are still upper-case here: figment lower-cases them afterwards.
            ENV_SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
        }),
    );
    let mut config: Config = figment.extract().map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(e),
    })?;
    if let Some(file) = config.kafka.properties_file.clone() {
        let merged = read_properties(&file).map_err(|message| {
            ConfigError::Invalid(vec![FieldError {
                path: "kafka.properties_file".into(),
                message,
            }])
        })?;
        config.kafka.properties.extend(merged);
    }
    let errors = config.validate();
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
            source: Box::new(e),
        })
}

/// Files a config names (secrets, Kafka properties) are read up to this size: a path to a
/// device or a huge file by mistake is refused instead of filling memory.
pub const MAX_REFERENCED_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a text file the config names, refusing one past [`MAX_REFERENCED_FILE_BYTES`].
pub(crate) fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_REFERENCED_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_REFERENCED_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_REFERENCED_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// Reads `key=value` lines; blank lines and `#` comments are skipped.
fn read_properties(file: &Path) -> Result<Vec<(String, String)>, String> {
    let text = read_small_file(file)?;
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            line.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{}:{}: expected key=value", file.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
// figment::Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests;
