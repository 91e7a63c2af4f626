//! The protected-path rule set: one list of what neither a sandboxed run nor an API call may do to a
//! workspace, used by both.
//!
//! # Rules
//! | rule            | what it protects                                 | API                      | sandbox                      |
//! |-----------------|--------------------------------------------------|--------------------------|------------------------------|
//! | `git.config`    | `.git/config`                                    | write refused            | read-only                    |
//! | `git.hooks`     | `.git/hooks` and everything in it                | write refused            | read-only                    |
//! | `git.create`    | a file or folder named `.git`, anywhere          | write refused            | an existing `.git` cannot be replaced; a new one in a root is moved aside after the run |
//! | `env.file`      | `.env`, `.env.local`, … (unless allowed)         | read and write refused   | hidden                       |
//! | `katachi.folder`| katachi's own data, config, runtime and state (log) folders | invisible: left out of tree and search, read and write refused | hidden |
//!
//! A refusal is `path.protected` with the rule's name in the message. `.git`, `hooks` and `config`
//! are compared ignoring ASCII case on every OS: on a case-insensitive filesystem (macOS, Windows)
//! `.GIT/Config` *is* the git config, and on Linux refusing a look-alike name costs nothing.
//! `.env*` names are compared the same way. The API checks both the path as the client named it
//! and the path it resolves to, so a symlink into a protected path is caught.
//!
//! The sandbox side ([`crate::sandbox`]) takes the agent's folders to hide and the `.env*` choice
//! from the same [`ProtectedPaths`] ([`crate::sandbox::policy::PolicyBuilder::protected_paths`]), and
//! its platform layers use [`is_env_file_name`] and [`GIT_READ_ONLY`].
//!
//! # Not covered
//! The sandbox protects the `.git` of each workspace root (and moves aside one a run creates
//! there, `sandbox/git_guard.rs`); the API protects every `.git` at any depth.

use std::path::{Path, PathBuf};

/// The name of git's folder (or of a `.git` file pointing at one).
pub const GIT_DIR_NAME: &str = ".git";

/// The entries of `.git` that are read-only for runs and refused for API writes: hooks run as the
/// user at the next git command, and the config can name commands (`core.fsmonitor`, aliases).
pub const GIT_READ_ONLY: &[&str] = &["hooks", "config"];

/// The prefix of environment files, which usually hold secrets.
pub const ENV_FILE_PREFIX: &str = ".env";

/// One rule of the set, named in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectedRule {
    /// `.git/config`: a config can name a command git runs (`core.fsmonitor`).
    GitConfig,
    /// `.git/hooks/**`: hooks run as the user at the next git command.
    GitHooks,
    /// A `.git` file or folder: one could point git at another repository or bring its own hooks.
    GitCreate,
    /// `.env*` files: they usually hold secrets.
    EnvFile,
    /// katachi's own folders (store, sealed credentials, config, the runtime folder with the
    /// control socket, the state folder with the app's logs).
    KatachiFolder,
}

impl ProtectedRule {
    /// The rule's stable name, as sent in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitConfig => "git.config",
            Self::GitHooks => "git.hooks",
            Self::GitCreate => "git.create",
            Self::EnvFile => "env.file",
            Self::KatachiFolder => "katachi.folder",
        }
    }

    /// What the rule protects and why, for people; `workspace` is the workspace's root, named in
    /// the command that lifts a rule a workspace may lift.
    pub fn reason(self, workspace: &Path) -> String {
        let text = match self {
            Self::GitConfig => "`.git/config` can make git run a command as you (core.fsmonitor); edit it yourself with `git config`",
            Self::GitHooks => "`.git/hooks` run as you at your next git command; change them yourself",
            Self::GitCreate => "a `.git` file or folder could point git at another repository or bring its own hooks",
            Self::EnvFile => {
                return format!(
                    "`.env*` files usually hold secrets; to allow them in this workspace, on the agent's machine run `{}`",
                    crate::sandbox::policy_set_command(workspace, "--allow-env-files")
                )
            }
            Self::KatachiFolder => "it is katachi's own data or configuration",
        };
        text.to_owned()
    }
}

/// Whether `name` (one path component) is an environment file name: `.env`, `.env.local`, … .
pub fn is_env_file_name(name: &[u8]) -> bool {
    name.len() >= ENV_FILE_PREFIX.len()
        && name
            .get(..ENV_FILE_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ENV_FILE_PREFIX.as_bytes()))
}

fn is_git(name: &str) -> bool {
    name.eq_ignore_ascii_case(GIT_DIR_NAME)
}

/// The protected paths of one workspace: the fixed git and env rules, plus the agent's own folders
/// and whether this workspace allows its `.env*` files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedPaths {
    /// katachi's own folders, canonical where they exist.
    katachi_folders: Vec<PathBuf>,
    /// Whether `.env*` files of the workspace may be read and written.
    allow_env_files: bool,
}

impl ProtectedPaths {
    /// The rules with `katachi_folders` invisible (canonicalised when they exist) and `.env*`
    /// files allowed or not.
    pub fn new(katachi_folders: &[PathBuf], allow_env_files: bool) -> Self {
        Self {
            katachi_folders: katachi_folders
                .iter()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            allow_env_files,
        }
    }

    /// katachi's own folders (what the sandbox hides).
    pub fn katachi_folders(&self) -> &[PathBuf] {
        &self.katachi_folders
    }

    /// Whether `.env*` files are allowed.
    pub fn allow_env_files(&self) -> bool {
        self.allow_env_files
    }

    /// Whether the absolute, canonical `abs` is in one of katachi's folders (it is then invisible).
    pub fn is_invisible(&self, abs: &Path) -> bool {
        self.katachi_folders.iter().any(|f| abs.starts_with(f))
    }

    /// The rule refusing to read the file or folder at `abs` (canonical), named `rel_paths` (the
    /// client's and the resolved workspace-relative path, `/`-separated); `is_file` says whether it is a file.
    pub fn read_rule(
        &self,
        rel_paths: &[&str],
        abs: &Path,
        is_file: bool,
    ) -> Option<ProtectedRule> {
        if self.is_invisible(abs) {
            return Some(ProtectedRule::KatachiFolder);
        }
        let env = rel_paths
            .iter()
            .any(|p| last(p).is_some_and(|n| is_env_file_name(n.as_bytes())));
        (is_file && env && !self.allow_env_files).then_some(ProtectedRule::EnvFile)
    }

    /// The rule refusing a write to `rel_paths` (the client's and the resolved workspace-relative
    /// path); `abs`, when known, is the canonical target (or its folder for a new file).
    pub fn write_rule(&self, rel_paths: &[&str], abs: Option<&Path>) -> Option<ProtectedRule> {
        if abs.is_some_and(|a| self.is_invisible(a)) {
            return Some(ProtectedRule::KatachiFolder);
        }
        rel_paths.iter().find_map(|p| self.lexical_write_rule(p))
    }

    /// The rule a write to the workspace-relative `rel` breaks by its name alone.
    pub fn lexical_write_rule(&self, rel: &str) -> Option<ProtectedRule> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            if !is_git(part) {
                continue;
            }
            let Some(next) = parts.get(i + 1) else {
                // the last component is `.git`: a new (or replaced) `.git` file
                return Some(ProtectedRule::GitCreate);
            };
            if next.eq_ignore_ascii_case("hooks") {
                return Some(ProtectedRule::GitHooks);
            }
            if next.eq_ignore_ascii_case("config") && i + 2 == parts.len() {
                return Some(ProtectedRule::GitConfig);
            }
        }
        let env = last(rel).is_some_and(|n| is_env_file_name(n.as_bytes()));
        (env && !self.allow_env_files).then_some(ProtectedRule::EnvFile)
    }
}

fn last(rel: &str) -> Option<&str> {
    rel.rsplit('/').find(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_rules_match_at_any_depth_and_in_any_case() {
        let p = ProtectedPaths::default();
        let rule = |r| p.lexical_write_rule(r);
        assert_eq!(rule(".git/config"), Some(ProtectedRule::GitConfig));
        assert_eq!(rule("sub/.GIT/Config"), Some(ProtectedRule::GitConfig));
        assert_eq!(rule(".git/hooks"), Some(ProtectedRule::GitHooks));
        assert_eq!(rule(".git/hooks/pre-commit"), Some(ProtectedRule::GitHooks));
        assert_eq!(rule(".git"), Some(ProtectedRule::GitCreate));
        assert_eq!(rule("a/b/.Git"), Some(ProtectedRule::GitCreate));
        assert_eq!(rule(".git/config/x"), None);
        assert_eq!(rule(".git/info/exclude"), None);
        assert_eq!(rule("src/config"), None);
        assert_eq!(rule(".gitignore"), None);
    }

    #[test]
    fn env_files_are_protected_unless_allowed() {
        let p = ProtectedPaths::default();
        assert_eq!(p.lexical_write_rule(".env"), Some(ProtectedRule::EnvFile));
        assert_eq!(
            p.lexical_write_rule("a/.env.local"),
            Some(ProtectedRule::EnvFile)
        );
        assert_eq!(p.lexical_write_rule("a/env"), None);
        let allowed = ProtectedPaths::new(&[], true);
        assert_eq!(allowed.lexical_write_rule(".env"), None);
        assert_eq!(
            p.read_rule(&[".env"], Path::new("/w/.env"), true),
            Some(ProtectedRule::EnvFile)
        );
        assert_eq!(
            p.read_rule(&[".envrc.d"], Path::new("/w/.envrc.d"), false),
            None
        );
    }

    #[test]
    fn katachi_folders_are_invisible_below_them_too() {
        let p = ProtectedPaths::new(&[PathBuf::from("/nonexistent-k/data")], false);
        assert!(p.is_invisible(Path::new("/nonexistent-k/data/store.db")));
        assert!(!p.is_invisible(Path::new("/nonexistent-k/database")));
        assert_eq!(
            p.read_rule(&["x"], Path::new("/nonexistent-k/data"), false),
            Some(ProtectedRule::KatachiFolder)
        );
    }
}
