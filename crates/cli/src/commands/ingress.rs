//! `spillway ingress`: serves webhooks (verify, dedupe, write to Kafka, answer 202) until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use spillway_config::Config;
use tokio::net::TcpListener;

use super::shutdown_signal;

/// Binds the ingress and admin listeners, announces them, and serves until a stop signal.
pub async fn run(config: Config, path: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(config.ingress.listen)
        .await
        .with_context(|| format!("binding ingress.listen {}", config.ingress.listen))?;
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding admin.listen {}", config.admin.listen))?;
    let ingress = spillway_ingress::Ingress::from_config(&config)?
        .reload_from(path, &config)
        .await;
    ingress.check_topics().await?;
    // One machine-readable line on stdout with the bound addresses (port 0 picks free ports).
    println!(
        "{}",
        serde_json::json!({
            "event": "listening",
            "ingress": listener.local_addr()?.to_string(),
            "admin": admin.local_addr()?.to_string(),
            "tls": config.ingress.tls.is_some(),
        })
    );
    tracing::info!(ingress = %listener.local_addr()?, admin = %admin.local_addr()?, "spillway ingress started");
    ingress.run(listener, admin, shutdown_signal()).await;
    tracing::info!("spillway ingress stopped");
    Ok(ExitCode::SUCCESS)
}
