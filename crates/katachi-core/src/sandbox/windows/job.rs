//! One run's Job Object and the race-free way into it: the command is created suspended, put in
//! the job, then resumed, so not one of its instructions runs outside the job, and everything it
//! starts is in the job too (breakaway is not allowed).
//!
//! Each `unsafe` block is one Win32 call; the handles it returns are owned at once by an
//! [`OwnedHandle`], which closes them exactly once.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION,
    JOB_OBJECT_LIMIT_JOB_MEMORY, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_LIMIT_PROCESS_TIME,
};
use windows_sys::Win32::System::Threading::{OpenThread, ResumeThread, THREAD_SUSPEND_RESUME};

use super::job_limits::JobLimits;

/// A Job Object holding one run. Closing it (drop) kills every process still in it.
#[derive(Debug)]
pub(super) struct Job {
    handle: OwnedHandle,
}

impl Job {
    /// A new unnamed Job Object with `limits`: processes at once, committed memory, user CPU time
    /// per process; an unhandled exception ends a process (no error dialog to wait on); every
    /// process dies when the last handle closes.
    ///
    /// # Errors
    /// What Windows said when creating or configuring the job.
    pub(super) fn create(limits: JobLimits) -> io::Result<Self> {
        // SAFETY: no security attributes (the handle is not inherited) and no name; the result is
        // checked before use
        let raw = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid handle that nothing else owns
        let job = Self {
            handle: unsafe { OwnedHandle::from_raw_handle(raw) },
        };
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        // no JOB_OBJECT_LIMIT_BREAKAWAY_OK: a process of the run cannot start one outside the job
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            | JOB_OBJECT_LIMIT_ACTIVE_PROCESS
            | JOB_OBJECT_LIMIT_JOB_MEMORY
            | JOB_OBJECT_LIMIT_PROCESS_TIME
            | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
        info.BasicLimitInformation.ActiveProcessLimit = limits.active_processes;
        info.BasicLimitInformation.PerProcessUserTimeLimit = limits.process_user_time_ticks;
        info.JobMemoryLimit = limits.job_memory_bytes;
        let size = u32::try_from(std::mem::size_of_val(&info))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `info` is a valid JOBOBJECT_EXTENDED_LIMIT_INFORMATION of `size` bytes, only read
        // during the call; the job handle is valid
        let ok = unsafe {
            SetInformationJobObject(
                job.raw(),
                JobObjectExtendedLimitInformation,
                std::ptr::from_ref(&info).cast(),
                size,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(job)
    }

    /// Puts the process `process` (a handle the caller keeps open for the call) in this job.
    ///
    /// # Errors
    /// What Windows said (e.g. the process already ended).
    pub(super) fn assign(&self, process: RawHandle) -> io::Result<()> {
        // SAFETY: both handles are valid for the call; `process` is borrowed, not closed here
        let ok = unsafe { AssignProcessToJobObject(self.raw(), process) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Terminates every process in the job with `exit_code` (none left is fine).
    ///
    /// # Errors
    /// What Windows said.
    pub(super) fn terminate(&self, exit_code: u32) -> io::Result<()> {
        // SAFETY: the job handle is valid
        let ok = unsafe { TerminateJobObject(self.raw(), exit_code) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn raw(&self) -> RawHandle {
        self.handle.as_raw_handle()
    }
}

/// Resumes the threads of process `pid`, created suspended: its one main thread (a suspended new
/// process has no other). The caller holds the process handle, so `pid` cannot be reused meanwhile.
///
/// # Errors
/// What Windows said; [`io::ErrorKind::NotFound`] when the process has no thread to resume.
pub(super) fn resume_suspended_process(pid: u32) -> io::Result<()> {
    // SAFETY: a snapshot of the system's threads; the result is checked before use
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if raw == INVALID_HANDLE_VALUE || raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid handle that nothing else owns
    let snapshot = unsafe { OwnedHandle::from_raw_handle(raw) };
    let mut entry = THREADENTRY32 {
        dwSize: u32::try_from(std::mem::size_of::<THREADENTRY32>())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ..THREADENTRY32::default()
    };
    let mut resumed = 0_usize;
    // SAFETY: `entry` is a THREADENTRY32 whose dwSize is set, written by the call
    let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            resume_thread(entry.th32ThreadID)?;
            resumed += 1;
        }
        // SAFETY: as for Thread32First
        more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    if resumed == 0 {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(())
}

/// Resumes one thread by id.
fn resume_thread(thread_id: u32) -> io::Result<()> {
    // SAFETY: opens the thread with the one right needed, not inheritable; checked before use
    let raw = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, thread_id) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid handle that nothing else owns
    let thread = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: `thread` is a valid handle with THREAD_SUSPEND_RESUME
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
