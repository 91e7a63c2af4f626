//! Git confinement: a repository is read only when everything libgit2 would read from it lies
//! inside an allowed workspace.
//!
//! A workspace can hold files that send libgit2 elsewhere: a `.git` **file** (`gitdir: /other/.git`),
//! a `commondir` file, an `objects/info/alternates` list (whose stores can list more), a symlinked
//! `objects` folder or pack, an `index` symlink, or `core.worktree`. Any of them would put another
//! repository's content (a secret committed elsewhere) into a status or diff answer. Before any
//! object is read, [`check_repository_is_confined`] resolves each of those routes canonically and
//! refuses the repository (`git.outside_workspace`, naming the route) when one leaves every allowed
//! workspace.
//!
//! # What libgit2 is not allowed to read
//! The repository is opened without `GIT_DIR`-style environment variables (no
//! `RepositoryOpenFlags::FROM_ENV`: `GIT_DIR`, `GIT_OBJECT_DIRECTORY`,
//! `GIT_ALTERNATE_OBJECT_DIRECTORIES`, `GIT_COMMON_DIR` are ignored). Configuration files (system,
//! global, `include.path`) are read, but a value can only move the work tree, which is checked here
//! after the whole configuration is loaded.
//!
//! # Not covered
//! Hard links inside the object store (as `git clone --local` makes) are allowed: a sandboxed run
//! cannot create a hard link to a file outside its workspace (Landlock's `REFER` rule).

use std::path::{Path, PathBuf};

use git2::Repository;

use super::error::{ApiError, ApiResult, ErrorCode};

/// How deep alternates may chain (libgit2 follows five levels).
const MAX_ALTERNATE_DEPTH: usize = 5;

/// Most entries of an object store examined for symlinks (a loose-object-heavy repository is
/// refused past it rather than scanned for ever).
const MAX_OBJECT_ENTRIES: usize = 200_000;

/// The way a repository would lead libgit2 outside the allowed workspaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitRoute {
    /// The git dir itself (a `.git` file's `gitdir:`, or a repository above the workspace).
    GitDir,
    /// The `commondir` file of a linked work tree.
    CommonDir,
    /// The object store (`objects` a symlink, or a symlink inside it).
    Objects,
    /// An alternate object store (`objects/info/alternates`).
    Alternates,
    /// The index file.
    Index,
    /// The work tree (`core.worktree`).
    Worktree,
}

impl GitRoute {
    /// The route's name in messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::GitDir => "gitdir",
            Self::CommonDir => "commondir",
            Self::Objects => "objects",
            Self::Alternates => "alternates",
            Self::Index => "index",
            Self::Worktree => "worktree",
        }
    }
}

/// `git.outside_workspace` for `route`. The outside path is not named (it is whatever a hostile
/// file said, and may be a private path of the user's).
pub(crate) fn outside(route: GitRoute) -> ApiError {
    let why = match route {
        GitRoute::GitDir => "its git folder is outside the allowed workspaces (a `.git` file's `gitdir:`, or a repository around the workspace); add the repository's own folder as a workspace to see it",
        GitRoute::CommonDir => "its `commondir` leads outside the allowed workspaces",
        GitRoute::Objects => "its object store is, or holds, a symlink",
        GitRoute::Alternates => "an alternate object store (`objects/info/alternates`) is outside the allowed workspaces",
        GitRoute::Index => "its index file is outside the allowed workspaces",
        GitRoute::Worktree => "its work tree (`core.worktree`) is outside the allowed workspaces",
    };
    ApiError::new(
        ErrorCode::GitOutsideWorkspace,
        format!("git refused this repository ({}): {why}", route.as_str()),
    )
}

/// Checks that the git dir, the common dir, the object store, every alternate (recursively), the
/// index and the work tree of `repo` resolve inside one of `allowed` (canonical roots).
///
/// # Errors
/// `git.outside_workspace` naming the first route that leaves them.
pub(crate) fn check_repository_is_confined(
    repo: &Repository,
    allowed: &[PathBuf],
) -> ApiResult<()> {
    let inside = |p: &Path| allowed.iter().any(|root| p.starts_with(root));
    let canonical_inside = |p: &Path, route: GitRoute| -> ApiResult<PathBuf> {
        match std::fs::canonicalize(p) {
            Ok(c) if inside(&c) => Ok(c),
            _ => Err(outside(route)),
        }
    };
    canonical_inside(repo.path(), GitRoute::GitDir)?;
    let common = canonical_inside(repo.commondir(), GitRoute::CommonDir)?;
    let objects = canonical_inside(&common.join("objects"), GitRoute::Objects)?;
    // the object store must be what its name says: no symlink in it, nor a symlinked store
    if objects != common.join("objects") {
        return Err(outside(GitRoute::Objects));
    }
    refuse_symlinks_in_store(&objects)?;
    check_alternates(&objects, &canonical_inside, 0)?;
    let index = repo.path().join("index");
    if std::fs::symlink_metadata(&index).is_ok() {
        canonical_inside(&index, GitRoute::Index)?;
    }
    if let Some(workdir) = repo.workdir() {
        canonical_inside(workdir, GitRoute::Worktree)?;
    }
    Ok(())
}

/// Follows `objects/info/alternates` from the store `objects`, each entry (absolute, or relative to
/// the store) required inside an allowed workspace, symlink-free, and followed in turn.
fn check_alternates(
    objects: &Path,
    canonical_inside: &dyn Fn(&Path, GitRoute) -> ApiResult<PathBuf>,
    depth: usize,
) -> ApiResult<()> {
    let list = objects.join("info").join("alternates");
    let text = match std::fs::read(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // an unreadable list: libgit2 might read it later, so it is refused
        Err(_) => return Err(outside(GitRoute::Alternates)),
    };
    for line in text.split(|&b| b == b'\n') {
        let line = trim_ascii(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if depth >= MAX_ALTERNATE_DEPTH {
            return Err(outside(GitRoute::Alternates));
        }
        let Ok(entry) = std::str::from_utf8(line) else {
            return Err(outside(GitRoute::Alternates));
        };
        let store = canonical_inside(&objects.join(entry), GitRoute::Alternates)?;
        refuse_symlinks_in_store(&store)?;
        check_alternates(&store, canonical_inside, depth + 1)?;
    }
    Ok(())
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Refuses an object store with a symlink anywhere in it (git never makes one; a planted symlink
/// to another repository's pack would be read as this one's objects).
fn refuse_symlinks_in_store(store: &Path) -> ApiResult<()> {
    let mut stack = vec![(store.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|_| outside(GitRoute::Objects))?;
        for entry in entries {
            let entry = entry.map_err(|_| outside(GitRoute::Objects))?;
            seen += 1;
            if seen > MAX_OBJECT_ENTRIES {
                return Err(ApiError::new(
                    ErrorCode::GitFailed,
                    "the repository has too many loose objects to check; run `git gc` in it",
                ));
            }
            let ft = entry.file_type().map_err(|_| outside(GitRoute::Objects))?;
            if ft.is_symlink() {
                return Err(outside(GitRoute::Objects));
            }
            // objects/xx/…, objects/pack/…, objects/info/…: two levels hold everything git writes
            if ft.is_dir() && depth < 2 {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(())
}
