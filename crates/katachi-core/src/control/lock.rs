//! One agent per user: an OS file lock in the runtime dir, held for the agent's whole life.
//!
//! # Contract
//! - [`AgentLock::acquire`] takes an exclusive, non-blocking lock on `<runtime>/agent.lock`
//!   (`flock` on Unix, `LockFileEx` on Windows) and then writes `<runtime>/agent.json` (pid, since,
//!   which front end). A second acquirer — another `katachi start`, another app — gets
//!   [`LockError::AlreadyRunning`] naming the holder, instead of dialling a second tunnel.
//! - The lock is the truth, the info file only describes it: the OS releases the lock when its
//!   holder exits or crashes, so an info file left by a crashed agent never blocks (it is
//!   overwritten by the next holder).
//! - Dropping the [`AgentLock`] removes the info file, then releases the lock. The lock file itself
//!   stays: deleting it could let two processes hold locks on two different files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::atomic_file::{write_private_atomically, AtomicWriteError};
use crate::dirs::{DirsError, KatachiDirs};

/// The lock file's name in the runtime dir.
const LOCK_FILE: &str = "agent.lock";
/// The info file's name in the runtime dir.
const INFO_FILE: &str = "agent.json";
/// How long a refused acquirer waits for the holder's info file (the holder writes it right
/// after taking the lock).
const INFO_WAIT: Duration = Duration::from_millis(500);

/// Which front end runs the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrontEnd {
    /// The headless `katachi start`.
    Cli,
    /// The tray app.
    App,
}

impl std::fmt::Display for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrontEnd::Cli => "katachi start",
            FrontEnd::App => "Katachi app",
        })
    }
}

/// Who holds the lock: what the info file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The holder's process id.
    pub pid: u32,
    /// When it took the lock (unix seconds).
    pub since: i64,
    /// Which front end it is.
    pub by: FrontEnd,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent runs for this user; it keeps running. Use it (`katachi status`), or stop it
    /// first.
    #[error("already running (pid {pid}, since {}, started by {by})", local_time(*since))]
    AlreadyRunning {
        /// Its process id.
        pid: u32,
        /// When it started (unix seconds).
        since: i64,
        /// Which front end runs it.
        by: FrontEnd,
    },
    /// Another process holds the lock but has not said who it is (it is starting, or it is not
    /// a katachi agent).
    #[error("already running (another process holds {})", .0.display())]
    HeldByUnknown(PathBuf),
    /// The runtime dir could not be created.
    #[error(transparent)]
    Dirs(#[from] DirsError),
    /// The lock file could not be opened or locked (permissions, a filesystem without locks).
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The info file could not be written.
    #[error(transparent)]
    Info(#[from] AtomicWriteError),
}

/// The held lock: one agent runs for this user while it lives.
#[derive(Debug)]
pub struct AgentLock {
    /// The locked file (the OS releases the lock when it is closed).
    file: File,
    /// The info file, removed on drop.
    info_path: PathBuf,
    /// What the info file says.
    info: LockInfo,
}

impl AgentLock {
    /// Takes the lock for `by`, creating the runtime dir when missing.
    ///
    /// # Errors
    /// [`LockError::AlreadyRunning`] (or [`LockError::HeldByUnknown`]) when another agent holds
    /// it; I/O failures naming the file.
    pub fn acquire(dirs: &KatachiDirs, by: FrontEnd) -> Result<Self, LockError> {
        let runtime = dirs.ensure_runtime()?;
        let lock_path = runtime.join(LOCK_FILE);
        let info_path = runtime.join(INFO_FILE);
        let lock_err = |source| LockError::Lock {
            path: lock_path.clone(),
            source,
        };
        let file = open_lock_file(&lock_path).map_err(lock_err)?;
        // a refusal is retried briefly: a probe ([`Self::holder`]) holds the lock for an instant,
        // and a holder that just started may not have written its info yet
        let deadline = std::time::Instant::now() + INFO_WAIT;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(fs4::TryLockError::WouldBlock) => {
                    if let Some(info) = read_info(&info_path) {
                        return Err(LockError::AlreadyRunning {
                            pid: info.pid,
                            since: info.since,
                            by: info.by,
                        });
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(LockError::HeldByUnknown(lock_path.clone()));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(fs4::TryLockError::Error(e)) => return Err(lock_err(e)),
            }
        }
        let info = LockInfo {
            pid: std::process::id(),
            since: now_unix(),
            by,
        };
        let json = serde_json::to_vec(&info).unwrap_or_default();
        write_private_atomically(&info_path, &json)?;
        Ok(Self {
            file,
            info_path,
            info,
        })
    }

    /// What this lock's info file says.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Who holds the lock of `dirs` now, when an agent runs. Probing takes the lock for an
    /// instant when it is free; [`Self::acquire`] retries through such a probe.
    pub fn holder(dirs: &KatachiDirs) -> Option<LockInfo> {
        let runtime = dirs.runtime_dir();
        let file = open_lock_file(&runtime.join(LOCK_FILE)).ok()?;
        match fs4::FileExt::try_lock(&file) {
            // free: nobody runs (our probe's lock ends when `file` is closed)
            Ok(()) => None,
            Err(_) => read_info(&runtime.join(INFO_FILE)),
        }
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        // the info file goes first, while the lock still guards it
        let _ = std::fs::remove_file(&self.info_path);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The info file of `dirs`, when it names this process (the lock is then ours).
pub(crate) fn read_own_info(dirs: &KatachiDirs) -> Option<LockInfo> {
    read_info(&dirs.runtime_dir().join(INFO_FILE)).filter(|i| i.pid == std::process::id())
}

fn read_info(path: &Path) -> Option<LockInfo> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `unix` seconds as a local date and time for people (`2026-12-02 20:15:03`), UTC when the
/// system time zone is unknown.
pub fn local_time(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => format!("unix time {unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, KatachiDirs) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = KatachiDirs::under(tmp.path());
        (tmp, dirs)
    }

    #[test]
    fn second_acquire_is_refused_naming_the_holder() {
        let (_tmp, dirs) = dirs();
        let first = AgentLock::acquire(&dirs, FrontEnd::App).unwrap();
        let err = AgentLock::acquire(&dirs, FrontEnd::Cli).unwrap_err();
        match &err {
            LockError::AlreadyRunning { pid, since, by } => {
                assert_eq!(*pid, std::process::id());
                assert_eq!(*since, first.info().since);
                assert_eq!(*by, FrontEnd::App);
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "already running (pid {}, since ",
                std::process::id()
            )),
            "{text}"
        );
        assert!(text.ends_with("started by Katachi app)"), "{text}");
        assert_eq!(AgentLock::holder(&dirs), Some(first.info().clone()));
    }

    #[test]
    fn lock_is_released_on_drop() {
        let (_tmp, dirs) = dirs();
        let first = AgentLock::acquire(&dirs, FrontEnd::Cli).unwrap();
        drop(first);
        assert_eq!(AgentLock::holder(&dirs), None);
        assert!(!dirs.runtime_dir().join(INFO_FILE).exists());
        let again = AgentLock::acquire(&dirs, FrontEnd::Cli).unwrap();
        assert_eq!(again.info().pid, std::process::id());
    }

    #[test]
    fn stale_info_of_a_crashed_agent_does_not_block() {
        let (_tmp, dirs) = dirs();
        let runtime = dirs.ensure_runtime().unwrap();
        // a crashed agent leaves its info file, but the OS released its lock
        let stale = LockInfo {
            pid: 999_999,
            since: 1,
            by: FrontEnd::App,
        };
        std::fs::write(runtime.join(INFO_FILE), serde_json::to_vec(&stale).unwrap()).unwrap();
        assert_eq!(AgentLock::holder(&dirs), None);
        let lock = AgentLock::acquire(&dirs, FrontEnd::Cli).unwrap();
        assert_eq!(lock.info().by, FrontEnd::Cli);
        let written: LockInfo =
            serde_json::from_slice(&std::fs::read(runtime.join(INFO_FILE)).unwrap()).unwrap();
        assert_eq!(written.pid, std::process::id());
    }

    #[test]
    fn a_holder_that_wrote_no_info_is_still_refused() {
        let (_tmp, dirs) = dirs();
        let runtime = dirs.ensure_runtime().unwrap();
        let other = open_lock_file(&runtime.join(LOCK_FILE)).unwrap();
        fs4::FileExt::try_lock(&other).unwrap();
        let err = AgentLock::acquire(&dirs, FrontEnd::Cli).unwrap_err();
        assert!(matches!(err, LockError::HeldByUnknown(_)), "{err:?}");
    }
}
