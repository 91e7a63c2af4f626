use super::*;
use crate::vault::{DerivedKey, Purpose};

fn key(b: u8) -> DerivedKey {
    DerivedKey::from_bytes([b; 32], Purpose::STORE)
}

fn open_in(dir: &Path, b: u8) -> Store {
    Store::open(&dir.join("k.db"), &key(b)).unwrap()
}

#[test]
fn fresh_store_is_migrated_to_the_latest_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_in(tmp.path(), 1);
    assert_eq!(s.schema_version().unwrap(), migrations::latest_version());
    drop(s);
    // Reopening is idempotent.
    assert_eq!(
        open_in(tmp.path(), 1).schema_version().unwrap(),
        migrations::latest_version()
    );
}

#[test]
fn connections_opening_a_fresh_store_at_once_all_find_it_migrated() {
    // The agent's session and its API open the store together at first start.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Arc::new(std::sync::Barrier::new(3));
        let openers: Vec<_> = (0..3)
            .map(|_| {
                let (dir, start) = (dir.path().to_owned(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    Store::open(&dir.join("katachi.db"), &key(1)).map(|s| s.schema_version())
                })
            })
            .collect();
        for opener in openers {
            let version = opener.join().unwrap().unwrap().unwrap();
            assert_eq!(version, migrations::latest_version());
        }
    }
}

#[test]
fn wrong_key_is_a_clear_error_and_leaves_the_file_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.db");
    {
        let s = Store::open(&path, &key(1)).unwrap();
        let chat = s.chat();
        let sess = chat.create_session(None, "t").unwrap();
        chat.append(sess.id, Role::User, "hello").unwrap();
        s.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, &key(2)).unwrap_err();
    assert!(matches!(err, StoreError::CannotDecrypt { .. }), "{err}");
    assert!(err.to_string().contains("another machine"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The right key still opens it, with the data.
    let s = Store::open(&path, &key(1)).unwrap();
    assert_eq!(s.chat().message_count().unwrap(), 1);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.db");
    let junk =
        b"this is a text file, not a database, and it is long enough to have a header........"
            .repeat(10);
    std::fs::write(&path, &junk).unwrap();
    assert!(matches!(
        Store::open(&path, &key(1)),
        Err(StoreError::CannotDecrypt { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), junk);
}

#[test]
fn newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.db");
    {
        let s = Store::open(&path, &key(1)).unwrap();
        s.conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    let err = Store::open(&path, &key(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let s = open_in(tmp.path(), 1);
    s.workspaces().add(tmp.path(), &[]).unwrap();
    for name in ["k.db", "k.db-wal"] {
        let mode = std::fs::metadata(tmp.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

#[test]
fn workspace_add_canonicalises_and_handles_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("proj");
    std::fs::create_dir(&ws).unwrap();
    let s = open_in(tmp.path(), 1);
    let w = s.workspaces();
    let AddOutcome::Added {
        workspace,
        absorbed,
    } = w.add(&ws, &[]).unwrap()
    else {
        panic!("not added")
    };
    assert!(absorbed.is_empty());
    assert_eq!(
        Path::new(&workspace.path),
        std::fs::canonicalize(&ws).unwrap()
    );
    // The same folder through a `..` detour and through a symlink is the same workspace.
    let detour = ws.join("..").join("proj");
    assert!(matches!(
        w.add(&detour, &[]).unwrap(),
        AddOutcome::AlreadyAllowed { .. }
    ));
    #[cfg(unix)]
    {
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&ws, &link).unwrap();
        assert!(matches!(
            w.add(&link, &[]).unwrap(),
            AddOutcome::AlreadyAllowed { .. }
        ));
    }
    assert_eq!(w.list().unwrap().len(), 1);
}

#[test]
fn nested_workspaces_are_covered_or_absorbed() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("code");
    let child = parent.join("app");
    let sibling = tmp.path().join("code-other");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::create_dir_all(&sibling).unwrap();
    let s = open_in(tmp.path(), 1);
    let w = s.workspaces();
    w.add(&child, &[]).unwrap();
    w.add(&sibling, &[]).unwrap();
    let AddOutcome::Added { absorbed, .. } = w.add(&parent, &[]).unwrap() else {
        panic!("parent not added")
    };
    assert_eq!(
        absorbed.len(),
        1,
        "only the child, not the look-alike sibling"
    );
    assert!(matches!(
        w.add(&child, &[]).unwrap(),
        AddOutcome::CoveredBy { .. }
    ));
    assert_eq!(w.list().unwrap().len(), 2);
}

#[test]
fn bad_workspace_paths_are_rejected_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let protected = tmp.path().join("katachi-data");
    std::fs::create_dir(&protected).unwrap();
    let s = open_in(tmp.path(), 1);
    let w = s.workspaces();
    assert!(matches!(
        w.add(&tmp.path().join("missing"), &[]),
        Err(WorkspaceError::NotFound(_))
    ));
    assert!(matches!(
        w.add(&file, &[]),
        Err(WorkspaceError::NotADirectory(_))
    ));
    assert!(matches!(
        w.add(Path::new("/"), &[]),
        Err(WorkspaceError::FilesystemRoot(_))
    ));
    assert!(matches!(
        w.add(&protected, std::slice::from_ref(&protected)),
        Err(WorkspaceError::Protected { .. })
    ));
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = tmp
            .path()
            .join(std::ffi::OsStr::from_bytes(b"bad-\xff-name"));
        std::fs::create_dir(&odd).unwrap();
        assert!(matches!(w.add(&odd, &[]), Err(WorkspaceError::NotUtf8(_))));
    }
    assert!(w.list().unwrap().is_empty());
}

#[test]
fn workspace_remove_works_even_when_the_folder_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("gone");
    std::fs::create_dir(&ws).unwrap();
    let s = open_in(tmp.path(), 1);
    let w = s.workspaces();
    w.add(&ws, &[]).unwrap();
    let canonical = std::fs::canonicalize(&ws).unwrap();
    std::fs::remove_dir(&ws).unwrap();
    assert_eq!(Path::new(&w.remove(&canonical).unwrap().path), canonical);
    assert!(matches!(
        w.remove(&canonical),
        Err(WorkspaceError::NotAllowed(_))
    ));
    assert!(matches!(
        w.remove(Path::new("relative/missing")),
        Err(WorkspaceError::Relative(_))
    ));
}

#[test]
fn chat_memory_outbox_and_audit_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_in(tmp.path(), 1);
    let AddOutcome::Added { workspace, .. } = s.workspaces().add(tmp.path(), &[]).unwrap() else {
        panic!()
    };
    let sess = s
        .chat()
        .create_session(Some(workspace.id), "first")
        .unwrap();
    s.chat()
        .append_many(sess.id, [(Role::User, "q"), (Role::Assistant, "a")])
        .unwrap();
    let msgs = s.chat().messages(sess.id, 0, 10).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["q", "a"]
    );
    assert_eq!(msgs[1].role, Role::Assistant);
    assert_eq!(s.chat().sessions().unwrap().len(), 1);
    assert!(
        s.chat().append(9999, Role::User, "orphan").is_err(),
        "foreign keys are enforced"
    );

    s.memory()
        .remember(workspace.id, "build", "cargo build")
        .unwrap();
    s.memory().remember(workspace.id, "build", "make").unwrap();
    assert_eq!(
        s.memory().recall(workspace.id, "build").unwrap().as_deref(),
        Some("make")
    );
    assert!(s.memory().forget(workspace.id, "build").unwrap());

    s.outbox().enqueue("e1", "workspace.added", "{}").unwrap();
    s.outbox()
        .enqueue("e1", "workspace.added", "{\"dup\":1}")
        .unwrap();
    assert_eq!(s.outbox().due(10).unwrap().len(), 1);
    s.outbox().mark_failed("e1", 3600).unwrap();
    assert!(s.outbox().due(10).unwrap().is_empty());
    assert!(s.outbox().acknowledge("e1").unwrap());

    let fp = crate::fingerprint::Fingerprint::from_components([("machine_id", vec![1])]).unwrap();
    let machine_key = crate::vault::MachineKey::derive(&crate::SecretBytes::new(vec![1; 32]), &fp);
    let audit_key = AuditKey::derive(&machine_key);
    s.audit(&audit_key)
        .append(&AuditEntry::new(Actor::Cli, "workspace.add").with_paths(["/x"]))
        .unwrap();
    assert_eq!(
        s.audit(&audit_key).recent(5).unwrap()[0].action,
        "workspace.add"
    );
}
