//! Resource limits (rlimits) of a run, computed before the launch and set in the command.

use crate::sandbox::policy::Limits;

/// The rlimits of one run: `(resource, value)` set as soft and hard limit (CPU: hard one second
/// later), so the command cannot raise them past the policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimits([(libc::__rlimit_resource_t, libc::rlim_t); 6]);

impl Rlimits {
    /// The rlimits for `limits`.
    /// Never above the agent's own hard limits (raising them would fail).
    pub(crate) fn from_limits(limits: &Limits) -> Self {
        let mut all = [
            (libc::RLIMIT_CPU, limits.cpu_time.as_secs().max(1)),
            (libc::RLIMIT_AS, limits.memory_bytes),
            (libc::RLIMIT_NPROC, limits.processes),
            (libc::RLIMIT_FSIZE, limits.file_bytes),
            // no core files: they would land in the workspace and may hold secrets
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_NOFILE, 4096),
        ];
        for (resource, value) in &mut all {
            let cap = current_hard_limit(*resource);
            let cap = if *resource == libc::RLIMIT_CPU {
                cap.saturating_sub(1)
            } else {
                cap
            };
            *value = (*value).min(cap);
        }
        Self(all)
    }

    /// Sets every limit on the calling process. Async-signal-safe (only `setrlimit`).
    pub(crate) fn apply_in_child(&self) -> std::io::Result<()> {
        for &(resource, value) in &self.0 {
            // CPU: the hard limit one second later, so SIGXCPU (reported as the CPU limit) comes
            // before SIGKILL
            let hard = if resource == libc::RLIMIT_CPU {
                value.saturating_add(1)
            } else {
                value
            };
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: hard,
            };
            // SAFETY: `lim` is a valid rlimit on this stack frame; setrlimit only reads it.
            if unsafe { libc::setrlimit(resource, &lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn current_hard_limit(resource: libc::__rlimit_resource_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid, writable rlimit on this stack frame.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return libc::RLIM_INFINITY;
    }
    lim.rlim_max
}
