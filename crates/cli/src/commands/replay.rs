//! `spillway replay`: re-delivers a range of a source topic, still in Kafka retention, to its
//! subscriptions through the workers' retry path.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use spillway_worker::registry::LiveSubscriptions;

use spillway_config::Process;

use super::{load, parse_time, READ_BACK_TIMEOUT};

// The arguments of `spillway replay` (a plain comment: a doc comment here would become the
// command's help text in place of the one on `Command::Replay`).
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(long, env = "SPILLWAY_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// Start: an RFC 3339 time (events accepted then or later) or an offset (every partition).
    #[arg(long, value_parser = parse_position)]
    from: Option<Position>,
    /// End (exclusive): an RFC 3339 time or an offset.
    #[arg(long, value_parser = parse_position)]
    to: Option<Position>,
    /// Only events of this type.
    #[arg(long)]
    event_type: Option<String>,
    /// Only to this subscription (by default every subscription that wants the events).
    #[arg(long)]
    subscription: Option<String>,
    /// Deliveries queued per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Only print how many deliveries the range selects.
    #[arg(long)]
    dry_run: bool,
}

/// A place in a topic: a time or an offset.
#[derive(Debug, Clone, Copy)]
enum Position {
    TimeMs(u64),
    Offset(i64),
}

/// A position as (time, offset): one of them, or neither.
fn split(position: Option<Position>) -> (Option<u64>, Option<i64>) {
    match position {
        Some(Position::TimeMs(t)) => (Some(t), None),
        Some(Position::Offset(o)) => (None, Some(o)),
        None => (None, None),
    }
}

fn parse_position(text: &str) -> Result<Position, String> {
    match text.parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(Position::Offset(offset)),
        Ok(_) => Err("an offset cannot be negative".into()),
        Err(_) => parse_time(text).map(Position::TimeMs),
    }
}

/// Selects the deliveries the range makes for the current subscriptions, then queues them at
/// `rate` (or only counts them, for a dry run).
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, Process::Worker)?;
    let (since_ms, from_offset) = split(args.from);
    let (until_ms, to_offset) = split(args.to);
    let range = spillway_worker::replay::Range {
        source: args.source,
        since_ms,
        until_ms,
        from_offset,
        to_offset,
        event_type: args.event_type,
        subscription: args.subscription,
        max_records: None,
    };
    let subscriptions = LiveSubscriptions::load(Arc::new(config.clone()))
        .await?
        .snapshot();
    let selecting = config.clone();
    let replays = tokio::task::spawn_blocking(move || {
        spillway_worker::replay::select(&selecting, &subscriptions, &range, READ_BACK_TIMEOUT)
    })
    .await??;
    if args.dry_run {
        println!("{} deliveries would be replayed (dry run)", replays.len());
    } else {
        let n = spillway_worker::replay::replay(&config, &replays, args.rate).await?;
        println!("{n} deliveries queued for the workers");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_an_offset_or_a_time() {
        assert!(matches!(parse_position("42"), Ok(Position::Offset(42))));
        assert!(matches!(
            parse_position("1970-01-01T00:00:02Z"),
            Ok(Position::TimeMs(2000))
        ));
        assert_eq!(
            parse_position("-1").err().as_deref(),
            Some("an offset cannot be negative")
        );
        assert_eq!(split(Some(Position::Offset(7))), (None, Some(7)));
        assert_eq!(split(Some(Position::TimeMs(9))), (Some(9), None));
        assert_eq!(split(None), (None, None));
    }
}
