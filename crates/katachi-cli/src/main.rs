//! `katachi`: the headless agent. Parses arguments, sets up logging, runs the command.

#![forbid(unsafe_code)]

mod agent_control;
mod ai;
mod ai_note;
mod audit;
mod cli;
mod doctor;
mod output;
mod pause;
mod sandbox;
mod sandbox_policy;
mod sign_in;
mod start;
mod status;
mod unregister;
mod workspace;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        // By default only the agent runtime's warnings (credentials not saved, tunnel stopped for
        // good…) reach stderr; `KATACHI_LOG` chooses otherwise.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KATACHI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("katachi_core::agent=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    cli::run(args)
}
