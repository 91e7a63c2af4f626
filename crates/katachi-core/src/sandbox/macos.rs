//! The macOS backend: a Seatbelt profile (SBPL) generated from the same [`SandboxPolicy`] as the
//! Linux rules, run with `/usr/bin/sandbox-exec -p PROFILE -- CMD ARGS…`.
//!
//! # What the profile allows (everything else is denied: `(deny default)`)
//! - exec: only the allowlisted binaries and their `#!` interpreters (`process-exec` by literal
//!   path); fork;
//! - files: system folders read-only (and mappable as code: dyld needs it); the workspaces
//!   read-write except `.git` itself (it cannot be renamed away), `.git/hooks`, `.git/config`
//!   (read-only) and `.env*` files (neither readable nor writable unless the workspace allows
//!   them, matched by a regular expression at any depth); the agent's hidden folders invisible; the
//!   run's scratch folder (`HOME`, `TMPDIR`) read-write; nothing else but the ancestors' metadata;
//! - network: nothing but TCP to the egress proxy on `localhost:PORT` (when it runs);
//! - IPC: the few Mach services basic tools need (user and group lookup, notifications), no
//!   other Mach service, no UNIX socket;
//! - processes: signals and process info only inside the sandbox; read-only sysctls that describe
//!   the machine (not `kern.proc`, which lists other processes' arguments).
//!
//! # Escaping
//! Every path enters the profile as a string literal: `"` and `\` are escaped; regular
//! expressions escape each regex metacharacter first. A path that is not UTF-8 or has a control
//! character is refused ([`ProfileError`]) rather than written in a form Seatbelt might read
//! differently. A folder named `x") (allow default` therefore stays one literal.
//!
//! # Not verified here
//! The generator is platform-independent and its text is unit-tested on Linux; the profile
//! cannot be *run* on this (Linux) machine, nor can the macOS spawn path be compiled here (no
//! Apple SDK). `sandbox-exec` is deprecated by Apple but still shipped (macOS 15). Limits on macOS:
//! wall time, output, CPU time and file size per process, whole-group kill; no per-run process
//! count (`RLIMIT_NPROC` counts all the user's processes there) and no memory limit (macOS does not
//! enforce `RLIMIT_AS`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::policy::{AllowedCommand, SandboxPolicy, WorkspaceAccess};
use crate::protected::{ENV_FILE_PREFIX, GIT_DIR_NAME, GIT_READ_ONLY};

#[cfg(any(target_os = "macos", all(test, target_os = "linux")))]
mod spawn;
#[cfg(target_os = "macos")]
pub(crate) use spawn::{layers, spawn};

/// The launcher that applies a profile and then execs the command.
pub(crate) const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// Folders every command may read and map as code: the OS, libraries, developer tools, Homebrew.
/// Only allowlisted binaries may be *executed*; reading these does not allow that.
const SYSTEM_READ_DIRS: &[&str] = &[
    "/System",
    "/usr/lib",
    "/usr/libexec",
    "/usr/share",
    "/usr/local/lib",
    "/usr/local/share",
    "/usr/local/Cellar",
    "/usr/local/opt",
    "/opt/homebrew/lib",
    "/opt/homebrew/share",
    "/opt/homebrew/Cellar",
    "/opt/homebrew/opt",
    "/Library/Developer/CommandLineTools",
    "/Applications/Xcode.app/Contents/Developer",
    "/private/etc/ssl",
    "/private/var/db/timezone",
];

/// Single system files every command may read.
const SYSTEM_READ_FILES: &[&str] = &[
    "/private/etc/hosts",
    "/private/etc/passwd",
    "/private/etc/group",
    "/private/etc/localtime",
    "/private/etc/services",
    "/private/etc/protocols",
    "/private/etc/gitconfig",
    "/private/var/run/resolv.conf",
    "/dev/random",
    "/dev/urandom",
];

/// Symlinks at the root that paths go through (`/tmp` → `/private/tmp`): metadata only.
const ROOT_LINKS: &[&str] = &["/", "/private", "/etc", "/tmp", "/var", "/private/var"];

/// Read-only sysctls that describe the machine, by prefix. `kern.proc.*` is absent on purpose.
const SYSCTL_PREFIXES: &[&str] = &["hw.", "machdep.cpu.", "kern.os", "sysctl.proc_"];

/// Single read-only sysctls.
const SYSCTL_NAMES: &[&str] = &[
    "kern.argmax",
    "kern.hostname",
    "kern.maxfilesperproc",
    "kern.ngroups",
    "kern.secure_kernel",
    "kern.usrstack64",
    "kern.version",
    "vm.footprint_suspend",
];

/// Mach services basic tools need: user/group lookup (`getpwuid`, used by git and ssh) and
/// notifications (time zone changes). Not launchd's others: no pasteboard, no keychain.
const MACH_SERVICES: &[&str] = &[
    "com.apple.system.opendirectoryd.libinfo",
    "com.apple.system.opendirectoryd.membership",
    "com.apple.system.notification_center",
];

/// A profile that cannot be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileError {
    /// A path is not UTF-8 or holds a control character; Seatbelt string literals cannot carry it
    /// unambiguously. Rename the folder, or leave it out of the policy.
    #[error(
        "path {0:?} cannot be written into a Seatbelt profile (not UTF-8, or a control character)"
    )]
    UnrepresentablePath(PathBuf),
}

/// What one run's profile is made of (a policy seen by one run).
#[derive(Debug)]
pub(crate) struct ProfileInput<'a> {
    /// The allowed workspaces.
    pub(crate) workspaces: &'a [WorkspaceAccess],
    /// Every binary that may be executed (the commands and their interpreters).
    pub(crate) executables: BTreeSet<&'a Path>,
    /// Folders and files hidden even inside a workspace (the agent's own state).
    pub(crate) hidden: &'a [PathBuf],
    /// The run's scratch folder (`HOME`, `TMPDIR`), read-write.
    pub(crate) scratch: &'a Path,
    /// The egress proxy's loopback port; `None`: no network at all.
    pub(crate) proxy_port: Option<u16>,
}

impl<'a> ProfileInput<'a> {
    /// The inputs of one run of `command` under `policy`. Every allowed command may run every
    /// other one (git runs ssh), as on Linux.
    pub(crate) fn for_run(
        policy: &'a SandboxPolicy,
        command: &'a AllowedCommand,
        scratch: &'a Path,
        proxy_port: Option<u16>,
    ) -> Self {
        let executables = std::iter::once(command)
            .chain(policy.commands())
            .flat_map(|c| std::iter::once(c.path.as_path()).chain(c.interpreter.as_deref()))
            .collect();
        Self {
            workspaces: policy.workspaces(),
            executables,
            hidden: &policy.hidden,
            scratch,
            proxy_port,
        }
    }
}

/// Writes the Seatbelt profile of one run.
///
/// # Errors
/// [`ProfileError::UnrepresentablePath`] when a path cannot be quoted safely.
///
/// # Security
/// The profile is the whole sandbox on macOS: every rule is an allow on top of `(deny default)`,
/// and every path is quoted by [`quote_str`] (regular expressions escaped by [`regex_escape`] first), never spliced raw.
pub(crate) fn seatbelt_profile(input: &ProfileInput<'_>) -> Result<String, ProfileError> {
    let mut p = String::from("(version 1)\n(deny default)\n");
    p.push_str("(allow process-fork)\n(allow process-info* (target self))\n");
    p.push_str("(allow signal (target same-sandbox))\n");
    rule(
        &mut p,
        "process-exec",
        literals(input.executables.iter().copied())?,
    );

    let mut sysctls: Vec<String> = SYSCTL_PREFIXES
        .iter()
        .map(|s| format!("(sysctl-name-prefix {})", quote_str(s)))
        .collect();
    sysctls.extend(
        SYSCTL_NAMES
            .iter()
            .map(|s| format!("(sysctl-name {})", quote_str(s))),
    );
    rule(&mut p, "sysctl-read", sysctls);
    let services = MACH_SERVICES
        .iter()
        .map(|s| format!("(global-name {})", quote_str(s)));
    rule(&mut p, "mach-lookup", services.collect());
    p.push_str(
        "(allow ipc-posix-shm-read-data (ipc-posix-name \"apple.shm.notification_center\"))\n",
    );

    let system_dirs = SYSTEM_READ_DIRS.iter().map(|d| subpath(Path::new(d)));
    let system_dirs = system_dirs.collect::<Result<Vec<_>, _>>()?;
    rule(&mut p, "file-read*", system_dirs.clone());
    let mut code = system_dirs;
    code.extend(literals(input.executables.iter().copied())?);
    rule(&mut p, "file-map-executable", code);
    let mut files = literals(SYSTEM_READ_FILES.iter().map(Path::new))?;
    files.extend(literals(input.executables.iter().copied())?);
    rule(&mut p, "file-read*", files);
    rule(
        &mut p,
        "file-read-metadata",
        literals(ancestors(input).iter().map(PathBuf::as_path))?,
    );
    rule(
        &mut p,
        "file-read* file-write-data",
        literals(["/dev/null", "/dev/zero"].map(Path::new))?,
    );
    rule(
        &mut p,
        "file-read* file-write*",
        vec![subpath(input.scratch)?],
    );

    for ws in input.workspaces {
        write_workspace_rules(&mut p, ws, input.hidden)?;
    }
    match input.proxy_port {
        Some(port) => {
            let _ = writeln!(
                p,
                "(allow network-outbound (remote tcp \"localhost:{port}\"))"
            );
        }
        None => p.push_str("; no egress proxy for this run: no outbound connection at all\n"),
    }
    Ok(p)
}

/// The rules of one workspace: read all but `.env*` and hidden paths; write all but those and
/// `.git`, `.git/hooks`, `.git/config`.
fn write_workspace_rules(
    p: &mut String,
    ws: &WorkspaceAccess,
    hidden: &[PathBuf],
) -> Result<(), ProfileError> {
    let root = &ws.root;
    let mut excluded = Vec::new();
    if !ws.allow_env_files {
        // `.env`, `.env.local`, … at any depth below the root
        let re = format!(
            "^{}/(.*/)?{}[^/]*$",
            regex_escape(utf8(root)?),
            regex_escape(ENV_FILE_PREFIX)
        );
        excluded.push(format!("(regex {})", quote_str(&re)));
    }
    for h in hidden.iter().filter(|h| h.starts_with(root)) {
        excluded.push(subpath(h)?);
    }
    let mut read = vec![subpath(root)?];
    read.extend(excluded.iter().map(|e| format!("(require-not {e})")));
    rule(p, "file-read*", vec![require_all(&read)]);

    // `.git` itself is write-protected too: renaming it away would let a new `.git/hooks` in
    let git = root.join(GIT_DIR_NAME);
    let mut write = read;
    write.push(format!("(require-not {})", literal(&git)?));
    for part in GIT_READ_ONLY {
        let path = git.join(part);
        let filter = if *part == "hooks" {
            subpath(&path)?
        } else {
            literal(&path)?
        };
        write.push(format!("(require-not {filter})"));
    }
    rule(p, "file-write*", vec![require_all(&write)]);
    Ok(())
}

/// Every ancestor of the workspaces and the scratch folder, and the root symlinks: path lookups
/// (`getcwd`, `realpath`) stat them.
fn ancestors(input: &ProfileInput<'_>) -> Vec<PathBuf> {
    let mut out: BTreeSet<PathBuf> = ROOT_LINKS.iter().map(PathBuf::from).collect();
    let roots = input.workspaces.iter().map(|w| w.root.as_path());
    for path in roots.chain(std::iter::once(input.scratch)) {
        out.extend(path.ancestors().skip(1).map(Path::to_path_buf));
    }
    out.into_iter().collect()
}

/// Appends `(allow OPS FILTER…)`, one filter per line; nothing when there is no filter.
fn rule(p: &mut String, ops: &str, filters: Vec<String>) {
    if filters.is_empty() {
        return;
    }
    let _ = write!(p, "(allow {ops}");
    for f in filters {
        let _ = write!(p, "\n  {f}");
    }
    p.push_str(")\n");
}

fn require_all(filters: &[String]) -> String {
    format!("(require-all {})", filters.join(" "))
}

fn literals<'p>(paths: impl IntoIterator<Item = &'p Path>) -> Result<Vec<String>, ProfileError> {
    paths.into_iter().map(literal).collect()
}

fn literal(path: &Path) -> Result<String, ProfileError> {
    Ok(format!("(literal {})", quote_str(utf8(path)?)))
}

fn subpath(path: &Path) -> Result<String, ProfileError> {
    Ok(format!("(subpath {})", quote_str(utf8(path)?)))
}

/// The path as text, refused when Seatbelt could read it differently (not UTF-8, control chars).
fn utf8(path: &Path) -> Result<&str, ProfileError> {
    path.to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| ProfileError::UnrepresentablePath(path.to_owned()))
}

/// A SBPL (Scheme) string literal: `"` and `\\` escaped, nothing else changed. Callers pass text
/// without control characters ([`utf8`] refuses them).
fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `text` as a regular expression matching exactly itself (POSIX ERE metacharacters escaped).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[path = "macos_tests.rs"]
mod tests;
