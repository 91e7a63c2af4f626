//! `katachi-relay`: parses arguments, sets up logging, then runs the relay until Ctrl-C or SIGTERM,
//! or runs the subcommand asked for.

#![forbid(unsafe_code)]

use clap::Parser;
use katachi_relay::config::{Args, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    katachi_relay::logging::init(args.log_format)?;
    if let Some(Command::RotateMasterKey(rotate)) = args.command.take() {
        return katachi_relay::rotate_key::run(rotate).await;
    }
    let relay = katachi_relay::Relay::start(args.into_config()?).await?;
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
