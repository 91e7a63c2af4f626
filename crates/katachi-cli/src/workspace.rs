//! `katachi workspace add|rm|ls`: through the running agent's control socket when one runs (the
//! change takes effect at once), else on the store through [`katachi_core::workspace_admin`].

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::store::{Actor, AddOutcome, Workspace};
use katachi_core::workspace_admin::{self, ListedWorkspace};
use katachi_core::{AgentHome, KatachiDirs};

use crate::cli::WorkspaceCommand;
use crate::output::Output;

pub(crate) fn run(
    dirs: &KatachiDirs,
    cmd: WorkspaceCommand,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let rt = crate::agent_control::runtime()?;
    if let Some(mut agent) = crate::agent_control::connect(&rt, dirs)? {
        match cmd {
            WorkspaceCommand::Add { path } => {
                print_added(out, &rt.block_on(agent.workspace_add(&path))?);
            }
            WorkspaceCommand::Rm { path } => {
                print_removed(out, &rt.block_on(agent.workspace_remove(&path))?);
            }
            WorkspaceCommand::Ls => print_list(out, &rt.block_on(agent.workspace_list())?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    drop(rt);
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    match cmd {
        WorkspaceCommand::Add { path } => {
            let outcome = workspace_admin::add_workspace(&home, Actor::Cli, &path)?;
            print_added(out, &outcome);
        }
        WorkspaceCommand::Rm { path } => {
            let removed = workspace_admin::remove_workspace(&home, Actor::Cli, &path)?;
            print_removed(out, &removed);
        }
        WorkspaceCommand::Ls => {
            let listed = workspace_admin::list_workspaces(&home)?;
            print_list(out, &listed);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what `workspace add` did.
pub(crate) fn print_added(out: &Output, outcome: &AddOutcome) {
    out.emit(outcome, || match outcome {
        AddOutcome::Added {
            workspace,
            absorbed,
        } if absorbed.is_empty() => format!("allowed {}", workspace.path),
        AddOutcome::Added {
            workspace,
            absorbed,
        } => format!(
            "allowed {} (it replaces {} allowed folder(s) inside it: {})",
            workspace.path,
            absorbed.len(),
            absorbed
                .iter()
                .map(|w| w.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AddOutcome::AlreadyAllowed { workspace } => {
            format!("{} is already allowed", workspace.path)
        }
        AddOutcome::CoveredBy { workspace } => {
            format!(
                "already allowed: it is inside the allowed workspace {}",
                workspace.path
            )
        }
    });
}

/// Prints what `workspace rm` removed.
pub(crate) fn print_removed(out: &Output, removed: &Workspace) {
    out.emit(removed, || format!("no longer allowed: {}", removed.path));
}

/// Prints the allowed workspaces.
pub(crate) fn print_list(out: &Output, listed: &[ListedWorkspace]) {
    out.emit(&listed, || {
        if listed.is_empty() {
            return "no allowed workspaces yet; add one with `katachi workspace add PATH`"
                .to_owned();
        }
        listed
            .iter()
            .map(|l| {
                let added =
                    UNIX_EPOCH + Duration::from_secs(u64::try_from(l.added_at).unwrap_or(0));
                let missing = if l.exists { "" } else { "  (folder missing)" };
                format!(
                    "{}  added {}{missing}",
                    l.path,
                    humantime::format_rfc3339_seconds(added)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}
