//! Starting a run's processes without copying the agent's memory.
//!
//! # Why not `fork`
//! `fork` copies the page tables of the whole agent (its heap, the tray's toolkit, caches), and
//! the copy is torn down again at `exec` and at each helper process's exit: a spawn cost that grows
//! with the agent's size (2.7 ms with a small process, 23 ms with 200 MiB of heap, measured here).
//! Like `posix_spawn`, every process of a run is made with `clone(CLONE_VM | CLONE_VFORK)` on a
//! stack of its own, so no page table is copied whatever the agent's size:
//!
//! 1. a launcher thread (one per run, all signals blocked) clones **the init** with the run's
//!    namespaces (user, mount, PID, network) in the same `clone`: it is PID 1 inside, a normal
//!    child of the agent outside. `CLONE_VFORK` suspends only the launcher thread, for the whole
//!    run, so the init can use that thread's stack-free state (errno) without racing anyone;
//! 2. the init joins the run's cgroup, writes its id maps, hands over the egress listener, makes
//!    the mounts, enters the working folder, then clones **the command** (PID 2) the same way;
//! 3. the command sets its stdio, limits, drops capabilities, applies Landlock and seccomp, and
//!    `exec`s; the init, resumed by that `exec`, reports "started" (or the failed step and its
//!    errno) on a pipe, closes every descriptor it holds, and reaps until the command ends, then
//!    exits with its status (`128 + N` for signal `N`). The launcher thread reaps the init and
//!    hands its status to the run's supervisor.
//!
//! Without namespaces (a weaker mode the user allowed) there is no init: the launcher's child is
//! the command itself, and the launcher reports once it has `exec`ed.
//!
//! # Rules for the code running in the clones
//! They share the agent's memory while other agent threads keep running: they only read the
//! prepared [`Launch`] (never freed before the report), write nothing shared but the atomics meant
//! for it, allocate and free nothing, take no lock, and make raw syscalls.

use std::ffi::{c_char, c_int, c_void, CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use seccompiler::BpfProgram;

use super::egress::ChildHandover;
use super::limits::Rlimits;
use super::mounts::MountPlan;
use super::netns::{write_id_maps_in_child, IdMaps, NS_FLAGS};

/// Stack of each clone (mapped lazily: only the pages touched cost memory), plus a guard page.
const STACK_BYTES: usize = 256 * 1024;
const GUARD_BYTES: usize = 4096;

/// The steps that can fail, reported with their errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    /// `clone` of the init (or of the command without namespaces).
    Clone = 1,
    /// Joining the run's pids cgroup.
    Cgroup,
    /// Process group or parent-death signal.
    Process,
    /// Writing the user namespace's id maps.
    IdMaps,
    /// Making and handing over the egress proxy's listener.
    EgressListener,
    /// The mount layer.
    Mounts,
    /// Entering the working folder.
    WorkingFolder,
    /// `clone` of the command under the init.
    CloneCommand,
    /// stdin/stdout/stderr.
    Stdio,
    /// Resource limits.
    Rlimits,
    /// Dropping capabilities.
    Capabilities,
    /// `no_new_privs` and Landlock.
    Landlock,
    /// seccomp filters.
    Seccomp,
    /// `execve` of the command.
    Exec,
    /// The init ended before it reported (killed).
    Unreported,
}

impl Step {
    fn from_u32(v: u32) -> Self {
        const ALL: [Step; 15] = [
            Step::Clone,
            Step::Cgroup,
            Step::Process,
            Step::IdMaps,
            Step::EgressListener,
            Step::Mounts,
            Step::WorkingFolder,
            Step::CloneCommand,
            Step::Stdio,
            Step::Rlimits,
            Step::Capabilities,
            Step::Landlock,
            Step::Seccomp,
            Step::Exec,
            Step::Unreported,
        ];
        ALL.into_iter()
            .find(|s| *s as u32 == v)
            .unwrap_or(Step::Unreported)
    }

    /// A short name for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Clone => "clone of the run's first process",
            Self::Cgroup => "pids cgroup join",
            Self::Process => "process group",
            Self::IdMaps => "user namespace id maps",
            Self::EgressListener => "egress proxy listener",
            Self::Mounts => "mounts",
            Self::WorkingFolder => "working folder",
            Self::CloneCommand => "clone of the command",
            Self::Stdio => "standard input and output",
            Self::Rlimits => "resource limits",
            Self::Capabilities => "dropping capabilities",
            Self::Landlock => "landlock",
            Self::Seccomp => "seccomp",
            Self::Exec => "exec",
            Self::Unreported => "the run's init ended before it reported",
        }
    }
}

/// A failed launch: the step and what the kernel said.
#[derive(Debug)]
pub(crate) struct LaunchError {
    /// Which step.
    pub(crate) step: Step,
    /// Its errno.
    pub(crate) source: std::io::Error,
}

/// The program, its arguments and environment, as `execve` takes them.
pub(crate) struct ExecImage {
    path: CString,
    // owners of the strings the pointer arrays point into
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same value, which are never
// mutated; sharing them read-only between threads is sound.
unsafe impl Send for ExecImage {}
// SAFETY: as above (read-only).
unsafe impl Sync for ExecImage {}

impl ExecImage {
    /// `argv[0]` is the program's path.
    ///
    /// # Errors
    /// A NUL byte in the path, an argument or the environment.
    pub(crate) fn new(
        program: &std::path::Path,
        args: &[OsString],
        env: &[(OsString, OsString)],
    ) -> Result<Self, std::io::Error> {
        let nul = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            )
        };
        let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul("the path"))?;
        let mut all_args = vec![path.clone()];
        for a in args {
            all_args.push(CString::new(a.as_bytes()).map_err(|_| nul("an argument"))?);
        }
        let mut all_env = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            all_env.push(CString::new(kv).map_err(|_| nul("the environment"))?);
        }
        let argv = all_args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = all_env
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Self {
            path,
            _args: all_args,
            _env: all_env,
            argv,
            envp,
        })
    }
}

/// Everything the clones need, prepared before the first `clone`.
pub(crate) struct Launch {
    /// `tasks`/`cgroup.procs` of the run's cgroup, open.
    pub(crate) cgroup_fd: Option<RawFd>,
    /// Id maps: `Some` means the init is cloned into fresh namespaces.
    pub(crate) namespaces: Option<IdMaps>,
    /// The egress listener's handover (namespaces and allowed hosts only).
    pub(crate) proxy: Option<ChildHandover>,
    /// The mount layer.
    pub(crate) mounts: Option<MountPlan>,
    /// The working folder.
    pub(crate) cwd: CString,
    /// Resource limits of the command.
    pub(crate) rlimits: Rlimits,
    /// The Landlock ruleset (`None` when the kernel has none and the policy allows weaker).
    pub(crate) ruleset: Option<OwnedFd>,
    /// The seccomp programs, applied in order.
    pub(crate) filters: &'static [BpfProgram; 2],
    /// What to `exec`.
    pub(crate) image: ExecImage,
}

/// The shared block of one launch: the plan plus what the clones write back.
struct Shared {
    plan: Launch,
    /// stdin (`/dev/null`), stdout and stderr write ends, for the command's 0, 1, 2.
    stdio: [RawFd; 3],
    /// The report pipe's write end.
    report: RawFd,
    /// The command's failure: `step << 32 | errno` (0: none), written by the command's clone.
    failed: AtomicU64,
    /// Set by the kernel (`CLONE_PARENT_SETTID`): the init's pid as the agent sees it.
    init_pid: AtomicI32,
    /// Set by the init just before it reports.
    reported: std::sync::atomic::AtomicBool,
    /// Top of the command's stack (the init clones it from its own stack).
    command_stack: usize,
}

/// A started run.
pub(crate) struct Launched {
    /// The pid (and process group) of the run's first process, as the agent sees it.
    pub(crate) pid: libc::pid_t,
    /// The command's stdout, read end.
    pub(crate) stdout: OwnedFd,
    /// The command's stderr, read end.
    pub(crate) stderr: OwnedFd,
    /// The raw wait status of the first process (its exit code mirrors the command's).
    pub(crate) exit: tokio::sync::oneshot::Receiver<c_int>,
}

/// Signals are 1..NSIG on Linux.
const NSIG: c_int = 65;

/// The kernel's `struct sigaction` (not glibc's) for `rt_sigaction`.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every signal to its default action, none blocked. Raw syscalls only; async-signal-safe.
fn reset_signals() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..NSIG {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `default` is a valid kernel sigaction; no old action is asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    let none: u64 = 0;
    // SAFETY: a valid 8-byte kernel signal set; no old set is asked for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

/// Report written on the pipe: tag, step, errno, pid (16 bytes: atomic on a pipe).
const REPORT_OK: u32 = 1;
const REPORT_FAILED: u32 = 2;

fn pipe_cloexec() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a valid out array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The run's stdio: `/dev/null` in, a pipe for each output, grown to `pipe_bytes` (best effort).
fn stdio_pipes(pipe_bytes: c_int) -> std::io::Result<(OwnedFd, [(OwnedFd, OwnedFd); 2])> {
    let null = std::fs::File::open("/dev/null")?;
    let out = pipe_cloexec()?;
    let err = pipe_cloexec()?;
    for (r, _) in [&out, &err] {
        // SAFETY: fcntl with integer arguments on a pipe we own.
        if unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, pipe_bytes) } < 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "sandbox: output pipe keeps its default size"
            );
        }
    }
    Ok((OwnedFd::from(null), [out, err]))
}

/// Mapped stacks of the two clones, unmapped when dropped.
struct Stacks {
    base: *mut c_void,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; moving it to the launcher thread is sound.
unsafe impl Send for Stacks {}

impl Stacks {
    fn map() -> std::io::Result<Self> {
        let len = 2 * (STACK_BYTES + GUARD_BYTES);
        // SAFETY: an anonymous private mapping, no address hint.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stacks = Self { base, len };
        // the lowest page of each stack traps an overflow instead of writing past it
        for i in 0..2 {
            // SAFETY: inside the mapping made above.
            let guard = unsafe { base.cast::<u8>().add(i * (STACK_BYTES + GUARD_BYTES)) };
            // SAFETY: `guard` is page-aligned and inside the mapping.
            if unsafe { libc::mprotect(guard.cast(), GUARD_BYTES, libc::PROT_NONE) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(stacks)
    }

    /// The top (stacks grow down) of stack `i` (0: the init, 1: the command).
    fn top(&self, i: usize) -> *mut c_void {
        // SAFETY: the end of stack `i` is inside (or one past) the mapping.
        unsafe {
            self.base
                .cast::<u8>()
                .add((i + 1) * (STACK_BYTES + GUARD_BYTES))
                .cast()
        }
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used (its clones are gone or exec'd).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Starts the run described by `plan`; returns once the command has been `exec`ed.
///
/// # Errors
/// The step that failed and its errno; nothing of the run is left running then.
pub(crate) fn launch(plan: Launch, pipe_bytes: c_int) -> Result<Launched, LaunchError> {
    let setup = |step: Step| move |source| LaunchError { step, source };
    let (stdin, [(out_r, out_w), (err_r, err_w)]) =
        stdio_pipes(pipe_bytes).map_err(setup(Step::Stdio))?;
    let (report_r, report_w) = pipe_cloexec().map_err(setup(Step::Stdio))?;
    let stacks = Stacks::map().map_err(setup(Step::Clone))?;
    let command_stack = stacks.top(1) as usize;
    let shared = Arc::new(Shared {
        command_stack,
        reported: std::sync::atomic::AtomicBool::new(false),
        plan,
        stdio: [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        report: report_w.as_raw_fd(),
        failed: AtomicU64::new(0),
        init_pid: AtomicI32::new(0),
    });
    let (exit_tx, exit) = tokio::sync::oneshot::channel();
    let thread_shared = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("katachi-run".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || launcher_thread(&thread_shared, &stacks, report_w, exit_tx))
        .map_err(setup(Step::Clone))?;
    let report = read_report(&report_r).map_err(setup(Step::Unreported))?;
    // the clones hold their own copies now; ours must go so the pipes end with the command
    drop((stdin, out_w, err_w));
    drop(shared);
    match report {
        Report::Started(pid) => Ok(Launched {
            pid,
            stdout: out_r,
            stderr: err_r,
            exit,
        }),
        Report::Failed(step, errno) => Err(LaunchError {
            step,
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}

enum Report {
    Started(libc::pid_t),
    Failed(Step, i32),
}

fn read_report(fd: &OwnedFd) -> std::io::Result<Report> {
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: writes at most `buf.len() - got` bytes into `buf` past `got`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        got += usize::try_from(n).unwrap_or(0);
    }
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&buf[i * 4..i * 4 + 4]);
        w
    };
    let tag = u32::from_ne_bytes(word(0));
    let step = u32::from_ne_bytes(word(1));
    let errno = i32::from_ne_bytes(word(2));
    let pid = i32::from_ne_bytes(word(3));
    Ok(match tag {
        REPORT_OK if pid > 0 => Report::Started(pid),
        REPORT_FAILED => Report::Failed(Step::from_u32(step), errno),
        _ => Report::Failed(Step::Unreported, libc::EPROTO),
    })
}

/// Writes one report (a single `write` of 16 bytes: atomic on a pipe). Async-signal-safe.
fn write_report(fd: RawFd, tag: u32, step: u32, errno: i32, pid: libc::pid_t) {
    let mut buf = [0u8; 16];
    for (i, w) in [
        tag.to_ne_bytes(),
        step.to_ne_bytes(),
        errno.to_ne_bytes(),
        pid.to_ne_bytes(),
    ]
    .iter()
    .enumerate()
    {
        if let Some(slot) = buf.get_mut(i * 4..i * 4 + 4) {
            slot.copy_from_slice(w);
        }
    }
    // SAFETY: `buf` is valid for 16 bytes; a failed write leaves the reader with EOF instead.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// The launcher: clones the init (or the command), reports when the clone cannot, then reaps it.
fn launcher_thread(
    shared: &Arc<Shared>,
    stacks: &Stacks,
    report: OwnedFd,
    exit_tx: tokio::sync::oneshot::Sender<c_int>,
) {
    // every clone starts with all signals blocked: no handler of the agent may run in them
    // SAFETY: sigset operations on a local set; pthread_sigmask on this thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let with_ns = shared.plan.namespaces.is_some();
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT_SETTID | libc::SIGCHLD;
    if with_ns {
        flags |= NS_FLAGS;
    }
    let (entry, stack): (extern "C" fn(*mut c_void) -> c_int, _) = if with_ns {
        (init_main, stacks.top(0))
    } else {
        (command_main, stacks.top(1))
    };
    let arg: *const Shared = Arc::as_ptr(shared);
    // SAFETY: `entry` runs on its own mapped stack and follows the module's rules; `arg` and the
    // pid slot stay valid until this thread drops its Arc, after the clone ended or exec'd.
    let pid = unsafe {
        libc::clone(
            entry,
            stack,
            flags,
            arg.cast_mut().cast(),
            shared.init_pid.as_ptr(),
        )
    };
    if pid < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        write_report(
            report.as_raw_fd(),
            REPORT_FAILED,
            Step::Clone as u32,
            errno,
            0,
        );
        return;
    }
    // here the clone has exec'd (no namespaces) or ended (the init: at the end of the run)
    let failed = shared.failed.load(Ordering::Acquire);
    if failed != 0 {
        write_report(
            report.as_raw_fd(),
            REPORT_FAILED,
            u32::try_from(failed >> 32).unwrap_or(0),
            i32::try_from(failed & 0xffff_ffff).unwrap_or(0),
            0,
        );
    } else if with_ns {
        if !shared.reported.load(Ordering::Acquire) {
            // the init was killed before it could report
            write_report(
                report.as_raw_fd(),
                REPORT_FAILED,
                Step::Unreported as u32,
                0,
                0,
            );
        }
    } else {
        write_report(report.as_raw_fd(), REPORT_OK, 0, 0, pid);
    }
    drop(report);
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer; `pid` is this process's child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
    let _ = exit_tx.send(status);
}

/// Records the command clone's failure for the init (or the launcher) to report, then exits.
fn fail(shared: &Shared, step: Step, errno: i32) -> ! {
    let word = (u64::from(step as u32) << 32) | u64::from(errno.unsigned_abs());
    shared.failed.store(word, Ordering::Release);
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(127) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Steps shared by the init and (without namespaces) the command: process group, parent-death
/// signal, cgroup.
fn join_run(shared: &Shared) -> Result<(), (Step, i32)> {
    // SAFETY: prctl/setpgid with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err((Step::Process, errno()));
        }
        if libc::setpgid(0, 0) != 0 {
            return Err((Step::Process, errno()));
        }
    }
    if let Some(fd) = shared.plan.cgroup_fd {
        // SAFETY: `fd` is the open `tasks`/`cgroup.procs` file; "0" moves the writer (a single
        // thread: this process was cloned without CLONE_THREAD).
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err((Step::Cgroup, errno()));
        }
    }
    Ok(())
}

/// PID 1 of the run (see the module docs). Never returns.
extern "C" fn init_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the launcher's `Shared`, alive until after this process ends.
    let shared: &Shared = unsafe { &*arg.cast::<Shared>() };
    let report = shared.report;
    if let Err(e) = join_run(shared) {
        fail_init(shared, e);
    }
    let plan = &shared.plan;
    if let Some(maps) = &plan.namespaces {
        if let Err(e) = write_id_maps_in_child(maps) {
            fail_init(shared, (Step::IdMaps, e.raw_os_error().unwrap_or(0)));
        }
    }
    if let Some(proxy) = &plan.proxy {
        if let Err(e) = proxy.send_listener_in_child() {
            fail_init(
                shared,
                (Step::EgressListener, e.raw_os_error().unwrap_or(0)),
            );
        }
    }
    if let Some(mounts) = &plan.mounts {
        if let Err(e) = mounts.apply_in_child() {
            fail_init(shared, (Step::Mounts, e.raw_os_error().unwrap_or(0)));
        }
    }
    // SAFETY: `cwd` is NUL-terminated and owned by the plan.
    if unsafe { libc::chdir(plan.cwd.as_ptr()) } != 0 {
        fail_init(shared, (Step::WorkingFolder, errno()));
    }
    // SAFETY: the command's entry runs on the second stack (this one stays in use by the init),
    // suspended until it execs or exits; `arg` is as valid for it as for us.
    let command = unsafe {
        libc::clone(
            command_main,
            shared.command_stack as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        )
    };
    if command < 0 {
        fail_init(shared, (Step::CloneCommand, errno()));
    }
    let failed = shared.failed.load(Ordering::Acquire);
    if failed != 0 {
        fail_init(
            shared,
            (
                Step::from_u32(u32::try_from(failed >> 32).unwrap_or(0)),
                i32::try_from(failed & 0xffff_ffff).unwrap_or(0),
            ),
        );
    }
    let pid = shared.init_pid.load(Ordering::Acquire);
    shared.reported.store(true, Ordering::Release);
    write_report(report, REPORT_OK, 0, 0, pid);
    // the init keeps nothing open: not the pipes, not the agent's sockets copied at clone time;
    // nor does it touch the shared block again (the agent may free it from now on)
    // SAFETY: close_range with integer arguments.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    reap_until(command)
}

/// Reports the init's failed step and exits. Async-signal-safe; never returns.
fn fail_init(shared: &Shared, (step, errno): (Step, i32)) -> ! {
    shared.reported.store(true, Ordering::Release);
    write_report(shared.report, REPORT_FAILED, step as u32, errno, 0);
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(127) }
}

/// Reaps every child (orphans re-parented to the init included) until `command` ends, then exits
/// with its status. Async-signal-safe; never returns.
fn reap_until(command: libc::pid_t) -> ! {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r == command {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(127) };
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// The command: stdio, limits, capabilities, Landlock, seccomp, signals, exec. Never returns.
extern "C" fn command_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the launcher's `Shared`, alive until this clone has exec'd or exited.
    let shared: &Shared = unsafe { &*arg.cast::<Shared>() };
    let plan = &shared.plan;
    if plan.namespaces.is_none() {
        if let Err((step, e)) = join_run(shared) {
            fail(shared, step, e);
        }
        // SAFETY: `cwd` is NUL-terminated and owned by the plan.
        if unsafe { libc::chdir(plan.cwd.as_ptr()) } != 0 {
            fail(shared, Step::WorkingFolder, errno());
        }
    } else {
        // dies with its init
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
            fail(shared, Step::Process, errno());
        }
    }
    for (target, &fd) in shared.stdio.iter().enumerate() {
        let target = c_int::try_from(target).unwrap_or(0);
        // SAFETY: dup2 with descriptors open in this process; the copy has no close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            fail(shared, Step::Stdio, errno());
        }
    }
    if let Err(e) = plan.rlimits.apply_in_child() {
        fail(shared, Step::Rlimits, e.raw_os_error().unwrap_or(0));
    }
    if let Err(e) = super::spawn::drop_all_capabilities() {
        fail(shared, Step::Capabilities, e.raw_os_error().unwrap_or(0));
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail(shared, Step::Landlock, errno());
    }
    if let Some(ruleset) = &plan.ruleset {
        // SAFETY: landlock_restrict_self with the ruleset descriptor and no flags.
        let r =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if r != 0 {
            fail(shared, Step::Landlock, errno());
        }
    }
    for filter in plan.filters {
        if seccompiler::apply_filter(filter).is_err() {
            fail(shared, Step::Seccomp, errno());
        }
    }
    // a clean signal state for the program: default actions (the agent ignores SIGPIPE, glibc
    // keeps its own two signals, which its `signal` wrapper refuses to touch: hence the raw
    // syscall), none blocked (the launcher blocked them all)
    reset_signals();
    // nothing but stdio crosses into the command: not descriptors the agent inherited without
    // close-on-exec (a jobserver pipe, a caller's socket)
    // SAFETY: close_range with integer arguments.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let image = &plan.image;
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays owned by
    // the plan; execve only returns on failure.
    unsafe {
        libc::execve(
            image.path.as_ptr(),
            image.argv.as_ptr(),
            image.envp.as_ptr(),
        )
    };
    fail(shared, Step::Exec, errno())
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
