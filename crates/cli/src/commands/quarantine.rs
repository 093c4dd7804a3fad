//! `spillway quarantine`: lists a source's records that failed its schema, or redrives them
//! into the source's topic, each checked again against the schema as configured now.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use spillway_config::Process;
use spillway_core::headers;
use spillway_worker::quarantine::{self, Filter};

use super::{format_ms, load, parse_time, READ_BACK_TIMEOUT};

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Print the source's quarantined records that match the filters, oldest first.
    List {
        #[command(flatten)]
        filter: QuarantineFilter,
    },
    /// Check the matching records against the source's schema as configured now, and write
    /// those that pass to the source's topic for delivery. Those still failing stay.
    Redrive {
        #[command(flatten)]
        filter: QuarantineFilter,
        /// Check, and print what would be redriven, without writing.
        #[arg(long)]
        dry_run: bool,
        /// Also redrive the copies of records whose sender was answered 422
        /// (`on_invalid: reject`); by default they stay, since the sender was told.
        #[arg(long)]
        include_rejected: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct QuarantineFilter {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    /// The source whose quarantine to read.
    #[arg(long)]
    source: String,
    /// Only records whose first failure had this reason (`required`, `not_protobuf`...).
    #[arg(long)]
    reason: Option<String>,
    /// Received at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Received before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
}

/// Prints the matching records, then redrives them unless only listing (or a dry run).
pub async fn run(command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let (filter, redrive) = match command {
        QuarantineCommand::List { filter } => (filter, None),
        QuarantineCommand::Redrive {
            filter,
            dry_run,
            include_rejected,
        } => (filter, Some((dry_run, include_rejected))),
    };
    let config = load(&filter.config, Process::Worker)?;
    let source = quarantine::quarantined_source(&config, &filter.source)?;
    let wanted = Filter {
        reason: filter.reason,
        since_ms: filter.since,
        until_ms: filter.until,
        max: None,
    };
    let (listing, route) = (config.clone(), source.clone());
    let records = tokio::task::spawn_blocking(move || {
        quarantine::list(&listing, &route, &wanted, READ_BACK_TIMEOUT)
    })
    .await??;
    println!(
        "{:<26} {:<36} {:<24} {:<11} {:>8}  first error",
        "received at", "event id", "reason", "action", "bytes"
    );
    for r in &records {
        let first = r
            .header(headers::SCHEMA_ERRORS)
            .and_then(|e| serde_json::from_str::<Vec<spillway_schema::Violation>>(e).ok())
            .and_then(|v| v.into_iter().next())
            .map(|v| format!("{} {}", v.path, v.message))
            .unwrap_or_default();
        println!(
            "{:<26} {:<36} {:<24} {:<11} {:>8}  {first}",
            format_ms(quarantine::received_at_ms(r)),
            r.header(headers::EVENT_ID).unwrap_or("-"),
            r.header(headers::INVALID_REASON).unwrap_or("-"),
            r.header(headers::INVALID_ACTION).unwrap_or("-"),
            r.value.len(),
        );
    }
    let Some((dry_run, include_rejected)) = redrive else {
        println!("{} quarantined records", records.len());
        return Ok(ExitCode::SUCCESS);
    };
    let done = quarantine::redrive(&config, &source, &records, include_rejected, dry_run).await?;
    for (id, why) in &done.still_invalid {
        println!("still invalid, left in the quarantine: {id}: {why}");
    }
    let (verb, note) = if dry_run {
        ("would be redriven", " (dry run: nothing written)")
    } else {
        ("redriven", "")
    };
    println!(
        "{} records {verb} to {}, {} still invalid, {} refused copies left{note}",
        done.written,
        source.topic,
        done.still_invalid.len(),
        done.refused
    );
    Ok(ExitCode::SUCCESS)
}
