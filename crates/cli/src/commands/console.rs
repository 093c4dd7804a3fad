//! `spillway console`: the operator console's API and its indexer, until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use spillway_config::Config;
use tokio::net::TcpListener;

use super::shutdown_signal;

/// Binds `console.listen` and runs the console until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let listen = config.console.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding console.listen {listen}"))?;
    let indexing = config.console.index.enabled;
    let console = spillway_console::Console::start(config).await?;
    tracing::info!(listen = %listener.local_addr()?, indexing, "spillway console started");
    console.run(listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
