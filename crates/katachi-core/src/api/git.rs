//! `GET /v1/workspaces/{id}/git/status` and `/git/diff`: the repository state of a workspace folder,
//! read with libgit2 (`git2`, vendored, no network features).
//!
//! libgit2 runs no hooks, no `core.fsmonitor` command and no clean/smudge filter programs, so a
//! hostile repository cannot make these calls execute anything. Paths are confined to the
//! workspace: the repository is found from the requested folder (it may be the workspace, inside
//! it, or contain it), libgit2 is given the folder as a literal pathspec, and every path it returns
//! is mapped back under the workspace root (others are dropped). A repository is read only when its
//! git dir, common dir, object stores (alternates included), index and work tree all lie inside
//! allowed workspaces ([`super::git_confine`]); otherwise `git.outside_workspace` names the route.
//! A diff withholds the content of hard-linked work-tree files and of protected `.env*` files, and
//! status and diff leave out katachi's own folders, as reads do ([`super::paths`]).

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::Json;
use git2::{DiffOptions, Repository, RepositoryOpenFlags, StatusOptions};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::checked_open::link_count;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::git_change::{delta_change, staged_change, unstaged_change};
use super::git_confine::{check_repository_is_confined, outside, GitRoute};
use super::paths::{QueryPath, RelPath, WorkspaceRoot};
use super::{ApiQuery, ApiState, WorkspaceId};
use crate::protected::{ProtectedPaths, ProtectedRule};

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GitChange {
    /// New.
    Added,
    /// Content changed.
    Modified,
    /// Removed.
    Deleted,
    /// Moved (with similar content).
    Renamed,
    /// Copied.
    Copied,
    /// File ↔ symlink ↔ submodule.
    Typechange,
    /// Not tracked by git.
    Untracked,
    /// Merge conflict.
    Conflicted,
}

/// The status of one path.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GitStatusEntry {
    /// Workspace-relative path (`/` at the end for an untracked folder).
    pub path: String,
    /// Change staged in the index (HEAD → index).
    pub staged: Option<GitChange>,
    /// Change in the work tree not staged (index → work tree).
    pub unstaged: Option<GitChange>,
}

/// The status of a repository, limited to the workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GitStatus {
    /// Workspace-relative path of the repository's work tree; `null` when it contains the workspace.
    pub repository: Option<String>,
    /// The checked-out branch; `null` when HEAD is detached or unborn.
    pub branch: Option<String>,
    /// The commit HEAD points at (hex); `null` in a repository without commits.
    pub head: Option<String>,
    /// Changed, untracked and conflicted paths, sorted.
    pub entries: Vec<GitStatusEntry>,
    /// Whether entries were left out (the agent's cap).
    pub truncated: bool,
}

/// Which two states a diff compares.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffMode {
    /// HEAD → work tree, staged or not (`git diff HEAD`).
    #[default]
    Head,
    /// Index → work tree, what is not staged (`git diff`).
    Worktree,
    /// HEAD → index, what is staged (`git diff --cached`).
    Staged,
}

/// Query parameters of a diff (besides `path`, the folder or file to diff, default the root).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DiffParams {
    /// What to compare (default `head`).
    #[serde(default)]
    mode: DiffMode,
    /// Also show untracked files as added (not in `staged` mode).
    #[serde(default)]
    include_untracked: bool,
    /// Lines of context around changes (default 3, at most 100).
    context: Option<u32>,
}

/// One file of a diff.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiffFile {
    /// Workspace-relative path (the new one for renames).
    pub path: String,
    /// The old path when renamed or copied.
    pub old_path: Option<String>,
    /// How it changed.
    pub change: GitChange,
    /// Whether git sees either side as binary (the patch then has no lines).
    pub binary: bool,
    /// Unified diff text (`diff --git …`); empty when binary or withheld.
    pub patch: String,
    /// The content was withheld: the work-tree file is hard-linked (it may be outside content), or
    /// it is a protected `.env*` file the workspace does not allow.
    pub withheld: bool,
}

/// A diff, limited to the workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GitDiff {
    /// Changed files in path order.
    pub files: Vec<DiffFile>,
    /// Whether files were left out (the agent's cap on patch bytes).
    pub truncated: bool,
}

/// The git status of the repository holding a workspace folder.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/git/status",
    tag = "git",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = Option<String>, Query, description = "Folder whose repository to report, relative to the workspace root (default: the root)"),
    ),
    responses(
        (status = 200, description = "The status", body = GitStatus),
        (status = 403, description = "`git.outside_workspace`: the repository would read outside the allowed workspaces", body = super::ErrorBody),
        (status = 404, description = "`git.not_a_repository`, `workspace.not_found`, `path.not_found`", body = super::ErrorBody),
        (status = 500, description = "`git.failed`", body = super::ErrorBody),
    )
)]
pub(crate) async fn git_status(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
) -> ApiResult<Json<GitStatus>> {
    let rel = path.or_root();
    let status = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            let allowed = s.allowed_roots()?;
            status_of(&ws, &allowed, &rel, s.limits().git_max_entries)
        })
        .await?;
    Ok(Json(status))
}

/// A diff of a workspace folder or file.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/git/diff",
    tag = "git",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = Option<String>, Query, description = "Folder or file to diff, relative to the workspace root (default: the root)"),
        DiffParams,
    ),
    responses(
        (status = 200, description = "The diff", body = GitDiff),
        (status = 403, description = "`git.outside_workspace`: the repository would read outside the allowed workspaces", body = super::ErrorBody),
        (status = 404, description = "`git.not_a_repository`, `workspace.not_found`, `path.not_found`", body = super::ErrorBody),
        (status = 500, description = "`git.failed`", body = super::ErrorBody),
    )
)]
pub(crate) async fn git_diff(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
    ApiQuery(params): ApiQuery<DiffParams>,
) -> ApiResult<Json<GitDiff>> {
    let rel = path.or_root();
    let diff = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            let allowed = s.allowed_roots()?;
            diff_of(&ws, &allowed, &rel, &params, s.limits().git_max_patch_bytes)
        })
        .await?;
    Ok(Json(diff))
}

/// A repository opened for a workspace folder, with the mapping between its paths and the workspace's.
struct ScopedRepo {
    /// The repository.
    repo: Repository,
    /// Its work tree, canonical.
    workdir: PathBuf,
    /// The workspace root.
    root: PathBuf,
    /// The requested folder or file relative to the work tree (`/`-separated; empty = all).
    pathspec: String,
    /// The workspace's protected-path rules: katachi's folders are left out, `.env*` withheld.
    protected: ProtectedPaths,
}

impl ScopedRepo {
    /// Opens the repository holding `rel`, refusing one that would read outside `allowed`.
    fn open(ws: &WorkspaceRoot, allowed: &[PathBuf], rel: &RelPath) -> ApiResult<Self> {
        let start = ws.resolve(rel)?;
        let start_dir = if start.meta.is_dir() {
            start.abs.clone()
        } else {
            start
                .abs
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let not_a_repo = || {
            ApiError::new(
                ErrorCode::GitNotARepository,
                if rel.is_root() {
                    "this workspace is not a git repository".to_owned()
                } else {
                    format!(
                        "{:?} is not inside a git repository in this workspace",
                        rel.as_str()
                    )
                },
            )
        };
        // no FROM_ENV: `GIT_DIR`, `GIT_COMMON_DIR`, `GIT_OBJECT_DIRECTORY`, … cannot redirect it
        let repo = Repository::open_ext(&start_dir, RepositoryOpenFlags::empty(), &[] as &[&Path])
            .map_err(|e| {
                if e.code() == git2::ErrorCode::NotFound {
                    not_a_repo()
                } else {
                    git_failed(&e)
                }
            })?;
        // refuse a repository that reads another one (`.git` file, commondir, alternates, …)
        // before any object is loaded: its content would appear in the answer
        check_repository_is_confined(&repo, allowed)?;
        let workdir = repo
            .workdir()
            .and_then(|w| std::fs::canonicalize(w).ok())
            .ok_or_else(not_a_repo)?;
        // refuse a work tree elsewhere (core.worktree): it would read files outside the workspace
        if !workdir.starts_with(&ws.root) && !ws.root.starts_with(&workdir) {
            return Err(outside(GitRoute::Worktree));
        }
        let pathspec = start
            .abs
            .strip_prefix(&workdir)
            .ok()
            .and_then(Path::to_str)
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
            .ok_or_else(not_a_repo)?;
        Ok(Self {
            repo,
            workdir,
            root: ws.root.clone(),
            pathspec,
            protected: ws.protected.clone(),
        })
    }

    /// A repository path as a workspace-relative path; `None` when outside the workspace.
    fn to_workspace(&self, repo_path: &str) -> Option<String> {
        let trailing = if repo_path.ends_with('/') { "/" } else { "" };
        let abs = self.workdir.join(repo_path);
        let rel = abs.strip_prefix(&self.root).ok()?.to_str()?;
        if rel.is_empty() {
            return None;
        }
        Some(format!(
            "{}{trailing}",
            rel.replace(std::path::MAIN_SEPARATOR, "/")
        ))
    }

    /// The read rule protecting the repository path `repo_path` (a file as git reports it).
    fn read_rule(&self, repo_path: &str) -> Option<ProtectedRule> {
        let abs = self.workdir.join(repo_path.trim_end_matches('/'));
        self.protected.read_rule(&[repo_path], &abs, true)
    }

    fn head(&self) -> (Option<String>, Option<String>) {
        match self.repo.head() {
            Ok(h) => (
                h.is_branch()
                    .then(|| h.shorthand().ok().map(str::to_owned))
                    .flatten(),
                h.target().map(|oid| oid.to_string()),
            ),
            Err(_) => (None, None),
        }
    }
}

fn status_of(
    ws: &WorkspaceRoot,
    allowed: &[PathBuf],
    rel: &RelPath,
    cap: usize,
) -> ApiResult<GitStatus> {
    let scoped = ScopedRepo::open(ws, allowed, rel)?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true)
        .renames_head_to_index(true)
        .disable_pathspec_match(true);
    if !scoped.pathspec.is_empty() {
        opts.pathspec(&scoped.pathspec);
    }
    let statuses = scoped
        .repo
        .statuses(Some(&mut opts))
        .map_err(|e| git_failed(&e))?;
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in statuses.iter() {
        let Some((repo_path, path)) = entry
            .path()
            .ok()
            .and_then(|p| Some((p, scoped.to_workspace(p)?)))
        else {
            continue;
        };
        // katachi's own folders are invisible here too, even when the repository tracks them
        if scoped.read_rule(repo_path) == Some(ProtectedRule::KatachiFolder) {
            continue;
        }
        if entries.len() == cap {
            truncated = true;
            break;
        }
        let s = entry.status();
        entries.push(GitStatusEntry {
            path,
            staged: staged_change(s),
            unstaged: unstaged_change(s),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let (branch, head) = scoped.head();
    let repository = scoped
        .workdir
        .strip_prefix(&ws.root)
        .ok()
        .and_then(Path::to_str)
        .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"));
    Ok(GitStatus {
        repository,
        branch,
        head,
        entries,
        truncated,
    })
}

fn diff_of(
    ws: &WorkspaceRoot,
    allowed: &[PathBuf],
    rel: &RelPath,
    params: &DiffParams,
    max_bytes: usize,
) -> ApiResult<GitDiff> {
    let scoped = ScopedRepo::open(ws, allowed, rel)?;
    let repo = &scoped.repo;
    let untracked = params.include_untracked && !matches!(params.mode, DiffMode::Staged);
    let mut opts = DiffOptions::new();
    opts.include_untracked(untracked)
        .recurse_untracked_dirs(untracked)
        .show_untracked_content(untracked)
        .ignore_submodules(true)
        .disable_pathspec_match(true)
        .context_lines(params.context.unwrap_or(3).min(100));
    if !scoped.pathspec.is_empty() {
        opts.pathspec(&scoped.pathspec);
    }
    // an unborn HEAD (no commits yet) diffs against the empty tree
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let diff = match params.mode {
        DiffMode::Head => repo.diff_tree_to_workdir_with_index(head_tree.as_ref(), Some(&mut opts)),
        DiffMode::Worktree => repo.diff_index_to_workdir(None, Some(&mut opts)),
        DiffMode::Staged => repo.diff_tree_to_index(head_tree.as_ref(), None, Some(&mut opts)),
    }
    .map_err(|e| git_failed(&e))?;
    let reads_worktree = !matches!(params.mode, DiffMode::Staged);
    let mut files = Vec::new();
    let mut budget = max_bytes;
    let mut truncated = false;
    for (idx, delta) in diff.deltas().enumerate() {
        let new_path = delta.new_file().path().and_then(Path::to_str);
        let old_path = delta.old_file().path().and_then(Path::to_str);
        let Some(path) = new_path.or(old_path).and_then(|p| scoped.to_workspace(p)) else {
            continue;
        };
        let Some(change) = delta_change(delta.status()) else {
            continue;
        };
        // the file API's read rules hold for diffs: katachi's folders are left out, and the
        // content of `.env*` files (worktree, index or HEAD) is withheld
        let rules: Vec<ProtectedRule> = [new_path, old_path]
            .into_iter()
            .flatten()
            .filter_map(|p| scoped.read_rule(p))
            .collect();
        if rules.contains(&ProtectedRule::KatachiFolder) {
            continue;
        }
        let hard_linked = reads_worktree
            && new_path.is_some_and(|p| {
                std::fs::symlink_metadata(scoped.workdir.join(p))
                    .is_ok_and(|m| m.is_file() && link_count(&m) > 1)
            });
        let withheld = hard_linked || !rules.is_empty();
        let binary = delta.old_file().is_binary() || delta.new_file().is_binary();
        let patch = if withheld {
            String::new()
        } else {
            patch_text(&diff, idx)?
        };
        if patch.len() > budget {
            truncated = true;
            break;
        }
        budget -= patch.len();
        let renamed = matches!(change, GitChange::Renamed | GitChange::Copied);
        files.push(DiffFile {
            path,
            old_path: if renamed {
                old_path.and_then(|p| scoped.to_workspace(p))
            } else {
                None
            },
            change,
            binary,
            patch,
            withheld,
        });
    }
    Ok(GitDiff { files, truncated })
}

fn patch_text(diff: &git2::Diff<'_>, idx: usize) -> ApiResult<String> {
    let Some(mut patch) = git2::Patch::from_diff(diff, idx).map_err(|e| git_failed(&e))? else {
        return Ok(String::new());
    };
    let buf = patch.to_buf().map_err(|e| git_failed(&e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn git_failed(e: &git2::Error) -> ApiError {
    tracing::warn!(error = %e, "api: libgit2 failed");
    ApiError::new(ErrorCode::GitFailed, format!("git failed: {}", e.message()))
}

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
