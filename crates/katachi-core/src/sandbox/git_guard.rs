//! The `git.create` rule of [`crate::protected`] for runs on Linux, where mounts can protect only
//! a `.git` that exists: a workspace root without one could get a `.git` folder (with hooks and a
//! `core.fsmonitor` config) from a run, which the user's next `git status` there — or a shell
//! prompt that runs git — would execute. The guard notes which roots had no `.git` when the run
//! started; when the run's process tree is dead, a `.git` that appeared is moved aside (renamed
//! `.git.refused-by-katachi`, `…-2`, …, so nothing the run made is lost) and reported as a `file`
//! denial.
//!
//! # Not covered
//! Between the run's end and the move (a few system calls) a git started elsewhere could see the
//! new `.git`. A `.git` made in a subfolder is not looked for (the API refuses those at any depth).

use std::path::{Path, PathBuf};

use super::denied::{DenialKind, SandboxDenied};
use super::policy::SandboxPolicy;
use crate::protected::GIT_DIR_NAME;

/// The name a refused `.git` is moved to (a number is added when it is taken).
const MOVED_ASIDE: &str = ".git.refused-by-katachi";

/// The workspace roots that had no `.git` when the run started.
#[derive(Debug, Default)]
pub(crate) struct GitCreationGuard {
    /// `<root>/.git` of each such root.
    absent: Vec<PathBuf>,
}

impl GitCreationGuard {
    /// Notes the roots of `policy` without a `.git` (call before the command starts).
    pub(crate) fn before_run(policy: &SandboxPolicy) -> Self {
        let absent = policy
            .workspaces()
            .iter()
            .map(|w| w.root.join(GIT_DIR_NAME))
            .filter(|git| std::fs::symlink_metadata(git).is_err())
            .collect();
        Self { absent }
    }

    /// Moves aside a `.git` the run made (call once its process tree is dead); the denial names it.
    pub(crate) fn after_run(self) -> Option<SandboxDenied> {
        let mut denied = None;
        for git in self.absent {
            if std::fs::symlink_metadata(&git).is_err() {
                continue;
            }
            let moved = move_aside(&git);
            tracing::warn!(path = %git.display(), moved = ?moved, "sandbox: a run created .git; moved aside");
            denied.get_or_insert(SandboxDenied {
                kind: DenialKind::File,
                target: git.display().to_string(),
                how_to_allow: match moved {
                    Some(to) => format!(
                        "a run may not create a git repository (its hooks and config would run as you): it was moved to {}; run `git init` yourself",
                        to.display()
                    ),
                    None => "a run may not create a git repository (its hooks and config would run as you), and it could not be moved aside: remove it before running git there".to_owned(),
                },
            });
        }
        denied
    }
}

/// Renames `git` to a free `.git.refused-by-katachi[-N]` beside it.
fn move_aside(git: &Path) -> Option<PathBuf> {
    let parent = git.parent()?;
    for n in 1..100u32 {
        let name = if n == 1 {
            MOVED_ASIDE.to_owned()
        } else {
            format!("{MOVED_ASIDE}-{n}")
        };
        let to = parent.join(name);
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        if std::fs::rename(git, &to).is_ok() {
            return Some(to);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_git_made_during_the_run_is_moved_aside_and_an_existing_one_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let (fresh, kept) = (tmp.path().join("fresh"), tmp.path().join("kept"));
        std::fs::create_dir_all(kept.join(".git")).unwrap();
        std::fs::create_dir_all(&fresh).unwrap();
        let policy = SandboxPolicy::builder()
            .workspace(&fresh, false)
            .workspace(&kept, false)
            .build()
            .unwrap();
        let guard = GitCreationGuard::before_run(&policy);
        std::fs::create_dir_all(fresh.join(".git/hooks")).unwrap();
        std::fs::write(fresh.join(".git/hooks/post-checkout"), b"#!/bin/sh\n").unwrap();
        let denied = guard.after_run().unwrap();
        assert_eq!(denied.kind, DenialKind::File);
        assert!(!fresh.join(".git").exists());
        assert!(fresh
            .join(".git.refused-by-katachi/hooks/post-checkout")
            .exists());
        assert!(kept.join(".git").exists());
        // nothing appeared: nothing to report
        let policy = SandboxPolicy::builder()
            .workspace(&fresh, false)
            .build()
            .unwrap();
        assert!(GitCreationGuard::before_run(&policy).after_run().is_none());
    }
}
