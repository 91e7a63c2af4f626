//! Real processes: several writers at once, and `kill -9` in the middle of an agent's writes (store,
//! audit chain, outbox, sealed files), round after round.
//!
//! The child processes are this test binary re-run with `KATACHI_TEST_CHILD` set: the `child_*`
//! functions below are ignored in a normal run and do nothing without that variable.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use katachi_core::store::{Actor, AuditEntry, AuditKey, Role, Store};
use katachi_core::vault::{DerivedKey, Purpose};
use katachi_core::workspace_admin;
use katachi_core::{AgentHome, KatachiDirs};

use super::support::machine;

const CHILD_ENV: &str = "KATACHI_TEST_CHILD";
const DIR_ENV: &str = "KATACHI_TEST_DIR";

fn key() -> DerivedKey {
    DerivedKey::from_bytes([0x42; 32], Purpose::STORE)
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

/// Child: writes as a busy agent does, forever, printing each committed batch number: 10 chat
/// messages in one transaction, 3 audit records in one chained append, a workspace allowed or
/// removed (store, audit record, outbox event), and both sealed credential files replaced.
#[test]
#[ignore = "child process of kill_9_during_writes_leaves_store_audit_chain_and_sealed_files_intact"]
fn child_agent_writing_forever() {
    let Some(dir) = child_dir("agent_writing_forever") else {
        return;
    };
    let home = crash_home(&dir);
    let store = home.store().unwrap();
    let key = AuditKey::derive(home.machine_key());
    let session = store.chat().create_session(None, "crash").unwrap();
    let workspace = dir.join("ws");
    let canonical = std::fs::canonicalize(&workspace).unwrap();
    for batch in 1u64.. {
        let texts: Vec<String> = (0..10)
            .map(|i| format!("batch {batch} message {i} {}", "x".repeat(200)))
            .collect();
        store
            .chat()
            .append_many(session.id, texts.iter().map(|t| (Role::User, t.as_str())))
            .unwrap();
        let entries: Vec<AuditEntry> = (0..3)
            .map(|i| {
                AuditEntry::new(Actor::Agent, "crash.write").with_detail(format!("{batch}.{i}"))
            })
            .collect();
        store.audit(&key).append_all(&entries).unwrap();
        let allowed = store
            .workspaces()
            .list()
            .unwrap()
            .iter()
            .any(|w| Path::new(&w.path) == canonical);
        if allowed {
            workspace_admin::remove_workspace(&home, Actor::Cli, &workspace).unwrap();
        } else {
            workspace_admin::add_workspace(&home, Actor::Cli, &workspace).unwrap();
        }
        home.agent_credentials()
            .write(home.machine_key(), &batch.to_be_bytes())
            .unwrap();
        home.tunnel_credentials()
            .write(home.machine_key(), &batch.to_be_bytes())
            .unwrap();
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

/// Rounds of [`kill_9_during_writes_leaves_store_audit_chain_and_sealed_files_intact`]: a few in
/// `make test`, the 100 with `KATACHI_CRASH_ROUNDS=100` (docs/PERFORMANCE.md).
fn crash_rounds() -> u64 {
    std::env::var("KATACHI_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// The agent home the crash child writes into: the file keystore (no D-Bus needed in the child)
/// and a fixed fingerprint, so the parent opens the very same machine key after each kill.
fn crash_home(dir: &Path) -> AgentHome {
    let dirs = KatachiDirs::under(&dir.join("home"));
    AgentHome::open(dirs, &machine("crash")).unwrap()
}

#[test]
fn kill_9_during_writes_leaves_store_audit_chain_and_sealed_files_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = KatachiDirs::under(&tmp.path().join("home"));
    std::fs::create_dir_all(dirs.config()).unwrap();
    std::fs::write(dirs.config_file(), "[keystore]\nbackend = \"file\"\n").unwrap();
    std::fs::create_dir(tmp.path().join("ws")).unwrap();
    drop(crash_home(tmp.path()).store().unwrap());
    let rounds = crash_rounds();
    let started = Instant::now();
    let mut batches = 0u64;
    for round in 0..rounds {
        let mut child = spawn_child("agent_writing_forever", tmp.path());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let it commit a varying number of batches, then SIGKILL it at a varying point of the
        // next one (a few hundred microseconds to a few milliseconds in).
        let target = 3 + (round * 7) % 19;
        let mut last = 0u64;
        while last < target && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) => last = l.trim_start_matches("committed ").parse().unwrap_or(last),
                _ => break,
            }
        }
        std::thread::sleep(Duration::from_micros(300 + (round * 977) % 4000));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(
            last >= target,
            "round {round}: the child stopped after {last} of {target} batches"
        );
        batches += last;
        check_agent_home_intact(tmp.path(), round, last);
    }
    let took = started.elapsed();
    eprintln!(
        "kill -9 during writes: {rounds} rounds, 0 failures, {batches} batches committed, {:.0} ms per round",
        took.as_secs_f64() * 1000.0 / rounds.max(1) as f64
    );
}

/// Everything a killed agent leaves must open: the machine key (file keystore + binding), the
/// store (integrity check, whole transactions only), the audit chain (verified end to end) and
/// both sealed files (at least as new as the last batch the child reported).
fn check_agent_home_intact(dir: &Path, round: u64, last: u64) {
    let home = crash_home(dir);
    let store = home.store().unwrap();
    let count = store.chat().message_count().unwrap();
    assert_eq!(
        count % 10,
        0,
        "round {round}: transactions are all-or-nothing, got {count} messages"
    );
    let report = store
        .audit(&AuditKey::derive(home.machine_key()))
        .verify()
        .unwrap_or_else(|e| panic!("round {round}: the audit chain does not verify: {e}"));
    assert!(report.records > 0, "round {round}: no audit records");
    drop(store);
    let key = home.machine_key().key_for(Purpose::STORE);
    assert_eq!(
        integrity(&home.dirs().store_path(), &key),
        "ok",
        "round {round}"
    );
    for file in [home.agent_credentials(), home.tunnel_credentials()] {
        let opened = file
            .read(home.machine_key())
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: {} does not open: {e}",
                    file.path().display()
                )
            })
            .unwrap_or_else(|| panic!("round {round}: {} is gone", file.path().display()));
        let n = u64::from_be_bytes(opened.expose().try_into().unwrap());
        assert!(
            n >= last,
            "round {round}: sealed counter {n} behind last reported {last}"
        );
    }
    // A kill between temp write and rename may leave one temp file (never a torn target). Once
    // it is older than a write could take, the next opening of the home removes it.
    let temps = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(home.dirs().credentials_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".katachi-tmp-"))
            .map(|e| e.path())
            .collect()
    };
    let left = temps();
    assert!(
        left.len() <= 1,
        "round {round}: {} temp files left",
        left.len()
    );
    let long_ago = std::time::SystemTime::now()
        - katachi_core::atomic_file::STALE_TEMP_AGE
        - Duration::from_secs(1);
    for t in &left {
        std::fs::File::options()
            .write(true)
            .open(t)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    drop(crash_home(dir));
    assert_eq!(temps(), Vec::<std::path::PathBuf>::new(), "round {round}");
}

fn integrity(path: &Path, key: &DerivedKey) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\";",
        hex::encode(key.expose())
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
