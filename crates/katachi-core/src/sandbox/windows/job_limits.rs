//! The limits of one run's Job Object, converted from the policy's [`Limits`] into the units and
//! integer widths Windows takes. Plain code: its tests run on Linux.

use crate::sandbox::policy::Limits;

/// Nanoseconds in one tick of Windows' job time limits.
const NANOS_PER_TICK: u128 = 100;

/// The exit code every process of a run gets when katachi ends the run (timeout, cancel, output
/// overflow, leftovers after the command exited): 137, the shell code of a `SIGKILL` on Unix.
pub(crate) const KILLED_EXIT_CODE: u32 = 137;

/// What a run's Job Object enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobLimits {
    /// Processes alive at once in the job (`ActiveProcessLimit`); starting one more fails.
    pub(crate) active_processes: u32,
    /// Memory committed by all the job's processes together, in bytes (`JobMemoryLimit`);
    /// allocations beyond it fail.
    pub(crate) job_memory_bytes: usize,
    /// User-mode CPU time of each process, in 100 ns ticks (`PerProcessUserTimeLimit`); a process
    /// past it is terminated. Per process, as `RLIMIT_CPU` on Unix: a per-job total would cut a
    /// parallel build short long before its wall time.
    pub(crate) process_user_time_ticks: i64,
}

impl JobLimits {
    /// The job limits for `limits`, each at least 1 and saturating where Windows' field is
    /// narrower than the policy's.
    pub(crate) fn from_limits(limits: &Limits) -> Self {
        let ticks = limits.cpu_time.as_nanos() / NANOS_PER_TICK;
        Self {
            active_processes: u32::try_from(limits.processes).unwrap_or(u32::MAX).max(1),
            job_memory_bytes: usize::try_from(limits.memory_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            process_user_time_ticks: i64::try_from(ticks).unwrap_or(i64::MAX).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn default_limits_become_the_same_amounts_in_windows_units() {
        let limits = Limits::default();
        let job = JobLimits::from_limits(&limits);
        assert_eq!(job.active_processes, 256);
        assert_eq!(job.job_memory_bytes, 4 << 30);
        // 600 s in 100 ns ticks
        assert_eq!(job.process_user_time_ticks, 6_000_000_000);
    }

    #[test]
    fn limits_wider_than_the_windows_fields_saturate_instead_of_wrapping() {
        let limits = Limits {
            processes: u64::MAX,
            memory_bytes: u64::MAX,
            cpu_time: Duration::MAX,
            ..Limits::default()
        };
        let job = JobLimits::from_limits(&limits);
        assert_eq!(job.active_processes, u32::MAX);
        assert_eq!(job.job_memory_bytes, usize::MAX);
        assert_eq!(job.process_user_time_ticks, i64::MAX);
    }

    #[test]
    fn a_cpu_limit_below_one_tick_still_limits_instead_of_meaning_none() {
        let limits = Limits {
            cpu_time: Duration::from_nanos(50),
            ..Limits::default()
        };
        assert_eq!(JobLimits::from_limits(&limits).process_user_time_ticks, 1);
    }
}
