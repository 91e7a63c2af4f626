//! A running sandboxed command: its output as a stream, its outcome as a future, and cancellation.
//!
//! A supervisor task owns the process: it streams stdout/stderr in chunks, counts bytes against the
//! output limit, enforces the wall time, and kills the whole process tree (never just the direct
//! child) on timeout, cancel or overflow, and again after the command exits so no orphan survives.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::denied::SandboxDenied;
use super::git_guard::GitCreationGuard;
use super::policy::Limits;
use super::proxy::{EgressAttempt, EgressProxy};

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The largest chunk of output one [`RunEvent`] carries: one read of the pipe. With the 1 MiB
/// pipes of the Linux backend, 256 KiB reads halve the wake-ups per byte against 64 KiB
/// (docs/PERFORMANCE.md, "Sandbox"); with [`EVENTS_IN_FLIGHT`] it bounds the output buffered per
/// run at 4 MiB.
pub(crate) const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Chunks buffered between the pipes and the consumer (back-pressure beyond that: the command
/// blocks on a full pipe).
const EVENTS_IN_FLIGHT: usize = 16;

/// One chunk of output, in the order read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    /// Where it came from.
    pub stream: OutputStream,
    /// The bytes: what one read of the pipe returned, at most 256 KiB (nothing promises a size).
    pub data: Vec<u8>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum ExitKind {
    /// It exited with this code (`128 + N` when signal `N` ended it inside the PID namespace).
    Code(i32),
    /// Signal `N` ended it.
    Signal(i32),
}

impl ExitKind {
    /// A shell-style exit code: the code, or `128 + signal`.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    /// How the command ended.
    pub exit: ExitKind,
    /// Set when a limit ended the run (wall time, output, CPU time), it was cancelled, or it made
    /// a `.git` in a workspace root (moved aside; see `git_guard`).
    pub denied: Option<SandboxDenied>,
    /// Bytes of output streamed (both streams).
    pub output_bytes: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// Each connection attempt through the egress proxy, allowed or denied, in order (empty when
    /// the policy allows no host).
    pub egress: Vec<EgressAttempt>,
}

/// Kills every process a run started.
pub(crate) trait ProcessTree: Send + 'static {
    /// Sends SIGKILL to the whole tree while the command still runs (idempotent).
    fn kill_all(&mut self);
    /// After the command was reaped: kills whatever it left behind.
    fn kill_remaining(&mut self);
    /// Frees what the run held (cgroup, scratch folder) after the tree is dead.
    fn release(&mut self);
}

/// Stops a running command (and its whole process tree) from anywhere.
#[derive(Debug, Clone)]
pub struct CancelHandle(watch::Sender<bool>);

impl CancelHandle {
    /// Kills the run; its outcome reports `cancelled`.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

/// A started sandboxed command.
#[derive(Debug)]
pub struct SandboxChild {
    events: mpsc::Receiver<RunEvent>,
    done: oneshot::Receiver<RunOutcome>,
    cancel: CancelHandle,
}

impl SandboxChild {
    /// The next chunk of output, or `None` once both streams are closed.
    pub async fn next_output(&mut self) -> Option<RunEvent> {
        self.events.recv().await
    }

    /// A handle that cancels the run.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Waits for the end, discarding output not yet read.
    pub async fn wait(mut self) -> RunOutcome {
        while self.events.recv().await.is_some() {}
        self.done.await.unwrap_or(RunOutcome {
            exit: ExitKind::Signal(libc_sigkill()),
            denied: None,
            output_bytes: 0,
            duration: Duration::ZERO,
            egress: Vec::new(),
        })
    }

    /// Waits for the end, collecting stdout and stderr (already capped by the output limit).
    pub async fn collect(mut self) -> (RunOutcome, Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(ev) = self.events.recv().await {
            match ev.stream {
                OutputStream::Stdout => out.extend_from_slice(&ev.data),
                OutputStream::Stderr => err.extend_from_slice(&ev.data),
            }
        }
        (self.wait().await, out, err)
    }
}

const fn libc_sigkill() -> i32 {
    9
}

/// One output pipe of a started command.
pub(crate) type OutputPipe = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A started command as the supervisor sees it: two output pipes and its exit.
pub(crate) struct StartedProcess {
    /// The command's stdout.
    pub(crate) stdout: Option<OutputPipe>,
    /// The command's stderr.
    pub(crate) stderr: Option<OutputPipe>,
    /// Resolves when the process ends (`None`: its status could not be read).
    pub(crate) exit: std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<std::process::ExitStatus>> + Send>,
    >,
}

impl From<tokio::process::Child> for StartedProcess {
    fn from(mut child: tokio::process::Child) -> Self {
        let stdout = child.stdout.take().map(|p| Box::new(p) as OutputPipe);
        let stderr = child.stderr.take().map(|p| Box::new(p) as OutputPipe);
        Self {
            stdout,
            stderr,
            // the child moves into the future: dropping it (kill_on_drop) still kills the process
            exit: Box::pin(async move { child.wait().await.ok() }),
        }
    }
}

/// Starts the supervisor task of a spawned child.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(crate) fn supervise(
    child: tokio::process::Child,
    tree: Box<dyn ProcessTree>,
    limits: Limits,
) -> SandboxChild {
    supervise_with_egress(
        child.into(),
        tree,
        limits,
        None,
        GitCreationGuard::default(),
    )
}

/// Starts the supervisor task of a spawned child whose egress proxy (if any) stops with the run.
pub(crate) fn supervise_with_egress(
    child: StartedProcess,
    mut tree: Box<dyn ProcessTree>,
    limits: Limits,
    proxy: Option<EgressProxy>,
    git_guard: GitCreationGuard,
) -> SandboxChild {
    let (tx, events) = mpsc::channel(EVENTS_IN_FLIGHT);
    let (done_tx, done) = oneshot::channel();
    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    let StartedProcess {
        stdout,
        stderr,
        mut exit,
    } = child;
    tokio::spawn(async move {
        let started = Instant::now();
        let (over_tx, mut over_rx) = mpsc::channel::<()>(1);
        let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(limits.output_bytes));
        let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut readers = Vec::new();
        for (pipe, stream) in [
            (stdout, OutputStream::Stdout),
            (stderr, OutputStream::Stderr),
        ] {
            if let Some(pipe) = pipe {
                let (tx, over_tx, budget, total) =
                    (tx.clone(), over_tx.clone(), budget.clone(), total.clone());
                readers.push(tokio::spawn(pump(pipe, stream, tx, over_tx, budget, total)));
            }
        }
        drop(tx);
        drop(over_tx);
        let deadline = tokio::time::sleep(limits.wall_time);
        tokio::pin!(deadline);
        let mut denied = None;
        let status = loop {
            tokio::select! {
                status = &mut exit => break status,
                () = &mut deadline, if denied.is_none() => {
                    denied = Some(SandboxDenied::limit("wall time", "raise the wall-time limit"));
                    tree.kill_all();
                }
                Some(()) = over_rx.recv(), if denied.is_none() => {
                    denied = Some(SandboxDenied::limit("output", "raise the output limit, or write large output to a file"));
                    tree.kill_all();
                }
                Ok(()) = cancel_rx.changed(), if denied.is_none() => {
                    denied = Some(SandboxDenied::cancelled());
                    tree.kill_all();
                }
            }
        };
        // the command is gone: nothing it left behind may outlive it (orphans, daemons)
        tree.kill_remaining();
        for r in readers {
            let _ = r.await;
        }
        let egress = proxy.map(EgressProxy::finish).unwrap_or_default();
        let exit = exit_kind(status);
        if denied.is_none() && is_cpu_limit(exit) {
            denied = Some(SandboxDenied::limit("cpu time", "raise the CPU-time limit"));
        }
        // a `.git` the run made in a workspace root is moved aside now that nothing runs
        let git_made = git_guard.after_run();
        denied = denied.or(git_made);
        let _ = done_tx.send(RunOutcome {
            exit,
            denied,
            output_bytes: total.load(std::sync::atomic::Ordering::Relaxed),
            duration: started.elapsed(),
            egress,
        });
        // the tree is dead: freeing its cgroup and scratch folder need not delay the outcome
        tree.release();
    });
    SandboxChild {
        events,
        done,
        cancel: CancelHandle(cancel_tx),
    }
}

/// Reads one pipe into events until EOF, stopping at the shared output budget.
async fn pump(
    mut pipe: OutputPipe,
    stream: OutputStream,
    tx: mpsc::Sender<RunEvent>,
    over: mpsc::Sender<()>,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    loop {
        // a fresh buffer per chunk, handed over as is: no copy of large output
        let mut buf = Vec::with_capacity(MAX_CHUNK_BYTES);
        let n = match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n as u64,
        };
        // take what is left of the budget; whatever does not fit is dropped and the tree is killed
        let granted = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(n))
            })
            .map_or(0, |left| left.min(n));
        total.fetch_add(granted, Ordering::Relaxed);
        let keep = usize::try_from(granted).unwrap_or(0);
        if keep > 0 {
            buf.truncate(keep);
            // small chunks (line-by-line output) do not pin a whole buffer each while queued
            if buf.len() < MAX_CHUNK_BYTES / 4 {
                buf.shrink_to_fit();
            }
            if tx.send(RunEvent { stream, data: buf }).await.is_err() {
                return;
            }
        }
        if granted < n {
            let _ = over.try_send(());
            return;
        }
    }
}

fn exit_kind(status: Option<std::process::ExitStatus>) -> ExitKind {
    match status {
        Some(s) => match (s.code(), exit_signal(&s)) {
            (Some(c), _) => ExitKind::Code(c),
            (None, Some(sig)) => ExitKind::Signal(sig),
            (None, None) => ExitKind::Code(-1),
        },
        None => ExitKind::Code(-1),
    }
}

/// The signal that ended the process (Unix); Windows has none.
#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// The signal that ended the process (Unix); Windows has none.
#[cfg(not(unix))]
fn exit_signal(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// SIGXCPU (24 on Linux) or its `128 + N` form from the PID-namespace init.
#[cfg(not(windows))]
fn is_cpu_limit(exit: ExitKind) -> bool {
    const SIGXCPU: i32 = 24;
    matches!(exit, ExitKind::Signal(SIGXCPU) | ExitKind::Code(152))
}

/// The exit code a Job Object gives a process past its CPU-time limit (`ERROR_NOT_ENOUGH_QUOTA`).
#[cfg(windows)]
fn is_cpu_limit(exit: ExitKind) -> bool {
    const ERROR_NOT_ENOUGH_QUOTA: i32 = 1816;
    matches!(exit, ExitKind::Code(ERROR_NOT_ENOUGH_QUOTA))
}

/// The environment of a command on every Unix backend: only the policy's environment plus `PATH`
/// (the trusted one) and `HOME`/`TMPDIR` (the run's scratch folder `work`).
#[cfg(unix)]
pub(crate) fn confined_env(
    policy: &super::SandboxPolicy,
    work: &std::path::Path,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let fixed = ["PATH", "HOME", "TMPDIR"];
    let mut env: Vec<_> = policy
        .env
        .iter()
        .filter(|(k, _)| !fixed.contains(&k.as_str()))
        .map(|(k, v)| (k.into(), v.clone()))
        .collect();
    env.push(("PATH".into(), super::policy::TRUSTED_PATH.into()));
    env.push(("HOME".into(), work.as_os_str().to_owned()));
    env.push(("TMPDIR".into(), work.as_os_str().to_owned()));
    env
}

/// A command for `program` as a Unix backend without its own launcher starts one: the
/// [`confined_env`], no stdin, both outputs piped, killed when dropped, in its own process group.
#[cfg(any(target_os = "macos", all(test, target_os = "linux")))]
pub(crate) fn unix_confined_command(
    program: &std::path::Path,
    policy: &super::SandboxPolicy,
    work: &std::path::Path,
) -> tokio::process::Command {
    use std::process::Stdio;
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .envs(confined_env(policy, work))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    cmd
}
