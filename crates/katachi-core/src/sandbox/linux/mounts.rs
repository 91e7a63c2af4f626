//! The mount layer: exceptions inside a workspace that Landlock (additive rules) cannot express.
//!
//! In the run's own mount namespace, prepared as a list of `mount(2)` calls before the launch:
//! - each workspace and the scratch folder are re-mounted `noexec,nosuid,nodev`: the dynamic loader
//!   cannot map a binary planted or copied there;
//! - `.git` becomes a mount point (it can no longer be renamed away and replaced by a fake one),
//!   `.git/hooks` and `.git/config` are read-only: no hook or `core.fsmonitor` runs later as the user;
//! - `.env*` files (unless allowed) and hidden folders are covered by an unreadable empty node.
//!
//! Which paths are protected comes from [`crate::protected`], the rule set the file API uses too.
//!
//! Mounts never leave the namespace: `/` is made private first.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::protected::{is_env_file_name, GIT_DIR_NAME, GIT_READ_ONLY};
use crate::sandbox::policy::SandboxPolicy;

/// How deep `.env*` files are looked for below a workspace root, and how many entries at most.
const ENV_SCAN_DEPTH: usize = 4;
const ENV_SCAN_ENTRIES: usize = 20_000;

/// One `mount(2)` call.
#[derive(Debug)]
struct MountOp {
    source: Option<CString>,
    target: CString,
    flags: libc::c_ulong,
}

/// The mount calls of one run, in order.
#[derive(Debug, Default)]
pub(crate) struct MountPlan {
    ops: Vec<MountOp>,
}

/// Errors preparing the plan.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    /// A path has a NUL byte (cannot be passed to the kernel).
    #[error("path {0} cannot be mounted (NUL byte)")]
    Nul(PathBuf),
    /// A placeholder or protected node could not be created.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn cstr(p: &Path) -> Result<CString, MountError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| MountError::Nul(p.to_owned()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MountError + '_ {
    move |source| MountError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The empty, unreadable nodes bind-mounted over hidden files and folders: a file and a folder of
/// mode 000 in a folder of their own (outside the run's writable scratch folder), made only when a
/// run hides something, removed when dropped.
#[derive(Debug, Default)]
pub(crate) struct Placeholders {
    dir: Option<tempfile::TempDir>,
}

impl Placeholders {
    /// The hidden file and folder, made on first use.
    fn paths(&mut self) -> Result<(PathBuf, PathBuf), MountError> {
        let dir = match &self.dir {
            Some(d) => d.path().to_owned(),
            None => {
                let d = tempfile::Builder::new()
                    .prefix("katachi-hidden-")
                    .tempdir()
                    .map_err(io(Path::new("katachi-hidden-*")))?;
                let path = d.path().to_owned();
                let (file, folder) = (path.join("hidden-file"), path.join("hidden-dir"));
                self.dir = Some(d);
                std::fs::write(&file, b"").map_err(io(&file))?;
                std::fs::create_dir(&folder).map_err(io(&folder))?;
                set_mode(&file, 0)?;
                set_mode(&folder, 0)?;
                path
            }
        };
        Ok((dir.join("hidden-file"), dir.join("hidden-dir")))
    }
}

impl Drop for Placeholders {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            // mode 000 nodes: give them back to the owner so the folder can be removed
            for p in ["hidden-file", "hidden-dir"] {
                let _ = set_mode(&d.path().join(p), 0o700);
            }
            drop(d);
        }
    }
}

impl MountPlan {
    /// Plans the mounts for `policy`; `scratch` is the run's writable folder; placeholders are
    /// made in `placeholders` when something must be hidden.
    pub(crate) fn for_policy(
        policy: &SandboxPolicy,
        scratch: &Path,
        placeholders: &mut Placeholders,
    ) -> Result<Self, MountError> {
        let mut plan = Self::default();
        plan.ops.push(MountOp {
            source: None,
            target: cstr(Path::new("/"))?,
            flags: libc::MS_REC | libc::MS_PRIVATE,
        });
        plan.bind(scratch, scratch, false)?;
        for ws in policy.workspaces() {
            let root = &ws.root;
            plan.bind(root, root, false)?;
            let git = root.join(GIT_DIR_NAME);
            if git.is_dir() {
                plan.bind(&git, &git, false)?;
                for part in GIT_READ_ONLY {
                    let path = git.join(part);
                    // a missing hooks folder or config would let the sandbox create one
                    if *part == "hooks" {
                        std::fs::create_dir_all(&path).map_err(io(&path))?;
                    } else if !path.exists() {
                        std::fs::write(&path, b"").map_err(io(&path))?;
                    }
                    plan.bind(&path, &path, true)?;
                }
            } else if git.is_file() {
                // a worktree's `.git` file points at the real repository: keep it as it is
                plan.bind(&git, &git, true)?;
            }
            if !ws.allow_env_files {
                for env in find_env_files(root) {
                    let (hidden_file, _) = placeholders.paths()?;
                    plan.bind(&hidden_file, &env, true)?;
                }
            }
            for hidden in policy.hidden.iter().filter(|h| h.starts_with(root)) {
                if hidden.is_dir() {
                    let (_, hidden_dir) = placeholders.paths()?;
                    plan.bind(&hidden_dir, hidden, true)?;
                } else if hidden.exists() {
                    let (hidden_file, _) = placeholders.paths()?;
                    plan.bind(&hidden_file, hidden, true)?;
                }
            }
        }
        Ok(plan)
    }

    /// A bind of `source` on `target`, then a remount with `noexec,nosuid,nodev` (and read-only).
    fn bind(&mut self, source: &Path, target: &Path, read_only: bool) -> Result<(), MountError> {
        let target_c = cstr(target)?;
        self.ops.push(MountOp {
            source: Some(cstr(source)?),
            target: target_c.clone(),
            flags: libc::MS_BIND | libc::MS_REC,
        });
        let mut flags = libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | kept_flags(source);
        if read_only {
            flags |= libc::MS_RDONLY;
        }
        self.ops.push(MountOp {
            source: None,
            target: target_c,
            flags,
        });
        Ok(())
    }

    /// Performs the mounts in the child, in its new mount namespace. Async-signal-safe.
    pub(crate) fn apply_in_child(&self) -> std::io::Result<()> {
        for op in &self.ops {
            let src = op.source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
            // SAFETY: every pointer is a NUL-terminated string owned by the plan, or null where
            // mount(2) allows it (no source for remount/propagation, no fstype, no data).
            let r = unsafe {
                libc::mount(
                    src,
                    op.target.as_ptr(),
                    std::ptr::null(),
                    op.flags,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The flags of the mount holding `path` that a remount inside a user namespace must keep
/// (read-only and atime flags are locked; dropping them fails with `EPERM`).
fn kept_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = cstr(path) else { return 0 };
    // SAFETY: `st` is a valid out buffer, `c` NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let map = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    map.iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), MountError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// `.env`, `.env.local`, … files below `root` (bounded walk; `.git`, `node_modules`, `target` skipped).
fn find_env_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > ENV_SCAN_ENTRIES {
                return found;
            }
            let name = entry.file_name();
            let name = name.as_bytes();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                let skip = matches!(name, b".git" | b"node_modules" | b"target");
                if !skip && depth < ENV_SCAN_DEPTH {
                    stack.push((entry.path(), depth + 1));
                }
            } else if ft.is_file() && is_env_file_name(name) {
                found.push(entry.path());
            }
        }
    }
    found
}
