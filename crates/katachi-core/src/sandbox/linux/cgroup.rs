//! A pids cgroup per run, where this user may create one: caps the process count (a fork bomb stops
//! at the limit even for root, whom `RLIMIT_NPROC` does not bind) and lists every process of the run
//! for the final kill, wherever it moved in the process tree.
//!
//! # Joining without an RCU grace period
//! Writing to `cgroup.procs` moves a whole thread group, which takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing and waits for an RCU grace period (3–12 ms here, the
//! largest part of a sandboxed spawn). The run's init joins right after its `clone`, while it is still a
//! single thread, so on cgroup v1 it writes `0` to `tasks` instead: moving only the calling thread
//! skips that lock (the kernel documents it as safe for `current`), and a single-threaded process
//! moved by its only thread is the whole process. cgroup v2 has no such file outside threaded
//! subtrees, so there the child still writes `cgroup.procs`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Finds the pids cgroup folder of this process where child cgroups can be created (v1 `pids`
/// hierarchy, or v2 with `pids` enabled for children), probing by creating and removing one.
pub(crate) fn find_pids_cgroup() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let mut candidates = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if ctrl.split(',').any(|c| c == "pids") {
            candidates.push(Path::new("/sys/fs/cgroup/pids").join(rel));
        } else if ctrl.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = Path::new(root).join(rel);
                let ctl =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if ctl.split_whitespace().any(|c| c == "pids") {
                    candidates.push(dir);
                }
            }
        }
    }
    for dir in candidates {
        let probe = dir.join(format!("katachi-probe-{}", std::process::id()));
        if std::fs::create_dir(&probe).is_ok() {
            let usable = probe.join("pids.max").exists();
            let _ = std::fs::remove_dir(&probe);
            if usable {
                return Ok(dir);
            }
        }
    }
    Err("no pids cgroup this user may create children in".to_owned())
}

/// The cgroup of one run. The child joins it by writing `0` to its join file before `exec`.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
    /// `tasks` (v1: moves the calling thread, no grace period) or `cgroup.procs` (v2).
    join: File,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl RunCgroup {
    /// Creates the run's cgroup under `base` with at most `max_pids` processes.
    pub(crate) fn create(base: &Path, max_pids: u64) -> std::io::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("katachi-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let setup = || -> std::io::Result<File> {
            std::fs::write(dir.join("pids.max"), max_pids.to_string())?;
            // v1 lists threads in `tasks`; v2 has no such file
            let v1_tasks = dir.join("tasks");
            let join = if v1_tasks.exists() {
                v1_tasks
            } else {
                dir.join("cgroup.procs")
            };
            std::fs::OpenOptions::new().write(true).open(join)
        };
        match setup() {
            Ok(join) => Ok(Self { dir, join }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The descriptor the child writes `0` to while it is single-threaded, right after its `clone`
    /// (close-on-exec).
    pub(crate) fn join_fd(&self) -> RawFd {
        self.join.as_raw_fd()
    }

    /// SIGKILLs every process in the cgroup until it is empty (bounded: processes may still be
    /// forking while being killed).
    pub(crate) fn kill_all(&self) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
        {
            if f.write_all(b"1").is_ok() {
                return;
            }
        }
        for _ in 0..100 {
            let pids = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            let mut any = false;
            for pid in pids
                .lines()
                .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
            {
                any = true;
                super::spawn::kill_pid(pid);
            }
            if !any {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Removes the cgroup once empty (retries briefly while the last processes are reaped).
    pub(crate) fn remove(&self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            self.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        tracing::warn!(dir = %self.dir.display(), "cannot remove a sandbox cgroup");
    }
}
