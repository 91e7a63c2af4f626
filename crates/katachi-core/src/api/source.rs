//! Where the API learns which workspace folders are allowed: asked on every call, so a folder removed
//! with `katachi workspace rm` is refused from the next call on.
//!
//! The agent uses its [`AgentHome`] (one store connection per call); tests and other crates can use
//! [`FixedWorkspaces`] over temp folders.

use std::path::Path;

use crate::protected::ProtectedPaths;
use crate::sandbox::policy::PolicyBuilder;
use crate::sandbox::{OverrideError, SandboxPolicy};
use crate::store::{Workspace, WorkspaceError};
use crate::AgentHome;

/// The allowed workspaces, as the API sees them.
///
/// Called from a blocking thread; implementations may do I/O.
pub trait WorkspaceSource: Send + Sync + 'static {
    /// The allowed workspaces now, with canonical UTF-8 paths.
    ///
    /// # Errors
    /// [`WorkspaceError`] when the list cannot be read (the API answers `store.unavailable`).
    fn allowed_workspaces(&self) -> Result<Vec<Workspace>, WorkspaceError>;

    /// The sandbox policy of a run in the allowed workspace at `root` (canonical): the workspace
    /// read-write with its stored overrides, the agent's own folders hidden. The `run` route adds
    /// its default commands and the caller's time limit. Without a store: the bare workspace.
    ///
    /// # Errors
    /// [`OverrideError`] when the stored overrides are unreadable or invalid, or the store fails.
    fn sandbox_policy(&self, root: &Path) -> Result<PolicyBuilder, OverrideError> {
        Ok(SandboxPolicy::builder().workspace(root, false))
    }

    /// The protected-path rules of the allowed workspace at `root`: taken from its sandbox policy,
    /// so file calls refuse exactly what runs cannot touch.
    ///
    /// # Errors
    /// As [`WorkspaceSource::sandbox_policy`].
    fn protected_paths(&self, root: &Path) -> Result<ProtectedPaths, OverrideError> {
        Ok(self.sandbox_policy(root)?.protected_paths())
    }
}

impl WorkspaceSource for AgentHome {
    fn allowed_workspaces(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        // One connection per call: the store's connection is not shared between threads.
        self.store()?.workspaces().list()
    }

    fn sandbox_policy(&self, root: &Path) -> Result<PolicyBuilder, OverrideError> {
        // the agent's own state is never visible, even when a workspace holds it
        SandboxPolicy::for_workspace(&self.store()?, root, &self.protected_dirs())
    }
}

/// A fixed list of workspaces, for tests and for embedding the API without a store.
#[derive(Debug, Clone, Default)]
pub struct FixedWorkspaces {
    /// The folders, with ids 1, 2, … in the order given.
    workspaces: Vec<Workspace>,
    /// Folders standing for katachi's own (hidden from runs, invisible to file calls).
    katachi_folders: Vec<std::path::PathBuf>,
}

impl FixedWorkspaces {
    /// Allows `folders` (canonicalised here; ids are their 1-based positions).
    ///
    /// # Errors
    /// [`WorkspaceError::NotFound`] or [`WorkspaceError::NotUtf8`] for a folder that cannot be allowed.
    pub fn new<P: AsRef<Path>>(
        folders: impl IntoIterator<Item = P>,
    ) -> Result<Self, WorkspaceError> {
        let mut workspaces = Vec::new();
        for (i, folder) in folders.into_iter().enumerate() {
            let folder = folder.as_ref();
            let canonical = std::fs::canonicalize(folder)
                .map_err(|_| WorkspaceError::NotFound(folder.to_path_buf()))?;
            let path = canonical
                .to_str()
                .ok_or_else(|| WorkspaceError::NotUtf8(canonical.clone()))?
                .to_owned();
            workspaces.push(Workspace {
                id: i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1),
                path,
                added_at: 0,
            });
        }
        Ok(Self {
            workspaces,
            katachi_folders: Vec::new(),
        })
    }

    /// Treats `folders` as katachi's own: hidden from runs and invisible to file calls, as the
    /// agent's data and config folders are.
    pub fn with_katachi_folders<P: AsRef<Path>>(
        mut self,
        folders: impl IntoIterator<Item = P>,
    ) -> Self {
        self.katachi_folders = folders
            .into_iter()
            .map(|f| f.as_ref().to_path_buf())
            .collect();
        self
    }
}

impl WorkspaceSource for FixedWorkspaces {
    fn allowed_workspaces(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        Ok(self.workspaces.clone())
    }

    fn sandbox_policy(&self, root: &Path) -> Result<PolicyBuilder, OverrideError> {
        let mut builder = SandboxPolicy::builder().workspace(root, false);
        for f in &self.katachi_folders {
            builder = builder.hide(f);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_workspaces_are_canonical_and_numbered_from_one() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        let src = FixedWorkspaces::new([tmp.path().join("a").join("..").join("a")]).unwrap();
        let list = src.allowed_workspaces().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, 1);
        assert_eq!(
            Path::new(&list[0].path),
            std::fs::canonicalize(tmp.path().join("a")).unwrap()
        );
    }

    #[test]
    fn a_missing_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            FixedWorkspaces::new([tmp.path().join("missing")]),
            Err(WorkspaceError::NotFound(_))
        ));
    }
}
