//! The SQLCipher file on disk holds no plaintext.

use katachi_core::store::Role;

use super::support::TestHome;

const MARKER: &str = "KATACHI-PLAINTEXT-MARKER-the-secret-plan-is-in-src/main.rs";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn database_files_contain_no_plaintext() {
    let home = TestHome::new();
    let agent = home.open("a");
    let store = agent.store().unwrap();
    let s = store.chat().create_session(None, MARKER).unwrap();
    for _ in 0..50 {
        store.chat().append(s.id, Role::User, MARKER).unwrap();
    }
    let ws = home.tmp.path().join("KATACHI-WORKSPACE-NAME");
    std::fs::create_dir(&ws).unwrap();
    store.workspaces().add(&ws, &[]).unwrap();
    // Check the WAL before the checkpoint and the main file after it.
    let wal = std::fs::read(home.dirs.store_path().with_extension("db-wal")).unwrap();
    assert!(!wal.is_empty());
    drop(store);
    let main = std::fs::read(home.dirs.store_path()).unwrap();
    for bytes in [&wal, &main] {
        assert!(!contains(bytes, MARKER.as_bytes()));
        assert!(!contains(bytes, b"KATACHI-WORKSPACE-NAME"));
        assert!(
            !contains(bytes, b"SQLite format 3"),
            "not even the SQLite header is in clear"
        );
        assert!(!contains(bytes, b"CREATE TABLE"));
    }
    // The same data is readable through the key.
    let store = agent.store().unwrap();
    assert_eq!(store.chat().messages(s.id, 0, 100).unwrap().len(), 50);
}
