//! `katachi sandbox policy show|set|reset --workspace DIR`: the sandbox overrides stored for one
//! allowed workspace (commands, hosts, `.env*` access, limits, consent to unsandboxed runs). Changes are written to the audit log.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::sandbox::{SandboxPolicy, WorkspaceOverrides};
use katachi_core::store::{Actor, Workspace};
use katachi_core::workspace_admin::{self, PolicyReset, PolicySet};
use katachi_core::{AgentHome, KatachiDirs, Store};
use serde::Serialize;

use crate::output::Output;
use crate::sandbox::PolicyCommand;

/// What `show` prints: the stored overrides and the policy a run in the workspace gets.
#[derive(Serialize)]
struct Shown<'a> {
    workspace: &'a str,
    overrides: &'a WorkspaceOverrides,
    effective: Effective,
}

#[derive(Serialize)]
struct Effective {
    commands: Vec<(String, String)>,
    hosts: Vec<String>,
    allow_env_files: bool,
    allow_unsandboxed: bool,
    wall_time_secs: u64,
    cpu_time_secs: u64,
    memory_mib: u64,
    processes: u64,
    output_bytes: u64,
}

pub(crate) fn run(
    dirs: &KatachiDirs,
    cmd: PolicyCommand,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    if through_running_agent(dirs, &cmd, out)? {
        return Ok(ExitCode::SUCCESS);
    }
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    let store = home.store()?;
    match cmd {
        PolicyCommand::Show { workspace } => {
            let (ws, overrides) = lookup(&store, &workspace)?;
            let policy =
                SandboxPolicy::for_workspace(&store, Path::new(&ws.path), &home.protected_dirs())?
                    .build()?;
            let limits = policy.limits();
            let shown = Shown {
                workspace: &ws.path,
                overrides: &overrides,
                effective: Effective {
                    commands: policy
                        .commands()
                        .map(|c| (c.name.clone(), c.path.display().to_string()))
                        .collect(),
                    hosts: policy.allowed_hosts().to_vec(),
                    allow_env_files: policy.workspaces().iter().any(|w| w.allow_env_files),
                    allow_unsandboxed: policy.allows_unsandboxed(),
                    wall_time_secs: limits.wall_time.as_secs(),
                    cpu_time_secs: limits.cpu_time.as_secs(),
                    memory_mib: limits.memory_bytes >> 20,
                    processes: limits.processes,
                    output_bytes: limits.output_bytes,
                },
            };
            out.emit(&shown, || render(&shown));
        }
        PolicyCommand::Set(args) => {
            let set = workspace_admin::set_policy(&home, Actor::Cli, &args.change())?;
            print_set(out, &set);
        }
        PolicyCommand::Reset { workspace } => {
            let reset = workspace_admin::reset_policy(&home, Actor::Cli, &workspace)?;
            print_reset(out, &reset);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends `set` and `reset` to the running agent, which applies them at once; `false` when no
/// agent runs (or for `show`, which reads the store).
fn through_running_agent(
    dirs: &KatachiDirs,
    cmd: &PolicyCommand,
    out: &Output,
) -> anyhow::Result<bool> {
    if matches!(cmd, PolicyCommand::Show { .. }) {
        return Ok(false);
    }
    let rt = crate::agent_control::runtime()?;
    let Some(mut agent) = crate::agent_control::connect(&rt, dirs)? else {
        return Ok(false);
    };
    match cmd {
        PolicyCommand::Set(args) => print_set(out, &rt.block_on(agent.policy_set(args.change()))?),
        PolicyCommand::Reset { workspace } => {
            print_reset(out, &rt.block_on(agent.policy_reset(workspace))?);
        }
        PolicyCommand::Show { .. } => return Ok(false),
    }
    Ok(true)
}

/// The workspace and its overrides; a stored value that no longer reads can still be reset.
fn lookup(store: &Store, dir: &Path) -> anyhow::Result<(Workspace, WorkspaceOverrides)> {
    let ws = workspace_admin::workspace_of(store, dir)?;
    let overrides = WorkspaceOverrides::load(store, &ws)?;
    Ok((ws, overrides))
}

/// Prints what `policy set` stored.
pub(crate) fn print_set(out: &Output, set: &PolicySet) {
    out.emit(&set.overrides, || {
        format!("sandbox overrides of {} saved", set.workspace)
    });
}

/// Prints what `policy reset` did.
fn print_reset(out: &Output, reset: &PolicyReset) {
    out.emit(reset, || {
        if reset.removed {
            format!(
                "sandbox overrides of {} removed: the default policy applies",
                reset.workspace
            )
        } else {
            format!("{} had no sandbox overrides", reset.workspace)
        }
    });
}

fn render(s: &Shown<'_>) -> String {
    let e = &s.effective;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut lines = vec![format!("workspace {}", s.workspace)];
    if s.overrides.is_empty() {
        lines.push("  no overrides: the default policy applies".to_owned());
    }
    lines.push(format!(
        "  commands: {}",
        list(
            e.commands
                .iter()
                .map(|(n, p)| format!("{n} ({p})"))
                .collect()
        )
    ));
    lines.push(format!("  hosts: {}", list(e.hosts.clone())));
    lines.push(format!(
        "  .env files: {}",
        if e.allow_env_files {
            "readable"
        } else {
            "hidden"
        }
    ));
    lines.push(format!(
        "  browser runs where the sandbox is not enforced: {}",
        if e.allow_unsandboxed {
            "allowed (they run unconfined)"
        } else {
            "refused"
        }
    ));
    lines.push(format!(
        "  limits: wall {} s, cpu {} s, memory {} MiB, {} processes, output {} bytes",
        e.wall_time_secs, e.cpu_time_secs, e.memory_mib, e.processes, e.output_bytes
    ));
    lines.join("\n")
}
