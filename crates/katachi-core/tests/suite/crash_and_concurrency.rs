//! Real processes: several writers at once, and `kill -9` in the middle of writes.
//!
//! The child processes are this test binary re-run with `KATACHI_TEST_CHILD` set: the `child_*`
//! functions below are ignored in a normal run and do nothing without that variable.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use katachi_core::store::{Role, Store};
use katachi_core::vault::{seal, unseal, DerivedKey, Purpose};

const CHILD_ENV: &str = "KATACHI_TEST_CHILD";
const DIR_ENV: &str = "KATACHI_TEST_DIR";

fn key() -> DerivedKey {
    DerivedKey::from_bytes([0x42; 32], Purpose::STORE)
}

fn sealed_key() -> DerivedKey {
    DerivedKey::from_bytes([0x43; 32], Purpose::AGENT_CREDENTIALS)
}

fn spawn_child(role: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("suite::crash_and_concurrency::child_{role}"),
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, role)
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn child_dir(role: &str) -> Option<PathBuf> {
    (std::env::var(CHILD_ENV).ok()? == role)
        .then(|| PathBuf::from(std::env::var_os(DIR_ENV).unwrap()))
}

/// Child: appends messages in transactions of 10 forever, printing each committed total.
#[test]
#[ignore = "child process of kill_9_during_writes_leaves_store_and_sealed_file_intact"]
fn child_writer_forever() {
    let Some(dir) = child_dir("writer_forever") else {
        return;
    };
    let store = Store::open(&dir.join("k.db"), &key()).unwrap();
    let s = store.chat().create_session(None, "crash").unwrap();
    let sealed = dir.join("cred.sealed");
    for batch in 1u64.. {
        let texts: Vec<String> = (0..10)
            .map(|i| format!("batch {batch} message {i} {}", "x".repeat(200)))
            .collect();
        store
            .chat()
            .append_many(s.id, texts.iter().map(|t| (Role::User, t.as_str())))
            .unwrap();
        let blob = seal(&sealed_key(), &batch.to_be_bytes()).unwrap();
        katachi_core::atomic_file::write_private_atomically(&sealed, &blob).unwrap();
        println!("committed {batch}");
    }
}

/// Child: appends 200 messages, one transaction each, then exits.
#[test]
#[ignore = "child process of concurrent_writer_processes_lose_nothing"]
fn child_writer_200() {
    let Some(dir) = child_dir("writer_200") else {
        return;
    };
    let store = Store::open(&dir.join("k.db"), &key()).unwrap();
    let s = store
        .chat()
        .create_session(None, &format!("pid {}", std::process::id()))
        .unwrap();
    for i in 0..200 {
        store
            .chat()
            .append(s.id, Role::Assistant, &format!("{i}"))
            .unwrap();
    }
    println!("done");
}

#[test]
fn kill_9_during_writes_leaves_store_and_sealed_file_intact() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(&tmp.path().join("k.db"), &key()).unwrap());
    for round in 0..3 {
        let mut child = spawn_child("writer_forever", tmp.path());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = 0u64;
        // Let it commit a varying number of batches, then SIGKILL it mid-stream.
        while last < 20 + round * 17 && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) => last = l.trim_start_matches("committed ").parse().unwrap_or(last),
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(last > 0, "child committed nothing in round {round}");

        let store = Store::open(&tmp.path().join("k.db"), &key()).unwrap();
        let count = store.chat().message_count().unwrap();
        assert_eq!(
            count % 10,
            0,
            "transactions are all-or-nothing, got {count}"
        );
        drop(store);
        assert_eq!(integrity(&tmp.path().join("k.db")), "ok");
        let blob = std::fs::read(tmp.path().join("cred.sealed")).unwrap();
        let n = u64::from_be_bytes(
            unseal(&sealed_key(), &blob, "cred")
                .unwrap()
                .expose()
                .try_into()
                .unwrap(),
        );
        assert!(n >= last, "sealed counter {n} behind last reported {last}");
        let dir_entries = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".katachi-tmp-"));
        // A kill between temp write and rename may leave one temp file; never a torn target.
        assert!(dir_entries.count() <= 1);
    }
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\";",
        hex::encode(key().expose())
    ))
    .unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn concurrent_writer_processes_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(&tmp.path().join("k.db"), &key()).unwrap());
    let children: Vec<Child> = (0..4)
        .map(|_| spawn_child("writer_200", tmp.path()))
        .collect();
    for mut c in children {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut c.stdout.take().unwrap(), &mut out).unwrap();
        assert!(c.wait().unwrap().success(), "a writer failed");
        assert!(out.contains("done"));
    }
    let store = Store::open(&tmp.path().join("k.db"), &key()).unwrap();
    assert_eq!(store.chat().message_count().unwrap(), 800);
    assert_eq!(store.chat().sessions().unwrap().len(), 4);
}

#[test]
fn concurrent_threads_adding_workspaces_keep_the_list_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("k.db");
    drop(Store::open(&db, &key()).unwrap());
    let root = tmp.path().join("ws");
    for i in 0..8 {
        std::fs::create_dir_all(root.join(format!("p{i}"))).unwrap();
    }
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (db, root) = (db.clone(), root.clone());
            std::thread::spawn(move || {
                let store = Store::open(&db, &key()).unwrap();
                for j in 0..8 {
                    store
                        .workspaces()
                        .add(&root.join(format!("p{}", (i + j) % 8)), &[])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let list = Store::open(&db, &key())
        .unwrap()
        .workspaces()
        .list()
        .unwrap();
    assert_eq!(list.len(), 8, "each folder once");
}
