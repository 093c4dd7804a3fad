//! `spillway dlq`: lists the dead letters, or redrives them into the retry path for a fresh set
//! of attempts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use spillway_core::headers;
use spillway_worker::control;

use spillway_config::Process;

use super::{format_ms, load, parse_time, READ_BACK_TIMEOUT};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print the dead letters that match the filters, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Put the matching dead letters back into the retry path, due now, as attempt 1.
    Redrive {
        #[command(flatten)]
        filter: DlqFilter,
        /// Only print what would be redriven.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct DlqFilter {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    /// Only this subscription's dead letters.
    #[arg(long)]
    subscription: Option<String>,
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Dead at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Dead before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
}

/// Prints the matching dead letters, then redrives them unless only listing (or a dry run).
pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let (filter, redrive) = match command {
        DlqCommand::List { filter } => (filter, None),
        DlqCommand::Redrive { filter, dry_run } => (filter, Some(dry_run)),
    };
    let config = load(&filter.config, Process::Worker)?;
    let wanted = spillway_worker::dlq::Filter {
        subscription: filter.subscription,
        source: filter.source,
        since_ms: filter.since,
        until_ms: filter.until,
        known: None,
        max: None,
    };
    let listing = config.clone();
    let letters = tokio::task::spawn_blocking(move || {
        spillway_worker::dlq::list(&listing, &wanted, READ_BACK_TIMEOUT)
    })
    .await??;
    print_letters(&letters);
    match redrive {
        None => println!("{} dead letters", letters.len()),
        Some(true) => println!("{} dead letters would be redriven (dry run)", letters.len()),
        Some(false) => {
            let n = spillway_worker::dlq::redrive(&config, &letters).await?;
            println!("{n} dead letters redriven");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The dead letters as a table: when, whose, why, after how many attempts.
fn print_letters(letters: &[spillway_worker::dlq::DeadLetter]) {
    println!(
        "{:<26} {:<20} {:<12} {:<36} {:<20} {:>8} {:>6}",
        "dead at", "subscription", "source", "event id", "reason", "attempts", "status"
    );
    for d in letters {
        let at = format_ms(d.dead_at_ms());
        let h = |name: &str| d.header(name).unwrap_or("-").to_owned();
        println!(
            "{at:<26} {:<20} {:<12} {:<36} {:<20} {:>8} {:>6}",
            h(control::SUBSCRIPTION),
            h(headers::SOURCE),
            h(headers::EVENT_ID),
            h(control::DEAD_REASON),
            h(control::ATTEMPT),
            h(control::LAST_STATUS),
        );
    }
}
