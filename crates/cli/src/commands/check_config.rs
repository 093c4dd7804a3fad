//! `spillway check-config`: validates a config file, secrets included, names every bad
//! field, and prints what is legal but probably wrong as warnings.

use std::path::Path;
use std::process::ExitCode;

use spillway_config::Process;

/// Prints the warnings and a one-line summary of a valid config (warnings do not fail it), or
/// every error of an invalid one, reading the secrets and files that `process` reads.
pub fn run(config: &Path, process: Process) -> ExitCode {
    match spillway_config::load_with_warnings(config, process) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            let c = &loaded.config;
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
