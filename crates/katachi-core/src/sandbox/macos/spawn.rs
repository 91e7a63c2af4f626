//! Starting one command under `sandbox-exec` (macOS), and killing its process group.
//!
//! Plain Unix process code (no macOS-only call), so the unit tests exercise it on Linux with a
//! stand-in launcher that skips `-p PROFILE --` and execs the rest; on macOS the launcher is
//! `/usr/bin/sandbox-exec`, which applies the profile and then execs the command.

use std::ffi::OsString;
use std::path::Path;

use super::{seatbelt_profile, ProfileError, ProfileInput, SANDBOX_EXEC};
use crate::sandbox::child::{supervise, unix_confined_command, ProcessTree};
use crate::sandbox::denied::{DenialKind, SandboxDenied};
use crate::sandbox::policy::{AllowedCommand, Limits, SandboxPolicy};
use crate::sandbox::{LayerStatus, SandboxChild, SandboxError};

/// The layers of the macOS backend.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn layers() -> Vec<LayerStatus> {
    let seatbelt = Path::new(SANDBOX_EXEC).is_file();
    let layer = |name: &str, active: bool, detail: &str| LayerStatus {
        name: name.to_owned(),
        active,
        detail: detail.to_owned(),
    };
    vec![
        layer(
            "seatbelt",
            seatbelt,
            if seatbelt {
                "sandbox-exec profile from the policy: files, exec, network, Mach IPC (deny default)"
            } else {
                "unavailable: /usr/bin/sandbox-exec is missing; commands are refused"
            },
        ),
        layer("rlimits", true, "CPU time and file size per process"),
        layer(
            "process group",
            true,
            "the command's process group is killed on timeout, cancel or output overflow",
        ),
        layer(
            "process count",
            false,
            "unavailable on macOS (RLIMIT_NPROC counts all the user's processes)",
        ),
        layer(
            "proxy",
            false,
            "egress proxy not wired on macOS: allowed hosts are refused",
        ),
    ]
}

/// Starts `command` under the policy's Seatbelt profile.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn spawn(
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    args: &[OsString],
    cwd: &Path,
) -> Result<SandboxChild, SandboxError> {
    spawn_with_launcher(Path::new(SANDBOX_EXEC), policy, command, args, cwd)
}

/// [`spawn`] with the launcher given (tests pass a stand-in).
pub(crate) fn spawn_with_launcher(
    launcher: &Path,
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    args: &[OsString],
    cwd: &Path,
) -> Result<SandboxChild, SandboxError> {
    // Seatbelt is the whole sandbox here: without it nothing runs, whatever the strictness
    if !launcher.is_file() {
        return Err(SandboxError::LayerUnavailable {
            layer: "seatbelt".to_owned(),
            reason: format!("{} is missing", launcher.display()),
        });
    }
    if !policy.allowed_hosts().is_empty() {
        return Err(SandboxError::LayerUnavailable {
            layer: "proxy".to_owned(),
            reason: "the egress proxy is not wired on macOS, so no host can be allowed".to_owned(),
        });
    }
    let setup_err = |step: &'static str| move |source| SandboxError::Setup { step, source };
    let scratch = tempfile::Builder::new()
        .prefix("katachi-run-")
        .tempdir()
        .map_err(setup_err("scratch folder"))?;
    let work = scratch.path().join("work");
    std::fs::create_dir(&work).map_err(setup_err("scratch folder"))?;
    // Seatbelt matches resolved paths (`/var/folders` is `/private/var/folders`)
    let work = std::fs::canonicalize(&work).map_err(setup_err("scratch folder"))?;
    let profile = seatbelt_profile(&ProfileInput::for_run(policy, command, &work, None)).map_err(
        |ProfileError::UnrepresentablePath(path)| SandboxDenied {
            kind: DenialKind::File,
            target: path.display().to_string(),
            how_to_allow: "rename the folder so its path is UTF-8 without control characters"
                .to_owned(),
        },
    )?;

    let mut cmd = unix_confined_command(launcher, policy, &work);
    cmd.arg("-p")
        .arg(&profile)
        .arg("--")
        .arg(&command.path)
        .args(args)
        .current_dir(cwd);
    apply_rlimits_before_exec(&mut cmd, &policy.limits());
    let child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: command.path.clone(),
        source,
    })?;
    let pgid = child.id().and_then(|p| libc::pid_t::try_from(p).ok());
    let tree = GroupTree {
        pgid,
        scratch: Some(scratch),
    };
    Ok(supervise(child, Box::new(tree), policy.limits()))
}

/// Sets CPU-time and file-size limits in the child before it execs the launcher (inherited by the
/// command). Core dumps are off: a crash must not write the process's memory into the workspace.
#[allow(unsafe_code)]
fn apply_rlimits_before_exec(cmd: &mut tokio::process::Command, limits: &Limits) {
    let cpu = limits.cpu_time.as_secs().max(1);
    let rules: [(_, libc::rlim_t); 3] = [
        (libc::RLIMIT_CPU, cpu),
        (libc::RLIMIT_FSIZE, limits.file_bytes),
        (libc::RLIMIT_CORE, 0),
    ];
    // SAFETY: the closure only calls setrlimit(2) (async-signal-safe) on stack data; it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, value) in rules {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                // SAFETY: `limit` is a valid rlimit for the duration of the call.
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The processes and scratch folder of one run.
struct GroupTree {
    pgid: Option<libc::pid_t>,
    scratch: Option<tempfile::TempDir>,
}

impl GroupTree {
    #[allow(unsafe_code)]
    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg with integer arguments.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }
}

impl ProcessTree for GroupTree {
    fn kill_all(&mut self) {
        self.kill_group();
    }

    fn kill_remaining(&mut self) {
        // orphans keep the group id alive; once none is left, reusing it would need the PID space
        // to wrap between the reap and this call
        self.kill_group();
    }

    fn release(&mut self) {
        drop(self.scratch.take());
    }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
