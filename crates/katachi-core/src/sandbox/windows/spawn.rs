//! Starting a command on Windows: a plain, unconfined process in its run's Job Object (see the
//! module docs of `windows` for what that does and does not hold).

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use windows_sys::Win32::System::Threading::{CREATE_NO_WINDOW, CREATE_SUSPENDED};

use super::job::{resume_suspended_process, Job};
use super::job_limits::{JobLimits, KILLED_EXIT_CODE};
use crate::sandbox::child::{supervise, ProcessTree};
use crate::sandbox::command_path::{trusted_path_env, windows_system_root};
use crate::sandbox::denied::{DenialKind, SandboxDenied};
use crate::sandbox::policy::{AllowedCommand, SandboxPolicy};
use crate::sandbox::{SandboxChild, SandboxError};

/// Starts `command` as a plain (unconfined) process inside a fresh Job Object with the policy's
/// limits: created suspended, assigned, then resumed, so nothing of it runs outside the job.
///
/// # Errors
/// A `file` denial for a folder hidden from the sandbox; [`SandboxError::Setup`] when the scratch
/// folder or the Job Object cannot be made (the command is then killed before its first
/// instruction); [`SandboxError::Spawn`] when Windows cannot start it.
pub(crate) fn spawn(
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    args: &[OsString],
    cwd: &Path,
) -> Result<SandboxChild, SandboxError> {
    // nothing stops the command from reading them, but katachi does not start it there
    if let Some(hidden) = policy.hidden.iter().find(|h| cwd.starts_with(h)) {
        return Err(SandboxDenied {
            kind: DenialKind::File,
            target: hidden.display().to_string(),
            how_to_allow: "run in a workspace folder outside the agent's own folders".to_owned(),
        }
        .into());
    }
    let setup_err = |step: &'static str| move |source| SandboxError::Setup { step, source };
    let scratch = tempfile::Builder::new()
        .prefix("katachi-run-")
        .tempdir()
        .map_err(setup_err("scratch folder"))?;
    let job =
        Job::create(JobLimits::from_limits(&policy.limits())).map_err(setup_err("job object"))?;
    let system_root = windows_system_root(&|name| std::env::var_os(name));

    let mut cmd = tokio::process::Command::new(&command.path);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(policy.env.iter().map(|(k, v)| (k, v)))
        // Windows programs fail to start without SystemRoot; it is no secret
        .env("SystemRoot", &system_root)
        // the folders commands were resolved in, never the agent's PATH
        .env("PATH", trusted_path_env())
        .env("TEMP", scratch.path())
        .env("TMP", scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .creation_flags(CREATE_NO_WINDOW | CREATE_SUSPENDED);
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: command.path.clone(),
        source,
    })?;
    if let Err(source) = start_in_job(&child, &job) {
        // still suspended: the command never ran; the job's close kills it if it was assigned
        let _ = child.start_kill();
        return Err(SandboxError::Setup {
            step: "job object assignment",
            source,
        });
    }
    let tree = JobTree {
        job: Some(job),
        scratch: Some(scratch),
    };
    Ok(supervise(child, Box::new(tree), policy.limits()))
}

/// Puts the suspended `child` in `job`, then lets it run.
fn start_in_job(child: &tokio::process::Child, job: &Job) -> std::io::Result<()> {
    let (Some(process), Some(pid)) = (child.raw_handle(), child.id()) else {
        return Err(std::io::ErrorKind::NotFound.into());
    };
    job.assign(process)?;
    resume_suspended_process(pid)
}

/// The run's processes: its Job Object. Dropping it (the supervisor gone, the agent stopping)
/// closes the job, which kills them all.
struct JobTree {
    job: Option<Job>,
    scratch: Option<tempfile::TempDir>,
}

impl JobTree {
    fn terminate(&self) {
        if let Some(job) = &self.job {
            if let Err(e) = job.terminate(KILLED_EXIT_CODE) {
                // the job's close in `release` still kills them (KILL_ON_JOB_CLOSE)
                tracing::warn!(error = %e, "cannot terminate the run's job object");
            }
        }
    }
}

impl ProcessTree for JobTree {
    fn kill_all(&mut self) {
        self.terminate();
    }

    fn kill_remaining(&mut self) {
        // the command is gone; whatever it left running is still in the job
        self.terminate();
    }

    fn release(&mut self) {
        drop(self.job.take());
        // best effort: a process still exiting may hold a file of it for a moment
        drop(self.scratch.take());
    }
}
