//! Fresh user, network, PID and mount namespaces for a run.
//!
//! The user namespace is what lets an unprivileged agent create the others; the uid/gid maps map
//! only the agent's own ids, so files keep their owners. The network namespace has only a
//! loopback interface (left down: nothing inside may listen or connect anyway), so no packet can
//! leave even if every other layer failed.

use std::ffi::CStr;

/// Namespaces every run enters.
pub(crate) const NS_FLAGS: libc::c_int =
    libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWPID;

/// The id maps written by the run's init right after its `clone` (formatted before the launch).
#[derive(Debug, Clone)]
pub(crate) struct IdMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    /// Maps the agent's own uid and gid to themselves.
    pub(crate) fn for_current_user() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

/// Probes whether this user can create the namespaces, in a short-lived forked child.
pub(crate) fn probe_namespaces() -> Result<(), String> {
    // SAFETY: the child only calls unshare and _exit (async-signal-safe) before exiting; the
    // parent reaps it with waitpid.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child of fork: raw syscalls only, then _exit.
        unsafe {
            let ok = libc::unshare(NS_FLAGS) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer; `pid` is our child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err("this user cannot create user namespaces (kernel setting \
             user.max_user_namespaces, or an AppArmor/SELinux restriction)"
            .to_owned())
    }
}

/// In the run's first process, cloned into fresh namespaces: writes its id maps.
/// Async-signal-safe.
pub(crate) fn write_id_maps_in_child(maps: &IdMaps) -> std::io::Result<()> {
    write_proc_file(c"/proc/self/setgroups", b"deny")?;
    write_proc_file(c"/proc/self/uid_map", &maps.uid_map)?;
    write_proc_file(c"/proc/self/gid_map", &maps.gid_map)?;
    Ok(())
}

/// open + write + close of a /proc file. Async-signal-safe.
fn write_proc_file(path: &CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the returned fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `data` is valid for `data.len()` bytes; `fd` is open.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if usize::try_from(n).ok() == Some(data.len()) {
        Ok(())
    } else {
        Err(err)
    }
}
