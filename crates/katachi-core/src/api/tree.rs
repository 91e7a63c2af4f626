//! `GET /v1/workspaces/{id}/tree?path=…&depth=…&limit=…&cursor=…`: a paged listing of a folder.
//!
//! Entries come depth-first, sorted by name at each level, so a page ends at a path and the next
//! page starts after it (`cursor` = the last path of the previous page). What `.gitignore`,
//! `.ignore` and `.git/info/exclude` exclude is not listed (the `ignore` crate's rules, also outside
//! git repositories); `.git` itself never is. Recursive listings do not enter symlinked folders
//! or dependency/build folders that are not ignored (`node_modules`, `target`, …: listed with
//! `heavy: true`; list one by naming it as `path`). A folder with more than
//! [`ApiLimits::tree_max_dir_entries`](super::ApiLimits) entries is listed partially and named in
//! `partial_dirs`; a page that runs out of time ends early with a cursor. Names that are not UTF-8
//! are skipped and counted.

use std::cmp::Ordering;
use std::path::Path;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorCode};
use super::paths::{QueryPath, RelPath, WorkspaceRoot};
use super::stat::FileKind;
use super::{ApiLimits, ApiQuery, ApiState, WorkspaceId};
use crate::protected::ProtectedPaths;

/// Folders a recursive listing lists but does not enter unless asked: dependencies and build output.
const HEAVY_DIRS: &[&str] = &[
    "node_modules",
    "target",
    ".venv",
    "venv",
    "__pycache__",
    ".tox",
    ".gradle",
    ".next",
];

/// Entries per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 200;

/// Query parameters of a tree listing (besides `path`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TreeParams {
    /// How many levels to list: 1 (default) lists the folder's children only.
    depth: Option<usize>,
    /// Entries per page (default 200, capped by the agent).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One entry of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TreeEntry {
    /// Workspace-relative path (through the folder as requested).
    pub path: String,
    /// The last component.
    pub name: String,
    /// What it is (symlinks are not followed).
    pub kind: FileKind,
    /// Size in bytes, for files.
    pub size: Option<u64>,
    /// A dependency or build folder that recursive listings do not enter.
    pub heavy: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TreePage {
    /// The folder listed, as requested.
    pub path: String,
    /// The entries of this page, depth-first, sorted by name within each folder.
    pub entries: Vec<TreeEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Whether more entries exist (the page limit or time budget was reached).
    pub truncated: bool,
    /// Folders too large to list whole; only some of their entries are included.
    pub partial_dirs: Vec<String>,
    /// Entries skipped because their names are not UTF-8.
    pub skipped_non_utf8: u64,
}

/// Lists a folder, paged.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/tree",
    tag = "files",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = Option<String>, Query, description = "Folder relative to the workspace root (default: the root)"),
        TreeParams,
    ),
    responses(
        (status = 200, description = "One page of entries", body = TreePage),
        (status = 400, description = "`path.*` lexical refusals, `path.not_a_directory`, `request.invalid`", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.protected` (the rule in the message)", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found`", body = super::ErrorBody),
    )
)]
pub(crate) async fn list_tree(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
    ApiQuery(params): ApiQuery<TreeParams>,
) -> ApiResult<Json<TreePage>> {
    let rel = path.or_root();
    let page = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            list_page(&ws, &rel, &params, s.limits())
        })
        .await?;
    Ok(Json(page))
}

fn list_page(
    ws: &WorkspaceRoot,
    rel: &RelPath,
    params: &TreeParams,
    limits: &ApiLimits,
) -> ApiResult<TreePage> {
    let dir = ws.resolve(rel)?;
    if !dir.meta.is_dir() {
        return Err(ApiError::new(
            ErrorCode::PathNotADirectory,
            format!("{:?} is not a folder", rel.as_str()),
        ));
    }
    let mut walk = Walk {
        root: &ws.root,
        protected: &ws.protected,
        limits,
        deadline: Instant::now() + limits.tree_time_budget,
        max_depth: params.depth.unwrap_or(1).clamp(1, limits.tree_max_depth),
        limit: params
            .limit
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, limits.tree_max_entries),
        cursor: params.cursor.clone().filter(|c| !c.is_empty()),
        entries: Vec::new(),
        more: false,
        partial_dirs: Vec::new(),
        skipped_non_utf8: 0,
    };
    walk.dir(&dir.abs, rel, 1)?;
    let next_cursor = if walk.more {
        walk.entries
            .last()
            .map(|e| e.path.clone())
            .or(walk.cursor.clone())
    } else {
        None
    };
    Ok(TreePage {
        path: rel.as_str().to_owned(),
        truncated: walk.more,
        entries: walk.entries,
        next_cursor,
        partial_dirs: walk.partial_dirs,
        skipped_non_utf8: walk.skipped_non_utf8,
    })
}

/// One page's walk state.
struct Walk<'a> {
    /// The workspace root; every folder entered must still be under it.
    root: &'a Path,
    /// The protected-path rules: katachi's own folders are left out.
    protected: &'a ProtectedPaths,
    /// Bounds.
    limits: &'a ApiLimits,
    /// When the page stops early.
    deadline: Instant,
    /// Levels to list (1 = children only).
    max_depth: usize,
    /// Entries per page.
    limit: usize,
    /// Entries up to and including this path were on earlier pages.
    cursor: Option<String>,
    /// This page.
    entries: Vec<TreeEntry>,
    /// Whether the page stopped before the end.
    more: bool,
    /// Folders listed partially.
    partial_dirs: Vec<String>,
    /// Names skipped for not being UTF-8.
    skipped_non_utf8: u64,
}

/// A child read from a folder.
struct Child {
    /// Its name.
    name: String,
    /// What it is (not following symlinks).
    kind: FileKind,
    /// Its size, for files.
    size: Option<u64>,
}

impl Walk<'_> {
    /// Lists `abs` (shown as `rel`) at `depth`; returns `false` when the page is complete.
    fn dir(&mut self, abs: &Path, rel: &RelPath, depth: usize) -> ApiResult<bool> {
        // re-check each folder entered: one swapped for a symlink must not list the outside
        match std::fs::canonicalize(abs) {
            Ok(c) if c == abs && c.starts_with(self.root) => {}
            _ => return Err(changed(rel)),
        }
        let (children, partial) = self.read_children(abs)?;
        if partial {
            self.partial_dirs.push(rel.as_str().to_owned());
        }
        for child in children {
            if Instant::now() > self.deadline {
                self.more = true;
                return Ok(false);
            }
            let child_rel = rel.child(&child.name);
            let heavy = child.kind == FileKind::Dir && HEAVY_DIRS.contains(&child.name.as_str());
            let seen = self
                .cursor
                .as_deref()
                .is_some_and(|c| cmp_paths(child_rel.as_str(), c) != Ordering::Greater);
            if !seen {
                if self.entries.len() == self.limit {
                    self.more = true;
                    return Ok(false);
                }
                self.entries.push(TreeEntry {
                    path: child_rel.as_str().to_owned(),
                    name: child.name.clone(),
                    kind: child.kind,
                    size: child.size,
                    heavy,
                });
            }
            // the cursor is this folder or inside it: some of its entries are still to come
            let cursor_within = self
                .cursor
                .as_deref()
                .is_some_and(|c| c == child_rel.as_str() || is_inside(c, child_rel.as_str()));
            let enter = child.kind == FileKind::Dir
                && depth < self.max_depth
                && !heavy
                && (!seen || cursor_within);
            if enter && !self.dir(&abs.join(&child.name), &child_rel, depth + 1)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The children of `abs` that the ignore rules let through, sorted by name; `true` when the
    /// folder had more than the per-folder cap.
    fn read_children(&mut self, abs: &Path) -> ApiResult<(Vec<Child>, bool)> {
        let walker = ignore::WalkBuilder::new(abs)
            .max_depth(Some(1))
            .hidden(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git")
            .build();
        let protected = self.protected;
        let mut children = Vec::new();
        let mut partial = false;
        for entry in walker {
            let Ok(entry) = entry else { continue };
            if entry.depth() == 0 {
                continue;
            }
            if children.len() == self.limits.tree_max_dir_entries {
                partial = true;
                break;
            }
            // katachi's own folders are invisible, even in a workspace that holds them
            if protected.is_invisible(entry.path()) {
                continue;
            }
            let Some(name) = entry.file_name().to_str() else {
                self.skipped_non_utf8 += 1;
                continue;
            };
            let Some(ft) = entry.file_type() else {
                continue;
            };
            let kind = FileKind::of(ft);
            let size = if kind == FileKind::File {
                entry.metadata().ok().map(|m| m.len())
            } else {
                None
            };
            children.push(Child {
                name: name.to_owned(),
                kind,
                size,
            });
        }
        children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok((children, partial))
    }
}

/// Depth-first order of `/`-separated paths: component by component.
fn cmp_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Whether `path` is strictly inside folder `dir`.
fn is_inside(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn changed(rel: &RelPath) -> ApiError {
    ApiError::new(
        ErrorCode::PathChanged,
        format!(
            "{:?} changed while it was being listed; try again",
            rel.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(dir: &Path) -> WorkspaceRoot {
        WorkspaceRoot {
            id: 1,
            root: std::fs::canonicalize(dir).unwrap(),
            protected: Default::default(),
        }
    }

    fn page(w: &WorkspaceRoot, depth: usize, limit: usize, cursor: Option<&str>) -> TreePage {
        let params = TreeParams {
            depth: Some(depth),
            limit: Some(limit),
            cursor: cursor.map(str::to_owned),
        };
        list_page(w, &RelPath::default(), &params, &ApiLimits::default()).unwrap()
    }

    fn paths(p: &TreePage) -> Vec<&str> {
        p.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn depth_first_order_compares_components() {
        assert_eq!(cmp_paths("a/b", "a-b"), Ordering::Less);
        assert_eq!(cmp_paths("a", "a/b"), Ordering::Less);
        assert!(is_inside("a/b", "a"));
        assert!(!is_inside("ab", "a"));
    }

    #[test]
    fn pages_resume_after_the_cursor_across_folders() {
        let tmp = tempfile::tempdir().unwrap();
        for p in ["a/1", "a/2", "b/c/3", "d"] {
            let p = tmp.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let w = ws(tmp.path());
        let all = page(&w, 8, 100, None);
        assert_eq!(paths(&all), ["a", "a/1", "a/2", "b", "b/c", "b/c/3", "d"]);
        assert!(!all.truncated);
        for size in 1..=4 {
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let p = page(&w, 8, size, cursor.as_deref());
                got.extend(p.entries.iter().map(|e| e.path.clone()));
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(got, paths(&all), "page size {size}");
        }
    }

    #[test]
    fn ignored_entries_and_git_are_not_listed_and_heavy_dirs_are_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".git")).unwrap();
        std::fs::create_dir_all(tmp.path().join("build/out")).unwrap();
        std::fs::create_dir_all(tmp.path().join("node_modules/left-pad")).unwrap();
        std::fs::write(tmp.path().join(".gitignore"), b"build/\n*.log\n").unwrap();
        std::fs::write(tmp.path().join("x.log"), b"x").unwrap();
        std::fs::write(tmp.path().join("main.rs"), b"fn main() {}").unwrap();
        let p = page(&ws(tmp.path()), 4, 100, None);
        assert_eq!(paths(&p), [".gitignore", "main.rs", "node_modules"]);
        assert!(p.entries[2].heavy);
        assert_eq!(p.entries[1].size, Some(12));
    }
}
