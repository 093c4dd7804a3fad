//! Calls to the shared store, timed and traced, and its fixed-window counters: the per-source
//! rate limits and the per-address verification failures both count hits in the window the
//! current time falls in, one key per window, so every pod adds to the same count.

use std::time::{Duration, Instant};

use spillway_core::time::{millis, now_ms};
use spillway_store::{SharedStore, StoreError};
use spillway_telemetry::{traces, IngressMetrics, RedisCommand};
use tracing::Instrument;

/// One hit counted in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The window's count, this hit included.
    pub count: u64,
    /// Until the window ends.
    pub left: Duration,
}

/// Counts a hit on `name` in the current `window` (key `<name>:<window index>`).
pub async fn count_hit(
    store: &SharedStore,
    metrics: &IngressMetrics,
    command: RedisCommand,
    name: &str,
    window: Duration,
) -> Result<Hit, StoreError> {
    // At least 1 ms: a zero window would divide by zero.
    let window_ms = millis(window).max(1);
    let now = now_ms();
    let index = now / window_ms;
    let key = format!("{name}:{index}");
    let count = timed(metrics, command, store.count(&key, window)).await?;
    Ok(Hit {
        count,
        left: Duration::from_millis((index + 1) * window_ms - now),
    })
}

/// Runs one Redis command in its own span and records its time and whether it failed.
pub(crate) async fn timed<T, E>(
    metrics: &IngressMetrics,
    command: RedisCommand,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let timing = CommandTiming::start(&tracing::Span::current(), command);
    let result = call.instrument(timing.span.clone()).await;
    timing.finish(metrics, result.is_ok());
    result
}

/// A Redis command's span and start: what [`timed`] keeps around one call, kept by hand for
/// commands sent together (the commits of a `redis.commit_delay`, the claims of a batch
/// request's records or of an event's two keys), each under its own parent span.
pub(crate) struct CommandTiming {
    command: RedisCommand,
    span: tracing::Span,
    started: Instant,
}

impl CommandTiming {
    pub(crate) fn start(parent: &tracing::Span, command: RedisCommand) -> Self {
        let span = traces::traced(|| {
            let span = tracing::info_span!(
                parent: parent,
                "dedupe",
                otel.name = %format_args!("dedupe.{}", command.label()),
                otel.kind = "client",
            );
            traces::set_attributes(
                &span,
                &[
                    ("db.system.name", "redis".into()),
                    ("db.operation.name", command.label().into()),
                ],
            );
            span
        });
        Self {
            command,
            span,
            started: Instant::now(),
        }
    }

    /// Records the command's time and whether it failed, and ends its span.
    pub(crate) fn finish(self, metrics: &IngressMetrics, ok: bool) {
        let seconds = self.started.elapsed().as_secs_f64();
        metrics.redis_command(self.command, seconds, ok);
        if !ok {
            traces::set_error(&self.span, "redis_error");
        }
    }
}
