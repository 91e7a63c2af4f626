//! `katachi-relay`: parses arguments, sets up logging, runs the relay until Ctrl-C or SIGTERM.

#![forbid(unsafe_code)]

use clap::Parser;
use katachi_relay::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KATACHI_LOG")
        .unwrap_or_else(|_| "info".into())
        // rmcp logs whole MCP messages at debug: a server echoing its credential would put the
        // secret in the log, whatever level KATACHI_LOG asks for
        .add_directive(katachi_relay::mcp::RMCP_LOG_DIRECTIVE.parse()?);
    tracing_subscriber::fmt().with_env_filter(filter).init();
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
