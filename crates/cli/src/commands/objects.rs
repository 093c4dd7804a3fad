//! `spillway objects sweep`: removes the stored bodies (object storage) that no record refers
//! to any more, once Kafka's retention has removed their records.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use spillway_config::Process;
use spillway_worker::sweep;

use super::{load, READ_BACK_TIMEOUT};

#[derive(Debug, Subcommand)]
pub enum ObjectsCommand {
    /// Read every topic whose records may refer to a stored body (sources, quarantines, retry
    /// tiers, dead letters) and remove the objects none refers to.
    Sweep {
        #[arg(long, env = "SPILLWAY_CONFIG")]
        config: PathBuf,
        /// Leave objects written more recently than this (their record may be on its way to
        /// Kafka); above `kafka.delivery_timeout`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: ObjectsCommand) -> anyhow::Result<ExitCode> {
    let ObjectsCommand::Sweep {
        config,
        older_than,
        dry_run,
    } = command;
    let config = load(&config, Process::Worker)?;
    if older_than <= config.kafka.delivery_timeout {
        anyhow::bail!(
            "--older-than must be more than kafka.delivery_timeout ({}): an object that young may belong to a record still being written",
            humantime::format_duration(config.kafka.delivery_timeout)
        );
    }
    let swept = sweep::sweep(&config, older_than, dry_run, READ_BACK_TIMEOUT).await?;
    for uri in &swept.orphans {
        println!("{} {uri}", if dry_run { "would remove" } else { "removed" });
    }
    println!(
        "{} objects: {} referred to by a record, {} younger than {}, {} {}",
        swept.listed,
        swept.referenced,
        swept.young,
        humantime::format_duration(older_than),
        swept.orphans.len(),
        if dry_run { "to remove" } else { "removed" }
    );
    Ok(ExitCode::SUCCESS)
}
