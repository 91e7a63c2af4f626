//! Starting one command under every layer, and killing its whole tree.
//!
//! # Why `pre_exec` and not a re-exec helper
//! All the work that allocates or may fail in interesting ways (Landlock ruleset, BPF programs,
//! mount list, id maps, cgroup) happens here in the agent, before `fork`. The child then runs a
//! fixed sequence of raw syscalls on that data (`unshare`, `write`, `mount`, `fork`, `setrlimit`,
//! `prctl`, `capset`, `landlock_restrict_self`, `seccomp`), all async-signal-safe, so it is sound
//! in the child of a multi-threaded (Tokio) process. This keeps the sandbox a library call usable
//! from the tray app, the CLI and tests alike, with no hidden mode in every binary, and no second
//! `exec` on each run.
//!
//! # Order in the child (each step needs the previous one)
//! 1. join the run's pids cgroup (before `unshare`: the cgroup files belong to the outer namespace;
//!    by the calling thread only, which skips an RCU grace period: see `cgroup`);
//! 2. `unshare` user+net+mount+PID namespaces, write the id maps; when hosts are allowed, bring
//!    `lo` up and hand a listener on the proxy port to the agent (see `egress`);
//! 3. mounts (noexec workspaces, read-only `.git` parts, hidden `.env*`), then `chdir` into the new
//!    mounts (a cwd taken before would still see the old ones);
//! 4. `fork` twice: a tiny waiter outside mirrors the exit code; inside, PID 1 reaps orphans and
//!    mirrors the command's exit code; when it ends the kernel kills every process left inside;
//! 5. rlimits, drop every capability, Landlock (`no_new_privs` included), seccomp last;
//! 6. `exec` (done by std).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use landlock::RulesetCreated;
use seccompiler::BpfProgram;

use super::cgroup::RunCgroup;
use super::egress::{ChildHandover, ProxyHandover};
use super::landlock::build_ruleset;
use super::limits::Rlimits;
use super::mounts::MountPlan;
use super::netns::{enter_namespaces_in_child, IdMaps};
use super::seccomp::compile_filters;
use super::{KernelCaps, LANDLOCK_ABI_WANTED};
use crate::sandbox::child::{supervise_with_egress, unix_confined_command, ProcessTree};
use crate::sandbox::policy::{AllowedCommand, SandboxPolicy, Strictness};
use crate::sandbox::proxy::{EgressProxy, SystemResolver, PROXY_PORT};
use crate::sandbox::{SandboxChild, SandboxError};

/// Starts `command` under `policy` with every layer this machine has (refusing when one is
/// missing and the policy is strict).
pub(crate) fn spawn(
    caps: &KernelCaps,
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    args: &[OsString],
    cwd: &Path,
) -> Result<SandboxChild, SandboxError> {
    let strict = policy.strictness() == Strictness::RequireAllLayers;
    let need = |ok: bool, layer: &str, reason: String| -> Result<(), SandboxError> {
        if ok || !strict {
            return Ok(());
        }
        Err(SandboxError::LayerUnavailable {
            layer: layer.to_owned(),
            reason,
        })
    };
    need(
        caps.landlock_abi >= LANDLOCK_ABI_WANTED,
        "landlock",
        format!(
            "kernel ABI {}, {LANDLOCK_ABI_WANTED} needed",
            caps.landlock_abi
        ),
    )?;
    need(
        caps.seccomp,
        "seccomp",
        "no seccomp filters in this kernel".to_owned(),
    )?;
    need(
        caps.namespaces.is_ok(),
        "namespaces",
        caps.namespaces.clone().err().unwrap_or_default(),
    )?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let is_root = unsafe { libc::geteuid() } == 0;
    need(
        caps.pids_cgroup.is_ok() || !is_root,
        "pids cgroup",
        "running as root, whom RLIMIT_NPROC does not limit".to_owned(),
    )?;
    let setup_err = |step: &'static str| move |source| SandboxError::Setup { step, source };
    let scratch = tempfile::Builder::new()
        .prefix("katachi-run-")
        .tempdir()
        .map_err(setup_err("scratch folder"))?;
    let work = scratch.path().join("work");
    let placeholders = scratch.path().join("hidden");
    std::fs::create_dir(&work).map_err(setup_err("scratch folder"))?;
    std::fs::create_dir(&placeholders).map_err(setup_err("scratch folder"))?;

    let mut writable: Vec<PathBuf> = policy.workspaces().iter().map(|w| w.root.clone()).collect();
    writable.push(work.clone());
    let use_ns = caps.namespaces.is_ok();
    let egress = if policy.host_patterns().is_empty() {
        None
    } else if use_ns {
        // the listener is made inside the run's network namespace and handed over
        Some(EgressWay::Handover(
            ProxyHandover::new(PROXY_PORT).map_err(setup_err("egress proxy socketpair"))?,
        ))
    } else {
        // weaker sandbox without namespaces: a port on the host's loopback, Landlock limits connect
        Some(EgressWay::HostLoopback(
            std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .map_err(setup_err("egress proxy listener"))?,
        ))
    };
    let proxy_port = match &egress {
        None => None,
        Some(EgressWay::Handover(_)) => Some(PROXY_PORT),
        Some(EgressWay::HostLoopback(l)) => Some(
            l.local_addr()
                .map_err(setup_err("egress proxy listener"))?
                .port(),
        ),
    };
    let ruleset = build_ruleset(policy, command, &writable, proxy_port, strict).map_err(|e| {
        SandboxError::LayerUnavailable {
            layer: "landlock".to_owned(),
            reason: e.to_string(),
        }
    })?;
    let filters = compile_filters().map_err(|e| SandboxError::LayerUnavailable {
        layer: "seccomp".to_owned(),
        reason: e.to_string(),
    })?;
    let mounts = if use_ns {
        Some(
            MountPlan::for_policy(policy, &work, &placeholders).map_err(|e| {
                SandboxError::Setup {
                    step: "mount plan",
                    source: std::io::Error::other(e.to_string()),
                }
            })?,
        )
    } else {
        None
    };
    let cgroup = match &caps.pids_cgroup {
        Ok(base) => Some(
            RunCgroup::create(base, policy.limits().processes).map_err(setup_err("pids cgroup"))?,
        ),
        Err(_) => None,
    };
    let cwd_c = CString::new(cwd.as_os_str().as_bytes()).map_err(|_| SandboxError::Setup {
        step: "working folder",
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;

    let mut setup = ChildSetup {
        cgroup_fd: cgroup.as_ref().map(RunCgroup::join_fd),
        namespaces: use_ns.then(IdMaps::for_current_user),
        proxy: match &egress {
            Some(EgressWay::Handover(h)) => Some(h.child_part()),
            _ => None,
        },
        mounts,
        cwd: cwd_c,
        rlimits: Rlimits::from_limits(&policy.limits()),
        ruleset: Some(ruleset),
        filters,
    };

    let mut cmd = unix_confined_command(&command.path, policy, &work);
    cmd.args(args);
    if let Some(port) = proxy_port {
        // the way in to the proxy; the kernel, not these variables, keeps everything else out
        let url = format!("http://127.0.0.1:{port}");
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env(name, &url);
        }
    }
    // SAFETY: the closure only runs `ChildSetup::run_in_child`, which makes raw, async-signal-safe
    // syscalls on data prepared above; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || setup.run_in_child());
    }
    let child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: command.path.clone(),
        source,
    })?;
    enlarge_output_pipes(&child);
    let pgid = child.id().and_then(|p| libc::pid_t::try_from(p).ok());
    let mut tree = LinuxTree {
        pgid,
        cgroup,
        scratch: Some(scratch),
        placeholders,
        ns: use_ns,
    };
    let proxy = match egress {
        None => None,
        Some(way) => match start_proxy(way, policy) {
            Ok(p) => Some(p),
            Err(source) => {
                // fail closed: no command runs with hosts allowed but no proxy serving them
                tree.kill_all();
                tree.release();
                return Err(SandboxError::Setup {
                    step: "egress proxy",
                    source,
                });
            }
        },
    };
    Ok(supervise_with_egress(
        child,
        Box::new(tree),
        policy.limits(),
        proxy,
    ))
}

/// Pipe size asked for the command's stdout and stderr.
const OUTPUT_PIPE_BYTES: libc::c_int = 1 << 20;

/// Grows the run's stdout/stderr pipes from the default 64 KiB to 1 MiB, so the command writes
/// on while the supervisor is between reads (1.3× the throughput of large output, see
/// docs/PERFORMANCE.md). Best effort: past `/proc/sys/fs/pipe-max-size`, or once this user's
/// pipes hold `pipe-user-pages-soft`, the kernel refuses and the pipe keeps its size.
fn enlarge_output_pipes(child: &tokio::process::Child) {
    use std::os::fd::AsRawFd;
    let fds = [
        child.stdout.as_ref().map(AsRawFd::as_raw_fd),
        child.stderr.as_ref().map(AsRawFd::as_raw_fd),
    ];
    for fd in fds.into_iter().flatten() {
        // SAFETY: fcntl with integer arguments on a pipe this process owns (held by `child`).
        if unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, OUTPUT_PIPE_BYTES) } < 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "sandbox: output pipe keeps its default size"
            );
        }
    }
}

/// Where the proxy's listening socket comes from.
enum EgressWay {
    /// Made by the child inside its network namespace, handed over after spawn.
    Handover(ProxyHandover),
    /// A port on the host's loopback (no namespaces: a weaker sandbox).
    HostLoopback(std::net::TcpListener),
}

/// Takes the listening socket and serves it with the policy's allowed hosts.
fn start_proxy(way: EgressWay, policy: &SandboxPolicy) -> std::io::Result<EgressProxy> {
    let listener = match way {
        EgressWay::Handover(h) => h.receive_listener()?,
        EgressWay::HostLoopback(l) => l,
    };
    EgressProxy::start(
        listener,
        policy.host_patterns().to_vec(),
        std::sync::Arc::new(SystemResolver),
    )
}

/// Everything the child needs, prepared before fork.
struct ChildSetup {
    cgroup_fd: Option<libc::c_int>,
    namespaces: Option<IdMaps>,
    proxy: Option<ChildHandover>,
    mounts: Option<MountPlan>,
    cwd: CString,
    rlimits: Rlimits,
    ruleset: Option<RulesetCreated>,
    filters: [BpfProgram; 2],
}

impl ChildSetup {
    /// The child's side, in order (see the module docs). Async-signal-safe.
    fn run_in_child(&mut self) -> std::io::Result<()> {
        if let Some(fd) = self.cgroup_fd {
            // SAFETY: `fd` is the open `tasks`/`cgroup.procs` file; "0" moves the writer itself
            // (this process has a single thread: only the agent's forking thread was copied).
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(maps) = &self.namespaces {
            enter_namespaces_in_child(maps)?;
        }
        if let Some(proxy) = &self.proxy {
            // inside the new network namespace, before anything of the command runs
            proxy.send_listener_in_child()?;
        }
        if let Some(mounts) = &self.mounts {
            mounts.apply_in_child()?;
        }
        // SAFETY: `cwd` is NUL-terminated and owned by self.
        if unsafe { libc::chdir(self.cwd.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if self.namespaces.is_some() {
            become_pid_namespace_init()?;
        }
        self.rlimits.apply_in_child()?;
        drop_all_capabilities()?;
        let ruleset = self
            .ruleset
            .take()
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        ruleset
            .restrict_self()
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
        for filter in &self.filters {
            seccompiler::apply_filter(filter)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
        }
        Ok(())
    }
}

/// Makes the calling child the command's grandparent: a waiter outside the new PID namespace,
/// then an init (PID 1) inside it that reaps orphans, then the command as PID 2. The command is not
/// PID 1 because the kernel drops default-action signals to an init (SIGXCPU of the CPU limit,
/// SIGPIPE, SIGTERM). Returns only in the command's process. Async-signal-safe.
fn become_pid_namespace_init() -> std::io::Result<()> {
    fork_and_mirror_exit(false)?;
    fork_and_mirror_exit(true)
}

/// Forks; the parent waits for the child and exits with its status (never returns), the child
/// returns. `reap_all`: the parent is a namespace init and also reaps re-parented orphans.
fn fork_and_mirror_exit(reap_all: bool) -> std::io::Result<()> {
    // SAFETY: fork in a single-threaded child (we are already past the agent's fork).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // the child dies when its waiter dies (the waiter is killed with the process group)
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        return Ok(());
    }
    // the waiter keeps no descriptor: not the output pipes, not std's exec-error pipe
    // SAFETY: close_range with integer arguments; the waiter uses no descriptor afterwards.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    let wanted = if reap_all { -1 } else { pid };
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(wanted, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit never returns and is async-signal-safe.
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

/// Empties the bounding, ambient, effective, permitted and inheritable capability sets.
fn drop_all_capabilities() -> std::io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability is expected.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid, properly laid out for capset(2) version 3 (two data words).
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGKILL to one process.
pub(crate) fn kill_pid(pid: libc::pid_t) {
    // SAFETY: kill with integer arguments.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The processes and resources of one run.
struct LinuxTree {
    pgid: Option<libc::pid_t>,
    cgroup: Option<RunCgroup>,
    scratch: Option<tempfile::TempDir>,
    placeholders: PathBuf,
    ns: bool,
}

impl ProcessTree for LinuxTree {
    fn kill_all(&mut self) {
        if let Some(pgid) = self.pgid {
            // the waiter and PID 1 of the namespace share this group; PID 1 dying ends the namespace
            // SAFETY: killpg with integer arguments.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    fn kill_remaining(&mut self) {
        // with a PID namespace nothing remains (the kernel killed it with PID 1), and the group id
        // may already be reused: only the cgroup is safe to use now
        if !self.ns {
            if let Some(pgid) = self.pgid {
                // SAFETY: killpg with integer arguments; the orphans still hold the group id
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    fn release(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            cg.remove();
        }
        // the placeholders are mode 000: give them back to the owner so the folder can be removed
        for p in ["hidden-file", "hidden-dir"] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                self.placeholders.join(p),
                std::fs::Permissions::from_mode(0o700),
            );
        }
        drop(self.scratch.take());
    }
}

impl Drop for LinuxTree {
    /// A tree dropped without [`ProcessTree::release`] lost its supervisor (its task was dropped,
    /// e.g. with its runtime): nothing could stop the run any more, so it is killed now and its
    /// cgroup and scratch folder removed, rather than left running and leaking.
    fn drop(&mut self) {
        if self.cgroup.is_some() || self.scratch.is_some() {
            self.kill_all();
            self.release();
        }
    }
}
