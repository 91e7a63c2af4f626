//! What a sandboxed command may touch: workspaces, system folders, commands, hosts, limits, env.
//!
//! A [`SandboxPolicy`] is built once, from trusted input (the store and the user's choices), and
//! checked while it is built: workspaces are made absolute with symlinks resolved, every allowed
//! command is resolved to an absolute binary through fixed, trusted folders (never the caller's
//! `PATH`, never a workspace — a repository cannot plant a fake `git`; the folders of each OS are
//! listed in [`trusted_folders`]). Nothing here enforces anything: the platform backends turn the
//! policy into kernel rules.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command_path::{command_key, find_command, not_found, spawnable_path};
use super::denied::{shell_word, DenialKind, SandboxDenied};
use super::hosts::HostPattern;
use crate::protected::ProtectedPaths;

pub use super::command_path::{is_trusted_command, trusted_folders, trusted_path_env};

/// The folders searched for allowed commands on Unix, in order, and the `PATH` commands get there.
/// Fixed: the caller's `PATH` is not trusted. Windows builds its list from the system instead
/// (see [`trusted_folders`], [`trusted_path_env`]).
pub const TRUSTED_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Environment variables passed through from the agent when the policy names none.
pub const DEFAULT_ENV: &[&str] = &["LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TERM", "TZ"];

/// Names that are never passed through, even when a policy lists them: they carry credentials or
/// open a way out (`SSH_AUTH_SOCK` reaches the ssh agent, `DBUS_SESSION_BUS_ADDRESS` the session).
const NEVER_PASSED: &[&str] = &[
    "SSH_AUTH_SOCK",
    "DBUS_SESSION_BUS_ADDRESS",
    "GPG_AGENT_INFO",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "KATACHI_HOME",
    "DOCKER_HOST",
];

/// Errors building a policy. Each names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A workspace folder does not exist or cannot be resolved.
    #[error("workspace {path} cannot be used: {source}")]
    Workspace {
        /// The folder as given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A workspace is not a directory.
    #[error("workspace {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A workspace is `/` or a system folder: the sandbox would be meaningless.
    #[error("workspace {0} is a system folder or the filesystem root; pick a project folder")]
    SystemFolder(PathBuf),
    /// A command name is empty, has a `/` (on Windows also `\`, `:` or a character file names
    /// cannot have), or is otherwise not a plain program name.
    #[error("command {0:?} is not a plain program name (use e.g. `git`, not a path)")]
    BadCommandName(String),
    /// Windows: the command name is a device name (`CON`, `NUL`, `COM1`…), never a program.
    #[error("command {0:?} is a reserved Windows device name, not a program")]
    ReservedCommandName(String),
    /// Windows: the command is a batch file. It would run through `cmd.exe`, whose parsing of the
    /// command line can turn an argument into a second command; allow the program it starts.
    #[error("command {name:?} is a batch file ({file}): batch files run through cmd.exe, which can turn arguments into commands, so katachi does not run them; allow the program it starts instead")]
    BatchFile {
        /// The name as given.
        name: String,
        /// The batch file found in a trusted folder, or the name when it ends in `.bat`/`.cmd`.
        file: String,
    },
    /// The command is not in any of the trusted folders (not installed, or installed elsewhere).
    #[error("command {name:?} was not found in the trusted PATH ({searched})")]
    CommandNotFound {
        /// The name as given.
        name: String,
        /// The folders searched, as a `PATH` value.
        searched: String,
    },
    /// The command resolves into a workspace (a planted binary) or the agent's own folders.
    #[error(
        "command {name:?} resolves to {path}, inside a folder the sandbox can write; refusing it"
    )]
    CommandInWritableFolder {
        /// The name as given.
        name: String,
        /// Where it resolved.
        path: PathBuf,
    },
    /// A host name is empty or has characters a host cannot have.
    #[error("{0:?} is not an allowed-host pattern (use e.g. `crates.io`, `*.npmjs.org`, `example.org:8443` or `10.0.0.5`)")]
    BadHost(String),
    /// An environment variable is one that carries credentials or a way out of the sandbox.
    #[error("environment variable {0} is never passed into the sandbox")]
    ForbiddenEnv(String),
    /// A limit is zero.
    #[error("limit {0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// Resource limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Wall-clock time before the whole process tree is killed.
    pub wall_time: Duration,
    /// CPU time per process (`RLIMIT_CPU`).
    pub cpu_time: Duration,
    /// Address space per process in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes in the sandbox (a pids cgroup where available, and `RLIMIT_NPROC`).
    pub processes: u64,
    /// Bytes of stdout plus stderr kept and streamed; beyond it the tree is killed.
    pub output_bytes: u64,
    /// Largest file a process may write (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_time: Duration::from_secs(600),
            cpu_time: Duration::from_secs(600),
            memory_bytes: 4 << 30,
            processes: 256,
            output_bytes: 16 << 20,
            file_bytes: 1 << 30,
        }
    }
}

/// One allowed workspace folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceAccess {
    /// Absolute, symlinks resolved.
    pub root: PathBuf,
    /// Whether `.env*` files may be read (they usually hold secrets: off by default).
    pub allow_env_files: bool,
}

/// An allowed command, resolved at policy time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowedCommand {
    /// The name the caller uses (`git`).
    pub name: String,
    /// The absolute binary it resolved to, symlinks resolved (`/usr/bin/git`; on Windows
    /// `C:\Program Files\Git\cmd\git.exe`, without the `\\?\` prefix where it is not needed).
    pub path: PathBuf,
    /// The interpreter named by its `#!` line, when the command is a script.
    pub interpreter: Option<PathBuf>,
}

/// What to do when a layer the policy needs is missing on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Strictness {
    /// Refuse to run (the default: the sandbox fails closed).
    #[default]
    RequireAllLayers,
    /// Run with the layers that exist; the caller has explicitly accepted a weaker sandbox.
    AllowWeaker,
}

/// The complete rules of one sandboxed run. Build with [`SandboxPolicy::builder`].
#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    pub(crate) workspaces: Vec<WorkspaceAccess>,
    pub(crate) commands: BTreeMap<String, AllowedCommand>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) host_patterns: Vec<HostPattern>,
    pub(crate) hidden: Vec<PathBuf>,
    pub(crate) limits: Limits,
    pub(crate) env: Vec<(String, OsString)>,
    pub(crate) strictness: Strictness,
    pub(crate) allow_unsandboxed: bool,
}

impl SandboxPolicy {
    /// Starts an empty policy: no workspace, no command, no host, default limits.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The allowed workspaces.
    pub fn workspaces(&self) -> &[WorkspaceAccess] {
        &self.workspaces
    }

    /// The allowed commands by name.
    pub fn commands(&self) -> impl Iterator<Item = &AllowedCommand> {
        self.commands.values()
    }

    /// The allowed hosts in canonical form (empty: no network at all).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    /// The allowed hosts as parsed patterns (what the egress proxy matches against).
    pub fn host_patterns(&self) -> &[HostPattern] {
        &self.host_patterns
    }

    /// Folders hidden from the run (katachi's own), canonical.
    pub fn hidden(&self) -> &[PathBuf] {
        &self.hidden
    }

    /// The limits of each run.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether missing layers refuse the run.
    pub fn strictness(&self) -> Strictness {
        self.strictness
    }

    /// Whether the local user allowed runs requested through the API on a machine where the
    /// sandbox is not enforced (`katachi sandbox policy set --allow-unsandboxed`).
    pub fn allows_unsandboxed(&self) -> bool {
        self.allow_unsandboxed
    }

    /// The resolved command for `name`, or the structured denial saying how to allow it.
    ///
    /// # Errors
    /// [`SandboxDenied`] of kind `exec` when the name is not allowlisted.
    pub fn command(&self, name: &str) -> Result<&AllowedCommand, SandboxDenied> {
        self.commands
            .get(command_key(name).as_ref())
            .ok_or_else(|| SandboxDenied {
                kind: DenialKind::Exec,
                target: name.to_owned(),
                how_to_allow: self.exec_hint(name),
            })
    }

    /// The workspace holding `path` (absolute, resolved), or a `file` denial.
    ///
    /// # Errors
    /// [`SandboxDenied`] of kind `file` when `path` is in no workspace.
    pub fn workspace_of(&self, path: &Path) -> Result<&WorkspaceAccess, SandboxDenied> {
        self.workspaces
            .iter()
            .find(|w| path.starts_with(&w.root))
            .ok_or_else(|| SandboxDenied {
                kind: DenialKind::File,
                target: path.display().to_string(),
                // this policy's workspaces are the run's own (`--workspace`), not the store's
                how_to_allow: format!(
                    "choose a folder inside the workspaces of this run, or give this one as a workspace of the run too: --workspace {}",
                    shell_word(&path.display().to_string())
                ),
            })
    }
}

/// Builds a [`SandboxPolicy`], resolving and checking each input.
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    workspaces: Vec<WorkspaceAccess>,
    command_names: Vec<String>,
    hosts: Vec<String>,
    hidden: Vec<PathBuf>,
    limits: Limits,
    env_names: Vec<String>,
    env_names_set: bool,
    strictness: Strictness,
    allow_unsandboxed: bool,
}

impl PolicyBuilder {
    /// Allows a workspace folder read-write (with the `.git` and `.env*` exceptions).
    pub fn workspace(mut self, root: impl Into<PathBuf>, allow_env_files: bool) -> Self {
        self.workspaces.push(WorkspaceAccess {
            root: root.into(),
            allow_env_files,
        });
        self
    }

    /// Allows a command by plain name, resolved through the [`trusted_folders`].
    pub fn allow_command(mut self, name: impl Into<String>) -> Self {
        self.command_names.push(name.into());
        self
    }

    /// Allows network access to a host through the egress proxy: `example.org`, `*.example.org`
    /// (its subdomains), with `:port` for a port other than 443/80, or an IP literal.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Hides a folder from the sandbox even when it lies inside a workspace (the agent's own state).
    pub fn hide(mut self, path: impl Into<PathBuf>) -> Self {
        self.hidden.push(path.into());
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Changes the limits set so far (a workspace's overrides, then a caller's flags).
    pub fn map_limits(mut self, change: impl FnOnce(Limits) -> Limits) -> Self {
        self.limits = change(self.limits);
        self
    }

    /// Passes these environment variables through (replaces [`DEFAULT_ENV`]).
    pub fn env_allowlist<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.env_names = names.into_iter().map(Into::into).collect();
        self.env_names_set = true;
        self
    }

    /// Records the local user's consent to API runs where the sandbox is not enforced (any
    /// workspace of the policy giving it is enough: the policy is built for one workspace).
    pub fn allow_unsandboxed(mut self, allow: bool) -> Self {
        self.allow_unsandboxed |= allow;
        self
    }

    /// Chooses what happens when a layer is missing.
    pub fn strictness(mut self, strictness: Strictness) -> Self {
        self.strictness = strictness;
        self
    }

    /// The protected-path rules this policy gives its (first) workspace: the hidden folders are
    /// katachi's own, and its `.env*` choice. The API's file calls use exactly these.
    pub fn protected_paths(&self) -> ProtectedPaths {
        let allow_env = self.workspaces.first().is_some_and(|w| w.allow_env_files);
        ProtectedPaths::new(&self.hidden, allow_env)
    }

    /// Resolves and checks everything.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the first bad input.
    pub fn build(self) -> Result<SandboxPolicy, PolicyError> {
        let workspaces = self
            .workspaces
            .into_iter()
            .map(resolve_workspace)
            .collect::<Result<Vec<_>, _>>()?;
        let hidden = self
            .hidden
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect::<Vec<_>>();
        let mut commands = BTreeMap::new();
        for name in self.command_names {
            let cmd = resolve_command(&name, &workspaces, &hidden)?;
            commands.insert(command_key(&name).into_owned(), cmd);
        }
        let mut host_patterns: Vec<HostPattern> = Vec::new();
        for h in &self.hosts {
            let p = HostPattern::parse(h)?;
            if !host_patterns.contains(&p) {
                host_patterns.push(p);
            }
        }
        let allowed_hosts = host_patterns.iter().map(ToString::to_string).collect();
        check_limits(&self.limits)?;
        let names: Vec<String> = if self.env_names_set {
            self.env_names
        } else {
            DEFAULT_ENV.iter().map(|s| (*s).to_owned()).collect()
        };
        let mut env = Vec::new();
        for name in names {
            if NEVER_PASSED.contains(&name.as_str()) || name.contains('=') || name.is_empty() {
                return Err(PolicyError::ForbiddenEnv(name));
            }
            if let Some(value) = std::env::var_os(&name) {
                env.push((name, value));
            }
        }
        Ok(SandboxPolicy {
            workspaces,
            commands,
            allowed_hosts,
            host_patterns,
            hidden,
            limits: self.limits,
            env,
            strictness: self.strictness,
            allow_unsandboxed: self.allow_unsandboxed,
        })
    }
}

/// Folders that may never be a workspace: the sandbox would expose the system.
const SYSTEM_FOLDERS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin",
    "/sys", "/usr", "/var", "/home", "/tmp",
];

/// `/`, a Unix system folder, or (on Windows) a drive root or system folder.
fn is_system_folder(root: &Path) -> bool {
    if cfg!(windows) {
        root.to_str().is_none_or(|r| {
            super::command_path::is_windows_system_folder(r, |name| std::env::var_os(name))
        })
    } else {
        SYSTEM_FOLDERS.iter().any(|s| root == Path::new(s))
    }
}

fn resolve_workspace(w: WorkspaceAccess) -> Result<WorkspaceAccess, PolicyError> {
    let root = std::fs::canonicalize(&w.root).map_err(|source| PolicyError::Workspace {
        path: w.root.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(PolicyError::NotADirectory(root));
    }
    if is_system_folder(&root) {
        return Err(PolicyError::SystemFolder(root));
    }
    Ok(WorkspaceAccess {
        root,
        allow_env_files: w.allow_env_files,
    })
}

/// Resolves `name` through the [`trusted_folders`] to an absolute binary, symlinks resolved.
pub(super) fn resolve_command(
    name: &str,
    workspaces: &[WorkspaceAccess],
    hidden: &[PathBuf],
) -> Result<AllowedCommand, PolicyError> {
    let found = find_command(name)?;
    let path = std::fs::canonicalize(&found).map_err(|_| not_found(name))?;
    let writable = |p: &Path| {
        workspaces.iter().any(|w| p.starts_with(&w.root)) || hidden.iter().any(|h| p.starts_with(h))
    };
    if writable(&path) {
        return Err(PolicyError::CommandInWritableFolder {
            name: name.to_owned(),
            path,
        });
    }
    let interpreter = read_interpreter(&path).filter(|i| !writable(i));
    Ok(AllowedCommand {
        name: name.to_owned(),
        path: spawnable_path(path),
        interpreter,
    })
}

/// The absolute interpreter of a `#!` script (resolved), so the script can run. `#!/usr/bin/env X`
/// yields `env` itself, which would let the command run anything: such scripts get no interpreter
/// and fail to start, which is the safe outcome.
fn read_interpreter(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let head = head.get(..n)?;
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let text = std::str::from_utf8(line.get(..end)?).ok()?;
    let interp = text.split_whitespace().next()?;
    let resolved = std::fs::canonicalize(interp).ok()?;
    let is_env = resolved.file_name().is_some_and(|n| n == "env");
    (!is_env).then_some(resolved)
}

fn check_limits(l: &Limits) -> Result<(), PolicyError> {
    let checks = [
        (l.wall_time.is_zero(), "wall time"),
        (l.cpu_time.is_zero(), "cpu time"),
        (l.memory_bytes == 0, "memory"),
        (l.processes == 0, "processes"),
        (l.output_bytes == 0, "output"),
        (l.file_bytes == 0, "file size"),
    ];
    match checks.into_iter().find(|(zero, _)| *zero) {
        Some((_, name)) => Err(PolicyError::ZeroLimit(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
