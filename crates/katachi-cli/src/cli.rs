//! Command-line shape (clap derive) and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use katachi_core::dirs::HOME_ENV;
use katachi_core::KatachiDirs;

use crate::output::Output;

/// katachi: work on the code on this machine from any browser, without the code leaving it.
#[derive(Debug, Parser)]
#[command(name = "katachi", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Keep all agent state under this folder instead of the platform defaults.
    #[arg(long, global = true, env = HOME_ENV, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check the keychain, the hardware fingerprint, the store and file permissions, and say how to
    /// fix whatever fails.
    Doctor,
    /// Manage the folders the agent may work in.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Run the agent without a tray: sign in at the relay if needed, then stay online until
    /// Ctrl-C or SIGTERM.
    Start(StartArgs),
    /// Show whether this agent is registered and how its connection to the relay is doing (live
    /// from the running agent when one runs).
    Status(StatusArgs),
    /// Take the running agent's remote access down for a while: no tunnel, no heartbeats.
    Pause(crate::pause::PauseArgs),
    /// End the running agent's pause now.
    Resume,
    /// Remove this agent from its relay, then wipe its local credentials.
    Unregister(UnregisterArgs),
    /// Show the audit and egress ledger: recent calls, and per workspace the bytes that left this
    /// machine. `katachi audit verify` checks that no record was edited or deleted.
    Audit(AuditArgs),
    /// The OS sandbox commands run in: `status` (layers), `test` (self-test of escapes), `run`
    /// (one command under the agent's policy and code path; exits with its status).
    #[command(subcommand)]
    Sandbox(crate::sandbox::SandboxCommand),
    /// AI operations: the provider and model each workspace uses (`use`, `show`, `reset`) and the
    /// providers' API keys (`key set|rm`, kept in the keychain).
    #[command(subcommand)]
    Ai(crate::ai::AiCommand),
}

/// `katachi audit` options.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuditArgs {
    /// Check the chain instead of printing the ledger.
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// How many recent records to print.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

/// `katachi audit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the tamper-evident chain: exit 0 when intact, 1 naming the first broken record and
    /// what is wrong with it.
    Verify,
}

/// `katachi start` options.
#[derive(Debug, clap::Args)]
pub(crate) struct StartArgs {
    /// The relay, `https://host[:port]` (needed for the first sign-in; afterwards the registered
    /// relay is used).
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// Trust only this CA for the relay's certificate (a local relay prints its `tls/ca.pem`).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Print the sign-in page instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// The name the relay shows for this machine (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
}

/// `katachi status` options.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Keep printing each change of the running agent's status until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
}

/// `katachi unregister` options.
#[derive(Debug, clap::Args)]
pub(crate) struct UnregisterArgs {
    /// Wipe the local credentials without telling the relay (when it cannot be reached); the relay
    /// keeps listing the agent until you revoke it there.
    #[arg(long)]
    pub local_only: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// Allow a folder (made absolute, symlinks resolved).
    Add {
        /// The folder.
        path: PathBuf,
    },
    /// Stop allowing a folder.
    #[command(alias = "remove")]
    Rm {
        /// The folder, as listed by `katachi workspace ls`.
        path: PathBuf,
    },
    /// List the allowed folders.
    #[command(alias = "list")]
    Ls,
}

/// Runs the parsed command; the exit code is 0 on success, 1 on failure.
pub(crate) fn run(cli: Cli) -> ExitCode {
    let out = Output::new(cli.json);
    let dirs = match KatachiDirs::resolve(cli.home) {
        Ok(d) => d,
        Err(e) => return out.fail(&anyhow::Error::new(e)),
    };
    let result = match cli.command {
        Command::Doctor => crate::doctor::run(&dirs, &out),
        Command::Workspace(cmd) => crate::workspace::run(&dirs, cmd, &out),
        Command::Start(args) => crate::start::run(&dirs, args, &out),
        Command::Status(args) => crate::status::run(&dirs, &args, &out),
        Command::Pause(args) => crate::pause::pause(&dirs, &args, &out),
        Command::Resume => crate::pause::resume(&dirs, &out),
        Command::Unregister(args) => crate::unregister::run(&dirs, &args, &out),
        Command::Audit(args) => crate::audit::run(&dirs, &args, &out),
        Command::Sandbox(cmd) => crate::sandbox::run(&dirs, cmd, &out),
        Command::Ai(cmd) => crate::ai::run(&dirs, cmd, &out),
    };
    match result {
        Ok(code) => code,
        Err(e) => out.fail(&e),
    }
}
