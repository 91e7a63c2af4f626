//! The Landlock ruleset of a run: which files may be read, written and executed, no TCP, and
//! scoping of abstract UNIX sockets and signals to the sandbox.
//!
//! Built in the agent before the launch; the command only calls `landlock_restrict_self`. Rules are additive (a
//! grant on a folder covers everything below it), so exceptions inside a workspace are made by the
//! mount layer (read-only binds), not here.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope, ABI,
};

use crate::sandbox::policy::{AllowedCommand, SandboxPolicy};

/// The ABI this code was written and tested against.
const ABI_USED: ABI = ABI::V6;

/// System folders readable (not executable) by every command: libraries, data, headers.
/// `/usr/bin` and friends are deliberately absent: only the allowlisted binaries are readable
/// there, so the dynamic loader cannot be asked to load another program.
const SYSTEM_READ_DIRS: &[&str] = &[
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/share",
    "/usr/include",
    "/usr/local/lib",
    "/usr/local/share",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
];

/// Single system files readable by every command.
const SYSTEM_READ_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gitconfig",
    "/etc/mime.types",
    "/etc/services",
    "/etc/protocols",
    "/etc/os-release",
    "/etc/locale.alias",
];

/// Device files every command may read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Dynamic loaders: they must be executable for any dynamic binary to start.
const LOADERS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux-armhf.so.3",
    "/lib/ld-linux-riscv64-lp64d.so.1",
];

/// Errors building the ruleset.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LandlockError {
    /// The kernel refused part of the ruleset.
    #[error("landlock: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// The kernel's Landlock ABI version, 0 when Landlock is off.
pub(crate) fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: null attr, size 0, the VERSION flag; no memory is
    // passed to the kernel.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v.max(0)).unwrap_or(0)
}

/// Builds the ruleset for one run.
///
/// `writable` are the workspaces plus the run's scratch folder; `proxy_port` is the only TCP
/// port that may be connected to (none: no TCP at all).
pub(crate) fn build_ruleset(
    policy: &SandboxPolicy,
    command: &AllowedCommand,
    writable: &[PathBuf],
    proxy_port: Option<u16>,
    hard: bool,
) -> Result<RulesetCreated, LandlockError> {
    let level = if hard {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let all = AccessFs::from_all(ABI_USED);
    let read = AccessFs::from_read(ABI_USED) & !AccessFs::Execute;
    let read_file = landlock::BitFlags::from(AccessFs::ReadFile);
    let exec_file = AccessFs::ReadFile | AccessFs::Execute;
    let write_all = all & !AccessFs::Execute;
    let device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;

    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(all)?
        .handle_access(AccessNet::from_all(ABI_USED))?
        .scope(Scope::from_all(ABI_USED))?
        .create()?
        // missing system paths are normal (no /lib32 here, no /etc/gitconfig there): skip them
        .set_compatibility(CompatLevel::BestEffort);

    for dir in SYSTEM_READ_DIRS {
        ruleset = add_path(ruleset, dir, read)?;
    }
    for file in SYSTEM_READ_FILES {
        ruleset = add_path(ruleset, file, read_file)?;
    }
    for dev in DEVICES {
        ruleset = add_path(ruleset, dev, device)?;
    }
    for loader in LOADERS {
        ruleset = add_path(ruleset, loader, exec_file)?;
    }
    ruleset = add_path(ruleset, &command.path, exec_file)?;
    if let Some(interp) = &command.interpreter {
        ruleset = add_path(ruleset, interp, exec_file)?;
    }
    // every allowed command may run every other allowed command (git runs ssh, cargo runs rustc)
    for other in policy.commands() {
        ruleset = add_path(ruleset, &other.path, exec_file)?;
    }
    for dir in writable {
        ruleset = add_path(ruleset, dir, write_all)?;
    }
    if let Some(port) = proxy_port {
        ruleset = ruleset.add_rule(landlock::NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    Ok(ruleset)
}

/// Adds one rule when `path` exists (opened now, before the launch: the rule follows that inode).
fn add_path(
    ruleset: RulesetCreated,
    path: impl AsRef<Path>,
    access: landlock::BitFlags<AccessFs>,
) -> Result<RulesetCreated, LandlockError> {
    let path = path.as_ref();
    let Ok(fd) = PathFd::new(path) else {
        return Ok(ruleset);
    };
    // a file rule may only carry file rights
    let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(ABI_USED)
    };
    Ok(ruleset.add_rule(PathBeneath::new(fd, access))?)
}
