//! The running agent's status, as a small JSON file other processes read (`katachi status`, the
//! tray): connection state, relay, agent id, last heartbeat, clock offset, and the tunnel's
//! [`TunnelStatus`].
//!
//! Two writers of one process share the file: the relay session writes whole snapshots
//! ([`StatusFile::write`]), the tunnel loop only its section ([`StatusFile::write_tunnel`]). A
//! snapshot without a tunnel section keeps the one already in the file when that file was written
//! by this same process, so neither writer erases the other's news; one written by an earlier
//! process is not carried over.
//!
//! # Guarantees
//! - Written atomically ([`crate::atomic_file`]): a reader sees the previous or the new status,
//!   never a torn one; mode `0600`.
//! - Holds no secret: no token, no signing secret, no user code.
//! - Records the writer's pid, so a reader can tell a status left behind by a crashed agent
//!   ([`AgentStatus::writer_is_running`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::atomic_file::{write_private_atomically, AtomicWriteError};
use crate::tunnel::TunnelStatus;

/// Serialises read-modify-write of status files within this process (the two writers).
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Where the agent stands with its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Started; no heartbeat acknowledged yet.
    Connecting,
    /// The last heartbeat was acknowledged.
    Online,
    /// Was online; the relay stopped answering, retrying.
    Reconnecting,
    /// Not registered, or the relay revoked / forgot the agent: run the device flow again.
    NeedsSignIn,
    /// The relay refuses the agent's calls for a reason retrying may not fix (see `reason`).
    Error,
    /// The agent stopped cleanly (or, when read back, its process is gone).
    Stopped,
}

impl ConnectionState {
    /// The word shown to people (`needs sign-in`, …).
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Online => "online",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::NeedsSignIn => "needs sign-in",
            ConnectionState::Error => "error",
            ConnectionState::Stopped => "stopped",
        }
    }
}

/// One snapshot of the running agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Connection state.
    pub state: ConnectionState,
    /// Why it is in that state, for people (`None` when online).
    pub reason: Option<String>,
    /// The relay it talks to.
    pub relay_url: Option<String>,
    /// Its id there.
    pub agent_id: Option<String>,
    /// When the relay last acknowledged a heartbeat (unix seconds).
    pub last_heartbeat_at: Option<i64>,
    /// Relay clock minus local clock, learnt from the relay's `Date` header.
    pub clock_offset_secs: i64,
    /// Activity events waiting for the relay.
    pub pending_events: u64,
    /// The agent process that wrote this.
    pub pid: u32,
    /// When this snapshot was written (unix seconds, local clock).
    pub updated_at: i64,
    /// The tunnel to the relay, when the agent serves one (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelStatus>,
}

impl AgentStatus {
    /// A fresh status of this process in `state`.
    pub fn new(state: ConnectionState) -> Self {
        Self {
            state,
            reason: None,
            relay_url: None,
            agent_id: None,
            last_heartbeat_at: None,
            clock_offset_secs: 0,
            pending_events: 0,
            pid: std::process::id(),
            updated_at: crate::store::now_unix(),
            tunnel: None,
        }
    }

    /// True while the process that wrote this status still runs: a status left behind by a killed
    /// agent ("online" forever) is not to be believed.
    pub fn writer_is_running(&self) -> bool {
        process_is_running(self.pid)
    }
}

/// Why the status file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a status this katachi understands (written by another version); it is
    /// replaced the next time the agent runs.
    #[error("{path} is not a valid agent status: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file could not be written; the previous status is intact.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// The status file of one agent home ([`crate::KatachiDirs::agent_status_path`]).
#[derive(Debug, Clone)]
pub struct StatusFile {
    /// Where it lives.
    path: PathBuf,
}

impl StatusFile {
    /// The status file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the status atomically.
    ///
    /// # Errors
    /// [`StatusFileError::Write`]; the previous status is intact.
    pub fn write(&self, status: &AgentStatus) -> Result<(), StatusFileError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = status.clone();
        if status.tunnel.is_none() {
            // Keep the tunnel section this process wrote (see the module doc).
            status.tunnel = self
                .read()
                .ok()
                .flatten()
                .filter(|old| old.pid == status.pid)
                .and_then(|old| old.tunnel);
        }
        self.replace(&status)
    }

    /// Records the tunnel's status, keeping the rest of what this process wrote (a fresh
    /// `connecting` status when the file is missing or another process's).
    ///
    /// # Errors
    /// [`StatusFileError::Write`]; the previous status is intact.
    pub fn write_tunnel(&self, tunnel: &TunnelStatus) -> Result<(), StatusFileError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = self
            .read()
            .ok()
            .flatten()
            .filter(|old| old.pid == std::process::id())
            .unwrap_or_else(|| AgentStatus::new(ConnectionState::Connecting));
        status.tunnel = Some(tunnel.clone());
        status.updated_at = crate::store::now_unix();
        self.replace(&status)
    }

    /// Writes `status` as it is.
    fn replace(&self, status: &AgentStatus) -> Result<(), StatusFileError> {
        // Plain strings and integers: encoding cannot fail.
        let json = serde_json::to_vec_pretty(status).unwrap_or_default();
        write_private_atomically(&self.path, &json)?;
        Ok(())
    }

    /// The last status written; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`StatusFileError::Read`] or [`StatusFileError::Malformed`].
    pub fn read(&self) -> Result<Option<AgentStatus>, StatusFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StatusFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StatusFileError::Malformed {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Removes the file (after unregistering); `Ok(())` when it was not there.
    ///
    /// # Errors
    /// [`StatusFileError::Read`] when the OS refuses.
    pub fn remove(&self) -> Result<(), StatusFileError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StatusFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// True when a process with this pid exists.
fn process_is_running(pid: u32) -> bool {
    let pid = sysinfo::Pid::from_u32(pid);
    let mut system = sysinfo::System::new();
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    system.process(pid).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StatusFile::new(tmp.path().join("agent-status.json"));
        assert_eq!(file.read().unwrap(), None);
        let mut s = AgentStatus::new(ConnectionState::Online);
        s.relay_url = Some("https://relay.example".into());
        s.agent_id = Some("agt_1".into());
        s.last_heartbeat_at = Some(1_700_000_000);
        s.clock_offset_secs = -42;
        file.write(&s).unwrap();
        assert_eq!(file.read().unwrap(), Some(s));
        file.remove().unwrap();
        file.remove().unwrap();
        assert_eq!(file.read().unwrap(), None);
    }

    #[test]
    fn the_tunnel_section_survives_session_snapshots_of_the_same_process_only() {
        let tmp = tempfile::tempdir().unwrap();
        let file = StatusFile::new(tmp.path().join("agent-status.json"));
        let mut session = AgentStatus::new(ConnectionState::Online);
        session.agent_id = Some("agt_1".into());
        file.write(&session).unwrap();
        let up = TunnelStatus::Connected {
            since: 1_700_000_000,
            carrier: Default::default(),
        };
        file.write_tunnel(&up).unwrap();
        let read = file.read().unwrap().unwrap();
        assert_eq!(read.tunnel.as_ref(), Some(&up));
        assert_eq!(
            read.agent_id.as_deref(),
            Some("agt_1"),
            "session fields kept"
        );

        // The session writes a new snapshot (no tunnel section): the tunnel's news stays.
        session.state = ConnectionState::Reconnecting;
        file.write(&session).unwrap();
        let read = file.read().unwrap().unwrap();
        assert_eq!(read.state, ConnectionState::Reconnecting);
        assert_eq!(read.tunnel, Some(up));

        // A new process starting does not inherit the old tunnel status.
        let mut next_process = AgentStatus::new(ConnectionState::Connecting);
        next_process.pid = std::process::id().wrapping_add(1);
        file.write(&next_process).unwrap();
        assert_eq!(file.read().unwrap().unwrap().tunnel, None);
    }

    #[test]
    fn a_status_file_without_a_tunnel_section_still_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent-status.json");
        let mut old = serde_json::to_value(AgentStatus::new(ConnectionState::Online)).unwrap();
        old.as_object_mut().unwrap().remove("tunnel");
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(StatusFile::new(&path).read().unwrap().unwrap().tunnel, None);
    }

    #[test]
    fn states_serialise_as_stable_words() {
        let json = serde_json::to_string(&ConnectionState::NeedsSignIn).unwrap();
        assert_eq!(json, "\"needs_sign_in\"");
        assert_eq!(ConnectionState::NeedsSignIn.label(), "needs sign-in");
    }

    #[test]
    fn a_status_of_a_gone_process_is_recognised() {
        assert!(AgentStatus::new(ConnectionState::Online).writer_is_running());
        let mut gone = AgentStatus::new(ConnectionState::Online);
        gone.pid = u32::MAX - 7;
        assert!(!gone.writer_is_running());
    }

    #[test]
    fn a_malformed_file_is_reported_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent-status.json");
        std::fs::write(&path, b"{\"state\":\"dancing\"}").unwrap();
        assert!(matches!(
            StatusFile::new(&path).read(),
            Err(StatusFileError::Malformed { .. })
        ));
    }
}
