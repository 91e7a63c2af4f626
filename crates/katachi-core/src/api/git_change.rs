//! How libgit2's status bits and deltas map to the API's [`GitChange`].

use git2::{Delta, Status};

use super::git::GitChange;

/// The change staged in the index (HEAD → index), if any.
pub(super) fn staged_change(s: Status) -> Option<GitChange> {
    if s.is_conflicted() {
        return Some(GitChange::Conflicted);
    }
    [
        (Status::INDEX_NEW, GitChange::Added),
        (Status::INDEX_MODIFIED, GitChange::Modified),
        (Status::INDEX_DELETED, GitChange::Deleted),
        (Status::INDEX_RENAMED, GitChange::Renamed),
        (Status::INDEX_TYPECHANGE, GitChange::Typechange),
    ]
    .into_iter()
    .find(|(bit, _)| s.contains(*bit))
    .map(|(_, c)| c)
}

/// The change in the work tree not staged (index → work tree), if any.
pub(super) fn unstaged_change(s: Status) -> Option<GitChange> {
    if s.is_conflicted() {
        return Some(GitChange::Conflicted);
    }
    [
        (Status::WT_NEW, GitChange::Untracked),
        (Status::WT_MODIFIED, GitChange::Modified),
        (Status::WT_DELETED, GitChange::Deleted),
        (Status::WT_RENAMED, GitChange::Renamed),
        (Status::WT_TYPECHANGE, GitChange::Typechange),
    ]
    .into_iter()
    .find(|(bit, _)| s.contains(*bit))
    .map(|(_, c)| c)
}

/// The change a diff delta describes; `None` for unchanged, ignored or unreadable entries.
pub(super) fn delta_change(d: Delta) -> Option<GitChange> {
    Some(match d {
        Delta::Added => GitChange::Added,
        Delta::Deleted => GitChange::Deleted,
        Delta::Modified => GitChange::Modified,
        Delta::Renamed => GitChange::Renamed,
        Delta::Copied => GitChange::Copied,
        Delta::Typechange => GitChange::Typechange,
        Delta::Untracked => GitChange::Untracked,
        Delta::Conflicted => GitChange::Conflicted,
        Delta::Unmodified | Delta::Ignored | Delta::Unreadable => return None,
    })
}
