//! Starting one command under every layer, and killing its whole tree.
//!
//! # Why no re-exec helper
//! All the work that allocates or may fail in interesting ways (Landlock ruleset, BPF programs,
//! mount list, id maps, cgroup, `execve` arrays) happens here in the agent first. The run's
//! processes are then made by [`launch`](super::launch), which runs a fixed sequence of raw
//! syscalls on that data in clones sharing the agent's memory (no page table copied, whatever the
//! agent's size). This keeps the sandbox a library call usable from the tray app, the CLI and tests
//! alike, with no hidden mode in every binary, and no second `exec` on each run.
//!
//! # Order in the run's processes (each step needs the previous one)
//! 1. the init is cloned into fresh user, network, mount and PID namespaces; it joins the run's pids
//!    cgroup (by its only thread, which skips an RCU grace period: see `cgroup`) and writes its id
//!    maps; when hosts are allowed it brings `lo` up and hands a listener on the proxy port to the
//!    agent (see `egress`);
//! 2. mounts (noexec workspaces, read-only `.git` parts, hidden `.env*`), then `chdir` into the new
//!    mounts (a cwd taken before would still see the old ones);
//! 3. the command is cloned as PID 2 (not PID 1: the kernel drops default-action signals to an
//!    init, e.g. SIGXCPU of the CPU limit, SIGPIPE); the init reaps orphans and mirrors the
//!    command's exit code; when it ends the kernel kills every process left inside;
//! 4. in the command: stdio, rlimits, drop every capability, `no_new_privs` + Landlock, seccomp
//!    last, default signal state, `exec`.

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use super::cgroup::RunCgroup;
use super::egress::ProxyHandover;
use super::landlock::build_ruleset;
use super::launch::{launch, ExecImage, Launch, Step};
use super::limits::Rlimits;
use super::mounts::{MountPlan, Placeholders};
use super::netns::IdMaps;
use super::seccomp;
use super::{KernelCaps, LANDLOCK_ABI_WANTED};
use crate::sandbox::child::{confined_env, supervise_with_egress, ProcessTree, StartedProcess};
use crate::sandbox::git_guard::GitCreationGuard;
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
    // before anything runs: which workspace roots have no `.git` yet
    let git_guard = GitCreationGuard::before_run(policy);
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
    // the run's HOME and TMPDIR, its only writable folder outside the workspaces
    let scratch = tempfile::Builder::new()
        .prefix("katachi-run-")
        .tempdir()
        .map_err(setup_err("scratch folder"))?;
    let work = scratch.path().to_owned();
    let mut placeholders = Placeholders::default();

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
    let filters = seccomp::filters().map_err(|reason| SandboxError::LayerUnavailable {
        layer: "seccomp".to_owned(),
        reason,
    })?;
    let mounts = if use_ns {
        Some(
            MountPlan::for_policy(policy, &work, &mut placeholders).map_err(|e| {
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

    let mut env = confined_env(policy, &work);
    if let Some(port) = proxy_port {
        // the way in to the proxy; the kernel, not these variables, keeps everything else out
        let url = OsString::from(format!("http://127.0.0.1:{port}"));
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            env.push((name.into(), url.clone()));
        }
    }
    let spawn_err = |source| SandboxError::Spawn {
        program: command.path.clone(),
        source,
    };
    let image = ExecImage::new(&command.path, args, &env).map_err(spawn_err)?;
    let plan = Launch {
        cgroup_fd: cgroup.as_ref().map(RunCgroup::join_fd),
        namespaces: use_ns.then(IdMaps::for_current_user),
        proxy: match &egress {
            Some(EgressWay::Handover(h)) => Some(h.child_part()),
            _ => None,
        },
        mounts,
        cwd: cwd_c,
        rlimits: Rlimits::from_limits(&policy.limits()),
        ruleset: Option::<OwnedFd>::from(ruleset),
        filters,
        image,
    };
    let launched = match launch(plan, OUTPUT_PIPE_BYTES) {
        Ok(l) => l,
        Err(e) => {
            // nothing of the run is left: release what was prepared for it
            if let Some(cg) = cgroup {
                cg.remove();
            }
            return Err(match e.step {
                Step::Exec => spawn_err(e.source),
                step => SandboxError::Setup {
                    step: step.name(),
                    source: e.source,
                },
            });
        }
    };
    let pgid = Some(launched.pid);
    let mut tree = LinuxTree {
        pgid,
        cgroup,
        scratch: Some(scratch),
        placeholders: Some(placeholders),
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
    let process = match started_process(launched) {
        Ok(p) => p,
        Err(source) => {
            tree.kill_all();
            tree.release();
            return Err(SandboxError::Setup {
                step: "output pipes",
                source,
            });
        }
    };
    Ok(supervise_with_egress(
        process,
        Box::new(tree),
        policy.limits(),
        proxy,
        git_guard,
    ))
}

/// The run's output pipes on this runtime, and its exit status as a future.
fn started_process(launched: super::launch::Launched) -> std::io::Result<StartedProcess> {
    use tokio::net::unix::pipe::Receiver;
    let stdout = Receiver::from_owned_fd(launched.stdout)?;
    let stderr = Receiver::from_owned_fd(launched.stderr)?;
    let exit = launched.exit;
    Ok(StartedProcess {
        stdout: Some(Box::new(stdout)),
        stderr: Some(Box::new(stderr)),
        exit: Box::pin(async move { exit.await.ok().map(std::process::ExitStatus::from_raw) }),
    })
}

/// Pipe size asked for the command's stdout and stderr: from the default 64 KiB to 1 MiB, so the
/// command writes on while the supervisor is between reads (1.3× the throughput of large output,
/// see docs/PERFORMANCE.md). Best effort: past `/proc/sys/fs/pipe-max-size`, or once this user's
/// pipes hold `pipe-user-pages-soft`, the kernel refuses and the pipe keeps its size.
const OUTPUT_PIPE_BYTES: libc::c_int = 1 << 20;

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
        policy.workspaces().first().map(|w| w.root.clone()),
        std::sync::Arc::new(SystemResolver),
    )
}

/// Empties the bounding, ambient, effective, permitted and inheritable capability sets.
pub(super) fn drop_all_capabilities() -> std::io::Result<()> {
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
    placeholders: Option<Placeholders>,
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
        drop(self.placeholders.take());
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
