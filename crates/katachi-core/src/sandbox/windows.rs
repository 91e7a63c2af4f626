//! Windows: katachi cannot confine commands here, so they run **unsandboxed**, and every surface
//! says so ([`UNSANDBOXED_MESSAGE`] in [`Sandbox::status`](super::Sandbox::status), the CLI and
//! the API).
//!
//! # What holds
//! - Only allowlisted programs start, resolved when the policy is built: `.exe`/`.com` files in
//!   the trusted folders (System32, the Windows folder, Git for Windows under Program Files; see
//!   `command_path`), never from the agent's `PATH`, the current folder or a workspace; batch
//!   files are refused. The command's `PATH` is the same list.
//! - It starts in a folder inside an allowed workspace, not in one of the agent's hidden folders,
//!   with the environment scrubbed to the allowlist plus `SystemRoot`, `PATH` and `TEMP`/`TMP` (a
//!   fresh scratch folder).
//! - Job Object: the command is created suspended, put in a fresh Job Object, then resumed, so not
//!   one of its instructions runs outside the job, and nothing it starts can leave it (breakaway
//!   is not allowed). The job limits processes at once ([`Limits::processes`]), the memory
//!   committed by the whole run ([`Limits::memory_bytes`]) and the user-mode CPU time of each
//!   process ([`Limits::cpu_time`], per process as on Unix); a crashing process ends instead of
//!   waiting on an error dialog.
//! - The whole tree is terminated (`TerminateJobObject`) on timeout, cancel and output overflow,
//!   and right after the command exits, so nothing it left running survives it; if the agent
//!   stops, closing the job kills it too (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`). Wall time and
//!   output size are limited as on every OS.
//!
//! # What does not
//! - No file, network or exec isolation: the command runs as the user; it can read and write what
//!   the user can, reach any host, and start any program (the allowlist decides only what katachi
//!   starts). A program can also have work started outside the job by asking another process
//!   (Task Scheduler, WMI, a COM server), which the job does not see.
//! - No file-size limit ([`Limits::file_bytes`]). A process ended by its CPU limit is reported
//!   with the exit code Windows gives it (`ERROR_NOT_ENOUGH_QUOTA`, 1816, for job time limits),
//!   not as a CPU-time denial: the supervisor recognises only Unix's `SIGXCPU`.
//!
//! # Not verified here
//! Compiled for `x86_64-pc-windows-gnu` by `make cross-check`, never run (no Windows here). The
//! plain parts (trusted folders, names, job limits, [`layers`]) are unit-tested on Linux.
//!
//! [`Limits::processes`]: super::Limits::processes
//! [`Limits::memory_bytes`]: super::Limits::memory_bytes
//! [`Limits::cpu_time`]: super::Limits::cpu_time
//! [`Limits::file_bytes`]: super::Limits::file_bytes

#[cfg(windows)]
#[allow(unsafe_code)]
mod job;
mod job_limits;
#[cfg(windows)]
mod spawn;

#[cfg(windows)]
pub(crate) use spawn::spawn;

use super::LayerStatus;

/// What every surface shows on Windows.
pub(crate) const UNSANDBOXED_MESSAGE: &str =
    "commands run unsandboxed on Windows: katachi cannot confine them";

/// The layers on Windows: no sandbox; a Job Object and limits.
pub(crate) fn layers() -> Vec<LayerStatus> {
    let layer = |name: &str, active: bool, detail: &str| LayerStatus {
        name: name.to_owned(),
        active,
        detail: detail.to_owned(),
    };
    vec![
        layer("sandbox", false, UNSANDBOXED_MESSAGE),
        layer(
            "job object",
            true,
            "every process of a run is in one Job Object from its first instruction and cannot \
             leave it; the whole tree is killed on timeout, cancel or output overflow, after the \
             command exits, and when the agent stops",
        ),
        layer(
            "limits",
            true,
            "wall time and output size; per run: processes at once and committed memory; per \
             process: user CPU time",
        ),
        layer(
            "allowlist",
            true,
            "only allowlisted .exe/.com programs from System32, the Windows folder and Git for \
             Windows (Program Files); no batch files; environment scrubbed to the allowlist; no \
             file, network or exec isolation",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_say_commands_are_not_sandboxed_and_name_the_job_object() {
        let layers = layers();
        let sandbox = &layers[0];
        assert_eq!(sandbox.name, "sandbox");
        assert!(!sandbox.active);
        assert_eq!(sandbox.detail, UNSANDBOXED_MESSAGE);
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["sandbox", "job object", "limits", "allowlist"]);
        assert!(layers.iter().all(|l| !l.detail.contains("taskkill")));
        assert!(layers[3]
            .detail
            .contains("no file, network or exec isolation"));
    }
}
