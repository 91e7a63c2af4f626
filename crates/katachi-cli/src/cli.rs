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
    };
    match result {
        Ok(code) => code,
        Err(e) => out.fail(&e),
    }
}
