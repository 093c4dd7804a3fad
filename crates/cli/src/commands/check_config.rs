//! `spillway check-config`: validates a config file, secrets included, and names every bad
//! field.

use std::path::Path;
use std::process::ExitCode;

/// Prints a one-line summary of a valid config, or every error of an invalid one.
pub fn run(config: &Path) -> ExitCode {
    match spillway_config::load(config) {
        Ok(c) => {
            println!(
                "{}: ok ({} sources: {})",
                config.display(),
                c.sources.len(),
                c.topics().join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
