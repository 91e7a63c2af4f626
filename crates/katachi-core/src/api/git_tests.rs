//! Unit tests of `git`: real repositories made with libgit2 in temp folders.

use super::*;

fn init_repo(dir: &Path) -> Repository {
    let repo = Repository::init(dir).unwrap();
    let mut cfg = repo.config().unwrap();
    cfg.set_str("user.name", "t").unwrap();
    cfg.set_str("user.email", "t@example.invalid").unwrap();
    repo
}

fn commit_all(repo: &Repository) {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = repo.signature().unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
        .unwrap();
}

fn root(dir: &Path) -> WorkspaceRoot {
    WorkspaceRoot {
        id: 1,
        root: std::fs::canonicalize(dir).unwrap(),
        protected: Default::default(),
    }
}

#[test]
fn status_and_diff_show_a_change_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init_repo(tmp.path());
    std::fs::write(tmp.path().join("a.txt"), b"one\n").unwrap();
    commit_all(&repo);
    std::fs::write(tmp.path().join("a.txt"), b"two\n").unwrap();
    std::fs::write(tmp.path().join("new.txt"), b"n\n").unwrap();
    let ws = root(tmp.path());
    let st = status_of(
        &ws,
        std::slice::from_ref(&ws.root),
        &RelPath::default(),
        100,
    )
    .unwrap();
    let paths: Vec<_> = st
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.unstaged))
        .collect();
    assert_eq!(
        paths,
        [
            ("a.txt", Some(GitChange::Modified)),
            ("new.txt", Some(GitChange::Untracked))
        ]
    );
    assert_eq!(st.repository.as_deref(), Some(""));
    assert!(st.head.is_some());
    let params = DiffParams {
        mode: DiffMode::Head,
        include_untracked: false,
        context: None,
    };
    let d = diff_of(
        &ws,
        std::slice::from_ref(&ws.root),
        &RelPath::default(),
        &params,
        1 << 20,
    )
    .unwrap();
    assert_eq!(d.files.len(), 1);
    assert!(
        d.files[0].patch.contains("-one\n+two\n"),
        "{}",
        d.files[0].patch
    );
}

#[test]
fn a_workspace_inside_a_repository_is_refused_unless_the_repository_is_allowed_too() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init_repo(tmp.path());
    std::fs::create_dir(tmp.path().join("ws")).unwrap();
    std::fs::write(tmp.path().join("ws/in.txt"), b"1\n").unwrap();
    std::fs::write(tmp.path().join("out.txt"), b"1\n").unwrap();
    commit_all(&repo);
    std::fs::write(tmp.path().join("ws/in.txt"), b"2\n").unwrap();
    std::fs::write(tmp.path().join("out.txt"), b"secret\n").unwrap();
    let ws = root(&tmp.path().join("ws"));
    // the git folder is above the workspace: not an allowed place to read from
    let err = status_of(
        &ws,
        std::slice::from_ref(&ws.root),
        &RelPath::default(),
        100,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::GitOutsideWorkspace);
    assert!(err.message().contains("(gitdir)"), "{}", err.message());

    // once the repository's folder is allowed as well, the workspace sees only its own paths
    let allowed = [ws.root.clone(), root(tmp.path()).root];
    let st = status_of(&ws, &allowed, &RelPath::default(), 100).unwrap();
    let paths: Vec<_> = st.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["in.txt"]);
    assert_eq!(st.repository, None);
    let params = DiffParams {
        mode: DiffMode::Head,
        include_untracked: true,
        context: None,
    };
    let d = diff_of(&ws, &allowed, &RelPath::default(), &params, 1 << 20).unwrap();
    assert_eq!(d.files.len(), 1);
    assert!(!d.files[0].patch.contains("secret"));
}

#[test]
fn a_folder_without_a_repository_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // a ceiling is not needed: temp folders are not inside a repository
    let ws = root(tmp.path());
    let err = status_of(&ws, std::slice::from_ref(&ws.root), &RelPath::default(), 10).unwrap_err();
    assert_eq!(err.code(), ErrorCode::GitNotARepository);
    assert_eq!(err.message(), "this workspace is not a git repository");
}
