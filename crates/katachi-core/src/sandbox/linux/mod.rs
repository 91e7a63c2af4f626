//! The Linux backend: Landlock, seccomp, user/PID/mount/network namespaces, rlimits, a pids cgroup.
//!
//! Everything is prepared in the agent before the launch (Landlock ruleset, BPF programs, mount
//! list, uid maps, rlimits); the run's processes, clones sharing the agent's memory (see `launch`),
//! only make raw syscalls on that prepared data, so nothing there allocates or takes a lock another
//! thread may hold.

mod cgroup;
mod egress;
mod landlock;
mod launch;
mod limits;
mod mounts;
mod netns;
mod seccomp;
mod spawn;

pub(crate) use spawn::spawn;

use std::sync::OnceLock;

use super::LayerStatus;

/// What this kernel offers, probed once per process.
#[derive(Debug, Clone)]
pub(crate) struct KernelCaps {
    /// Landlock ABI version (0: none).
    pub(crate) landlock_abi: i32,
    /// seccomp filters can be installed.
    pub(crate) seccomp: bool,
    /// A user + network + PID + mount namespace can be created by this user, or why not.
    pub(crate) namespaces: Result<(), String>,
    /// A pids cgroup folder this user may create children in, or why not.
    pub(crate) pids_cgroup: Result<std::path::PathBuf, String>,
}

/// Landlock ABI the policy is written against (the kernel may offer more).
pub(crate) const LANDLOCK_ABI_WANTED: i32 = 6;

impl KernelCaps {
    /// Probes once; later calls return the cached result.
    pub(crate) fn probe() -> Self {
        static CAPS: OnceLock<KernelCaps> = OnceLock::new();
        CAPS.get_or_init(|| KernelCaps {
            landlock_abi: landlock::kernel_abi(),
            seccomp: seccomp::kernel_supports_filters(),
            namespaces: netns::probe_namespaces(),
            pids_cgroup: cgroup::find_pids_cgroup(),
        })
        .clone()
    }

    /// Each layer with its state.
    pub(crate) fn layers(&self) -> Vec<LayerStatus> {
        let abi = self.landlock_abi;
        let ns = |name: &str, what: &str| LayerStatus {
            name: name.to_owned(),
            active: self.namespaces.is_ok(),
            detail: match &self.namespaces {
                Ok(()) => what.to_owned(),
                Err(why) => format!("unavailable: {why}"),
            },
        };
        vec![
            LayerStatus {
                name: format!("landlock abi {abi}"),
                active: abi >= LANDLOCK_ABI_WANTED,
                detail: if abi >= LANDLOCK_ABI_WANTED {
                    "files, execute, TCP bind/connect, abstract UNIX socket and signal scoping"
                        .to_owned()
                } else if abi > 0 {
                    format!("too old: ABI {LANDLOCK_ABI_WANTED} (Linux 6.12) needed for TCP rules and scoping")
                } else {
                    "not enabled in this kernel (add `landlock` to the lsm= boot parameter)"
                        .to_owned()
                },
            },
            LayerStatus {
                name: "seccomp".to_owned(),
                active: self.seccomp,
                detail: if self.seccomp {
                    "no UDP/raw/packet/netlink/UNIX sockets, ptrace, mount, keyctl, bpf, namespaces, io_uring".to_owned()
                } else {
                    "seccomp filters are not available in this kernel".to_owned()
                },
            },
            ns(
                "userns",
                "own user namespace; zero capabilities; no_new_privs",
            ),
            ns("netns", "fresh network namespace: loopback only"),
            ns("pidns", "own PID namespace: the tree dies with the command"),
            ns(
                "mountns",
                "workspaces noexec; .git/hooks, .git/config read-only; .env* hidden",
            ),
            LayerStatus {
                name: "pids cgroup".to_owned(),
                active: self.pids_cgroup.is_ok(),
                detail: match &self.pids_cgroup {
                    Ok(p) => format!("process count limited in {}", p.display()),
                    Err(why) => format!("unavailable ({why}); RLIMIT_NPROC only"),
                },
            },
            LayerStatus {
                name: "proxy".to_owned(),
                active: true,
                detail: if self.namespaces.is_ok() {
                    "egress proxy (HTTP CONNECT) for allowed hosts, listening inside the run's network namespace; every attempt logged".to_owned()
                } else {
                    "egress proxy (HTTP CONNECT) for allowed hosts on the host's loopback; Landlock alone limits connect to it".to_owned()
                },
            },
        ]
    }
}
