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
    describe, read_credential, read_secret, FieldError, ResolvedSource, ResolvedSubscription,
    SubscriptionSecret,
};

use std::path::Path;

use figment::providers::{Env, Format, Yaml};
use figment::Figment;

/// The top-level sections an environment override may address. Other `SPILLWAY_*` variables
/// (for instance the ones holding secrets) are left alone instead of being parsed as config.
const ENV_SECTIONS: &[&str] = &["ingress", "admin", "kafka", "redis", "sources", "worker"];

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
    let config: Config = figment.extract().map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(e),
    })?;
    let errors = config.validate();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

#[cfg(test)]
// figment::Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests;
