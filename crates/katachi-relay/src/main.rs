//! `katachi-relay`: parses arguments, sets up logging, runs the relay until Ctrl-C or SIGTERM.

#![forbid(unsafe_code)]

use clap::Parser;
use katachi_relay::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KATACHI_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Args::parse().into_config()?;
    let relay = katachi_relay::Relay::start(config).await?;
    relay.print_banner();
    relay.serve_until(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
