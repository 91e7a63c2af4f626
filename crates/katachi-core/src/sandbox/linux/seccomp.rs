//! The seccomp-bpf filters of a run, compiled once per process and installed last in the command.
//!
//! Two filters, because one filter has one action: the first answers `EPERM` to everything a
//! sandboxed command never needs (sockets other than TCP, ptrace, mount, keyctl, bpf, namespaces,
//! io_uring, process-group escapes, personality tricks, TIOCSTI); the second answers `ENOSYS` to
//! `clone3`, whose flags live in memory a filter cannot read, so libc falls back to `clone`, whose
//! namespace flags the first filter checks.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// Errors compiling a filter (a bug in the rule table, or an unsupported architecture).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    /// seccompiler refused the rules.
    #[error("seccomp: {0}")]
    Compile(#[from] seccompiler::Error),
    /// seccompiler refused a rule or condition.
    #[error("seccomp: {0}")]
    Backend(#[from] seccompiler::BackendError),
}

/// Syscalls denied outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_vhangup,
    // leaving the process group would escape the group kill
    libc::SYS_setsid,
    libc::SYS_setpgid,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

fn arch() -> Result<TargetArch, SeccompError> {
    Ok(TargetArch::try_from(std::env::consts::ARCH)?)
}

fn cond(arg: u8, op: Op, value: u64) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(arg, Len::Dword, op, value)?)
}

/// The filters, compiled once per process (they do not depend on the policy).
///
/// # Errors
/// What compiling said (the same error on every call).
pub(crate) fn filters() -> Result<&'static [BpfProgram; 2], String> {
    static FILTERS: std::sync::OnceLock<Result<[BpfProgram; 2], String>> =
        std::sync::OnceLock::new();
    FILTERS
        .get_or_init(|| compile_filters().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The `EPERM` filter and the `ENOSYS` filter, in install order.
fn compile_filters() -> Result<[BpfProgram; 2], SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, Vec::new());
    }
    // any family but IPv4/IPv6 (UNIX, netlink, packet, …): D-Bus, ssh-agent, docker.sock
    let mut socket_rules = vec![SeccompRule::new(vec![
        cond(0, Op::Ne, libc::AF_INET as u64)?,
        cond(0, Op::Ne, libc::AF_INET6 as u64)?,
    ])?];
    // any type but a stream (UDP, raw: DNS and ping to the outside); the low 4 bits are the type,
    // the rest are SOCK_CLOEXEC/SOCK_NONBLOCK
    for ty in (0..16u64).filter(|&t| t != libc::SOCK_STREAM as u64) {
        socket_rules.push(SeccompRule::new(vec![cond(1, Op::MaskedEq(0xf), ty)?])?);
    }
    rules.insert(libc::SYS_socket, socket_rules);
    rules.insert(
        libc::SYS_socketpair,
        vec![SeccompRule::new(vec![cond(
            0,
            Op::Ne,
            libc::AF_UNIX as u64,
        )?])?],
    );
    // clone with any namespace flag (arg 0 on the supported architectures)
    let mut clone_rules = Vec::new();
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ] {
        let flag = flag as u64;
        clone_rules.push(SeccompRule::new(vec![SeccompCondition::new(
            0,
            Len::Qword,
            Op::MaskedEq(flag),
            flag,
        )?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    // personality: only the query and the plain Linux persona (no ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC)
    rules.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(vec![
            cond(0, Op::Ne, 0)?,
            cond(0, Op::Ne, 0xffff_ffff)?,
        ])?],
    );
    // TIOCSTI / TIOCLINUX push keystrokes into the agent's terminal
    rules.insert(
        libc::SYS_ioctl,
        vec![
            SeccompRule::new(vec![cond(1, Op::Eq, libc::TIOCSTI)?])?,
            SeccompRule::new(vec![cond(1, Op::Eq, 0x541C)?])?,
        ],
    );
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )?;
    let enosys = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )?;
    Ok([eperm.try_into()?, enosys.try_into()?])
}

/// Whether this kernel accepts seccomp filters (`PR_GET_SECCOMP` answers instead of `EINVAL`).
pub(crate) fn kernel_supports_filters() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and only reads the caller's mode.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    r >= 0
}
