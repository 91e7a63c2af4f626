//! The control socket on Unix: `<runtime_dir>/control.sock`, mode `0600` in a `0700` folder, and
//! every peer's uid checked by the kernel's credentials of the connection.
//!
//! # Security
//! - File modes keep other users out, and do not have to: each accepted connection's peer uid
//!   (`SO_PEERCRED` on Linux, `getpeereid` on the BSDs and macOS, via tokio's `peer_cred`) must be
//!   this process's effective uid. Any other uid gets one `control.forbidden` line and is closed;
//!   when the credentials cannot be read the connection is refused too (fail closed).
//! - The socket is bound under a temporary name, made `0600`, then renamed over `control.sock`:
//!   there is no moment when the path is missing or the socket wider, and a stale socket left by
//!   a crashed agent is replaced. A socket where a live agent answers is never replaced.
//! - On drop the socket file is removed only if it is still the one this server bound.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::error::ControlError;
use super::protocol::codes;
use super::session::{refuse, serve, Shared};
use crate::dirs::KatachiDirs;

/// The socket's file name in the runtime dir.
const SOCKET: &str = "control.sock";
/// The longest socket path `sockaddr_un` holds on every Unix (104 bytes on macOS), NUL included.
const MAX_SOCKET_PATH: usize = 103;

/// The control socket's path for `dirs`.
pub(crate) fn socket_path(dirs: &KatachiDirs) -> PathBuf {
    dirs.runtime_dir().join(SOCKET)
}

/// A bound control socket.
pub(crate) struct Listening {
    /// The socket's path.
    pub(crate) path: PathBuf,
    /// The accept loop (aborting it ends every connection).
    pub(crate) task: JoinHandle<()>,
    /// The bound socket file's (device, inode), to remove only our own on drop.
    identity: (u64, u64),
}

impl Listening {
    /// Removes the socket file if it is still ours.
    pub(crate) fn remove_socket(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the control socket of `dirs` and starts accepting on the current runtime.
pub(crate) fn listen(
    dirs: &KatachiDirs,
    shared: Arc<Shared>,
    slots: usize,
) -> Result<Listening, ControlError> {
    let runtime = dirs.ensure_runtime()?;
    check_private(runtime)?;
    let path = runtime.join(SOCKET);
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(ControlError::PathTooLong(path));
    }
    let serve_err = |source| ControlError::Serve {
        path: path.clone(),
        source,
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        // a live agent answers there: never take its socket
        Ok(_) => return Err(ControlError::AlreadyServing(path)),
        // none yet, or a stale socket of an agent that is gone: replaced below
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {}
        Err(e) => return Err(serve_err(e)),
    }
    let tmp = runtime.join(format!(".control-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(serve_err)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .and_then(|()| std::fs::symlink_metadata(&path));
    let meta = match placed {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(serve_err(e));
        }
    };
    let task = tokio::spawn(accept_loop(listener, shared, slots));
    Ok(Listening {
        path,
        task,
        identity: (meta.dev(), meta.ino()),
    })
}

/// Connects to the control socket of `dirs`; `None` when no agent answers there.
pub(crate) async fn connect(dirs: &KatachiDirs) -> Result<Option<UnixStream>, ControlError> {
    let path = socket_path(dirs);
    match UnixStream::connect(&path).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            Ok(None)
        }
        Err(source) => Err(ControlError::Connect { path, source }),
    }
}

/// The runtime dir must be this user's and closed to others.
fn check_private(dir: &Path) -> Result<(), ControlError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|source| ControlError::Serve {
        path: dir.to_path_buf(),
        source,
    })?;
    let euid = rustix::process::geteuid().as_raw();
    let detail = if !meta.is_dir() {
        Some("not a folder".to_owned())
    } else if meta.uid() != euid {
        Some(format!("owned by uid {}, not {euid}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("mode {:o}", meta.mode() & 0o777))
    } else {
        None
    };
    match detail {
        Some(detail) => Err(ControlError::RuntimeDirNotPrivate {
            path: dir.to_path_buf(),
            detail,
        }),
        None => Ok(()),
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, slots: usize) {
    let slots = Arc::new(Semaphore::new(slots));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(admit(stream, Arc::clone(&shared), Arc::clone(&slots)));
                }
                Err(e) => {
                    // out of descriptors and the like: wait instead of spinning
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Checks the peer, takes a slot, and serves the connection.
async fn admit(stream: UnixStream, shared: Arc<Shared>, slots: Arc<Semaphore>) {
    let euid = rustix::process::geteuid().as_raw();
    // the kernel's word on who connected; unreadable credentials are refused (fail closed)
    let peer = stream.peer_cred().map(|c| c.uid());
    match peer {
        Ok(uid) if uid == euid => {}
        Ok(uid) => {
            tracing::warn!("control socket: refused a connection from uid {uid}");
            let message = format!("the agent serves only its own user (uid {euid}), not uid {uid}");
            refuse(stream, codes::FORBIDDEN, &message).await;
            return;
        }
        Err(e) => {
            tracing::warn!("control socket: refused a connection whose peer is unknown: {e}");
            refuse(
                stream,
                codes::FORBIDDEN,
                "the connecting process's user cannot be verified",
            )
            .await;
            return;
        }
    }
    let Ok(_slot) = slots.try_acquire_owned() else {
        refuse(
            stream,
            codes::BUSY,
            "too many clients are connected to the agent; try again",
        )
        .await;
        return;
    };
    serve(stream, shared).await;
}
