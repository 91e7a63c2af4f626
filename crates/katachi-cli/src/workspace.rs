//! `katachi workspace add|rm|ls`.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use katachi_core::activity::enqueue_activity;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::store::{Actor, AddOutcome, AuditEntry, AuditKey, Workspace};
use katachi_core::{AgentHome, KatachiDirs, Store};
use serde::Serialize;

use crate::cli::WorkspaceCommand;
use crate::output::Output;

/// A workspace as listed, with whether its folder still exists.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    workspace: &'a Workspace,
    exists: bool,
}

pub(crate) fn run(
    dirs: &KatachiDirs,
    cmd: WorkspaceCommand,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    let store = home.store()?;
    let audit_key = AuditKey::derive(home.machine_key());
    match cmd {
        WorkspaceCommand::Add { path } => {
            let outcome = store.workspaces().add(&path, &home.protected_dirs())?;
            if let AddOutcome::Added {
                workspace,
                absorbed,
            } = &outcome
            {
                // the folders it replaces are no longer separate workspaces
                let entry = AuditEntry::new(Actor::Cli, "workspace.add")
                    .in_workspace(workspace)
                    .with_paths(absorbed.iter().map(|w| w.path.clone()));
                store.audit(&audit_key).append(&entry)?;
                queue_activity(&store, "workspace.added", &workspace.path);
            }
            out.emit(&outcome, || match &outcome {
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
        WorkspaceCommand::Rm { path } => {
            let removed = store.workspaces().remove(&path)?;
            store
                .audit(&audit_key)
                .append(&AuditEntry::new(Actor::Cli, "workspace.remove").in_workspace(&removed))?;
            queue_activity(&store, "workspace.removed", &removed.path);
            out.emit(&removed, || format!("no longer allowed: {}", removed.path));
        }
        WorkspaceCommand::Ls => {
            let list = store.workspaces().list()?;
            let listed: Vec<Listed<'_>> = list
                .iter()
                .map(|w| Listed {
                    workspace: w,
                    exists: std::path::Path::new(&w.path).is_dir(),
                })
                .collect();
            out.emit(&listed, || {
                if listed.is_empty() {
                    return "no allowed workspaces yet; add one with `katachi workspace add PATH`"
                        .to_owned();
                }
                listed
                    .iter()
                    .map(|l| {
                        let added = UNIX_EPOCH
                            + Duration::from_secs(u64::try_from(l.workspace.added_at).unwrap_or(0));
                        let missing = if l.exists { "" } else { "  (folder missing)" };
                        format!(
                            "{}  added {}{missing}",
                            l.workspace.path,
                            humantime::format_rfc3339_seconds(added)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Queues an activity event for the relay (sent by the running agent, kept until acknowledged).
/// The workspace change itself is done: failing to queue is a warning, not an error.
fn queue_activity(store: &Store, kind: &str, path: &str) {
    let payload = serde_json::json!({ "path": path });
    if let Err(e) = enqueue_activity(&store.outbox(), kind, &payload) {
        eprintln!("katachi: warning: cannot queue the {kind} event for the relay: {e}");
    }
}
