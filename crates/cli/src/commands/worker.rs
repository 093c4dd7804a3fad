//! `spillway worker`: delivers events to subscribers (consume the source topics, sign, retry,
//! dead-letter) until SIGTERM or SIGINT; a new source in the config file is consumed without a
//! restart.

use std::process::ExitCode;

use anyhow::Context as _;
use spillway_config::Config;
use tokio::net::TcpListener;

use super::shutdown_signal;

/// Binds the worker's admin listener and runs the worker until a stop signal.
pub async fn run(config: Config, path: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    let admin = TcpListener::bind(config.worker.admin_listen)
        .await
        .with_context(|| format!("binding worker.admin_listen {}", config.worker.admin_listen))?;
    let worker = spillway_worker::Worker::from_config(&config)?
        .reload_from(path, &config)
        .await;
    tracing::info!(
        subscriptions = config.subscriptions.len(),
        admin = %admin.local_addr()?,
        "spillway worker started"
    );
    worker.run(admin, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
