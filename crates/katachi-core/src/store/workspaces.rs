//! The allowed workspace folders: the only places the agent reads or writes code.
//!
//! Paths are canonicalised (absolute, symlinks resolved) before they are stored or compared, and must
//! be existing directories with UTF-8 names. Nesting is kept flat: a folder inside an allowed one is
//! already covered, and allowing a parent folder absorbs the allowed folders inside it.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now_unix, StoreError};

/// Why a folder cannot be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The path does not exist (or a symlink on it is dangling).
    #[error("{0} does not exist; check the path")]
    NotFound(PathBuf),
    /// The path exists but is a file, socket or device.
    #[error("{0} is not a directory; add the folder that contains your code")]
    NotADirectory(PathBuf),
    /// The path could not be examined (permissions).
    #[error("cannot examine {path}: {source}")]
    Inaccessible {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Non-UTF-8 names cannot travel through the structured API.
    #[error("{0:?} is not valid UTF-8; rename the folder to a UTF-8 name")]
    NotUtf8(PathBuf),
    /// The filesystem root would allow the whole machine.
    #[error("refusing to allow the filesystem root {0}: allow the folders that contain your code")]
    FilesystemRoot(PathBuf),
    /// The folder is (or is inside) katachi's own data or config: credentials must stay out of reach.
    #[error("{path} is inside katachi's own folder {protected}, which holds its credentials; choose a folder with your code")]
    Protected {
        /// The path asked for.
        path: PathBuf,
        /// The katachi folder it falls in.
        protected: PathBuf,
    },
    /// Removing a folder that is not allowed.
    #[error("{0} is not an allowed workspace; `katachi workspace ls` lists them")]
    NotAllowed(PathBuf),
    /// A relative path given for removal of a folder that no longer exists.
    #[error("{0} is relative and does not exist; give the absolute path shown by `katachi workspace ls`")]
    Relative(PathBuf),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for WorkspaceError {
    fn from(e: rusqlite::Error) -> Self {
        WorkspaceError::Store(e.into())
    }
}

/// An allowed workspace folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Stable id (chat sessions and memory refer to it).
    pub id: i64,
    /// Canonical absolute path.
    pub path: String,
    /// When it was added (Unix seconds).
    pub added_at: i64,
}

/// What [`AllowedWorkspaces::add`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AddOutcome {
    /// Newly allowed.
    Added {
        /// The new workspace.
        workspace: Workspace,
        /// Allowed folders inside it that it replaced (now covered by it).
        absorbed: Vec<Workspace>,
    },
    /// Exactly this folder was already allowed.
    AlreadyAllowed {
        /// The existing workspace.
        workspace: Workspace,
    },
    /// The folder is inside an allowed workspace, which already covers it; nothing changed.
    CoveredBy {
        /// The allowed workspace that contains it.
        workspace: Workspace,
    },
}

/// The allowed workspace folders in the store.
pub struct AllowedWorkspaces<'c> {
    /// The store's connection.
    conn: &'c Connection,
}

impl<'c> AllowedWorkspaces<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    /// Allows `path`. `protected` are folders that must never become workspaces (katachi's own
    /// data and config).
    ///
    /// # Errors
    /// [`WorkspaceError`] naming what is wrong with the path.
    pub fn add(&self, path: &Path, protected: &[PathBuf]) -> Result<AddOutcome, WorkspaceError> {
        let canonical = canonical_dir(path)?;
        if canonical.parent().is_none() {
            return Err(WorkspaceError::FilesystemRoot(canonical));
        }
        for p in protected {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if canonical.starts_with(&p) {
                return Err(WorkspaceError::Protected {
                    path: canonical,
                    protected: p,
                });
            }
        }
        let text = canonical
            .to_str()
            .ok_or_else(|| WorkspaceError::NotUtf8(canonical.clone()))?;
        // One transaction: the check for nesting and the insert see the same list, even when
        // another process adds a folder at the same moment.
        let tx = rusqlite::Transaction::new_unchecked(
            self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let existing = list_on(&tx)?;
        if let Some(same) = existing.iter().find(|w| w.path == text) {
            return Ok(AddOutcome::AlreadyAllowed {
                workspace: same.clone(),
            });
        }
        if let Some(parent) = existing.iter().find(|w| canonical.starts_with(&w.path)) {
            return Ok(AddOutcome::CoveredBy {
                workspace: parent.clone(),
            });
        }
        let absorbed: Vec<Workspace> = existing
            .into_iter()
            .filter(|w| Path::new(&w.path).starts_with(&canonical))
            .collect();
        for w in &absorbed {
            tx.execute(
                "DELETE FROM allowed_workspaces WHERE id = ?1",
                params![w.id],
            )?;
        }
        let added_at = now_unix();
        tx.execute(
            "INSERT INTO allowed_workspaces (path, added_at) VALUES (?1, ?2)",
            params![text, added_at],
        )?;
        let workspace = Workspace {
            id: tx.last_insert_rowid(),
            path: text.to_owned(),
            added_at,
        };
        tx.commit()?;
        Ok(AddOutcome::Added {
            workspace,
            absorbed,
        })
    }

    /// Stops allowing `path`. A folder that no longer exists is removed by its absolute path.
    ///
    /// # Errors
    /// [`WorkspaceError::NotAllowed`] when it is not in the list.
    pub fn remove(&self, path: &Path) -> Result<Workspace, WorkspaceError> {
        let key = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(_) if path.is_absolute() => normalise_lexically(path),
            Err(_) => return Err(WorkspaceError::Relative(path.to_path_buf())),
        };
        let text = key
            .to_str()
            .ok_or_else(|| WorkspaceError::NotUtf8(key.clone()))?;
        let found = self
            .conn
            .query_row(
                "SELECT id, path, added_at FROM allowed_workspaces WHERE path = ?1",
                params![text],
                row_to_workspace,
            )
            .optional()?
            .ok_or_else(|| WorkspaceError::NotAllowed(key.clone()))?;
        self.conn.execute(
            "DELETE FROM allowed_workspaces WHERE id = ?1",
            params![found.id],
        )?;
        Ok(found)
    }

    /// The allowed workspaces, sorted by path.
    ///
    /// # Errors
    /// [`WorkspaceError::Store`].
    pub fn list(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        Ok(list_on(self.conn)?)
    }

    /// The allowed workspace that contains `path` (already canonical), if any.
    ///
    /// # Errors
    /// [`WorkspaceError::Store`].
    pub fn containing(&self, canonical: &Path) -> Result<Option<Workspace>, WorkspaceError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|w| canonical.starts_with(&w.path)))
    }
}

fn list_on(conn: &Connection) -> rusqlite::Result<Vec<Workspace>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, path, added_at FROM allowed_workspaces ORDER BY path")?;
    let rows = stmt.query_map([], row_to_workspace)?;
    rows.collect()
}

fn row_to_workspace(r: &rusqlite::Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: r.get(0)?,
        path: r.get(1)?,
        added_at: r.get(2)?,
    })
}

fn canonical_dir(path: &Path) -> Result<PathBuf, WorkspaceError> {
    let canonical = std::fs::canonicalize(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => WorkspaceError::NotFound(path.to_path_buf()),
        std::io::ErrorKind::NotADirectory => WorkspaceError::NotFound(path.to_path_buf()),
        _ => WorkspaceError::Inaccessible {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let meta = std::fs::metadata(&canonical).map_err(|source| WorkspaceError::Inaccessible {
        path: canonical.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(WorkspaceError::NotADirectory(canonical));
    }
    Ok(canonical)
}

/// Removes `.` and resolves `..` without touching the filesystem (for folders that are gone).
fn normalise_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
