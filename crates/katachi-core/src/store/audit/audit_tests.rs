//! The chain as a specification: round trip, every kind of tampering named with its seq, wrong
//! keys, concurrent writers, and v1 records sealed on first use. Tampering goes through raw SQL on
//! the (already decrypted) SQLCipher connection, as an attacker holding only the store key would.

use std::path::Path;

use rusqlite::types::Value;

use super::*;
use crate::fingerprint::Fingerprint;
use crate::secret::SecretBytes;
use crate::store::{Store, Workspace};
use crate::vault::{DerivedKey, MachineKey, Purpose};

/// The audit key of a simulated machine `m`.
fn audit_key(m: u8) -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![m])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![m; 32]), &fp))
}

fn open(path: &Path) -> Store {
    Store::open(path, &DerivedKey::from_bytes([1; 32], Purpose::STORE)).unwrap()
}

fn workspace() -> Workspace {
    Workspace {
        id: 7,
        path: "/home/dev/app".to_owned(),
        added_at: 0,
    }
}

fn browser() -> Actor {
    Actor::Browser {
        user: "user-1".to_owned(),
        session: "sess-9".to_owned(),
    }
}

/// A store at `tmp/name` with `n` records appended under `key`.
fn store_with(tmp: &Path, name: &str, key: &AuditKey, n: i64) -> Store {
    let s = open(&tmp.join(name));
    for i in 1..=n {
        let entry = AuditEntry::new(browser(), "file.read")
            .in_workspace(&workspace())
            .with_paths([format!("src/f{i}.rs")])
            .with_bytes_out(100 * u64::try_from(i).unwrap());
        assert_eq!(s.audit(key).append(&entry).unwrap(), i);
    }
    s
}

fn sql(s: &Store, statement: &str) {
    s.conn.execute_batch(statement).unwrap();
}

/// Overwrites record `seq` of `to` with record `seq` of `from`, every column but seq.
fn copy_record(from: &Store, to: &Store, seq: i64) {
    const COLS: [&str; 14] = [
        "at",
        "actor",
        "user_id",
        "browser_session",
        "action",
        "workspace_id",
        "workspace_path",
        "paths",
        "detail",
        "result",
        "bytes_out",
        "key_id",
        "prev_mac",
        "mac",
    ];
    let values: Vec<Value> = from
        .conn
        .query_row(
            &format!("SELECT {} FROM audit_log WHERE seq = ?1", COLS.join(", ")),
            [seq],
            |r| (0..COLS.len()).map(|i| r.get(i)).collect(),
        )
        .unwrap();
    let sets: Vec<String> = COLS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    let mut params = values;
    params.push(Value::Integer(seq));
    to.conn
        .execute(
            &format!(
                "UPDATE audit_log SET {} WHERE seq = ?{}",
                sets.join(", "),
                COLS.len() + 1
            ),
            rusqlite::params_from_iter(params),
        )
        .unwrap();
}

/// A byte-for-byte copy of the store file (a fork of the chain from here on).
fn fork(s: &Store, to: &Path) -> Store {
    sql(s, "PRAGMA wal_checkpoint(TRUNCATE);");
    std::fs::copy(s.path(), to).unwrap();
    open(to)
}

#[test]
fn appended_records_read_back_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = open(&tmp.path().join("a.db"));
    let log = s.audit(&key);
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport {
            records: 0,
            unsealed: 0,
            last_seq: None
        }
    );
    log.append(&AuditEntry::new(Actor::Cli, "workspace.add").in_workspace(&workspace()))
        .unwrap();
    log.append(
        &AuditEntry::new(browser(), "file.read")
            .in_workspace(&workspace())
            .with_paths(["src/main.rs", "weird\nname \"quoted\""])
            .with_detail("range=0-4096")
            .with_bytes_out(4096),
    )
    .unwrap();
    log.append(
        &AuditEntry::new(browser(), "workspaces.list")
            .with_result("tunnel.closed")
            .with_bytes_out(80),
    )
    .unwrap();

    let report = log.verify().unwrap();
    assert_eq!((report.records, report.last_seq), (3, Some(3)));

    let recent = log.recent(2).unwrap();
    assert_eq!(recent.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2]);
    let read = &recent[1];
    assert_eq!(read.actor, "browser");
    assert_eq!(read.user.as_deref(), Some("user-1"));
    assert_eq!(read.session.as_deref(), Some("sess-9"));
    assert_eq!(read.paths, ["src/main.rs", "weird\nname \"quoted\""]);
    assert_eq!(read.workspace_path.as_deref(), Some("/home/dev/app"));
    assert_eq!(read.detail, "range=0-4096");
    assert_eq!(recent[0].result, "tunnel.closed");

    let totals = log.egress_by_workspace().unwrap();
    assert_eq!(totals.len(), 2);
    assert_eq!(
        (totals[0].workspace_id, totals[0].calls, totals[0].bytes_out),
        (Some(7), 2, 4096)
    );
    assert_eq!(
        (totals[1].workspace_id, totals[1].calls, totals[1].bytes_out),
        (None, 1, 80)
    );
}

#[test]
fn an_edited_field_is_reported_with_its_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 4);
    // hide how much left the machine
    sql(&s, "UPDATE audit_log SET bytes_out = 0 WHERE seq = 3;");
    let err = s.audit(&key).verify().unwrap_err();
    assert!(matches!(err, AuditError::Edited { seq: 3 }), "{err}");
    assert_eq!((err.code(), err.seq()), ("audit.edited", Some(3)));
}

#[test]
fn every_sealed_column_is_covered_by_the_mac() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let edits = [
        "at = at + 1",
        "actor = 'cli'",
        "user_id = 'user-2'",
        "browser_session = NULL",
        "action = 'file.write'",
        "workspace_id = 8",
        "workspace_path = '/elsewhere'",
        "paths = '[]'",
        "detail = 'x'",
        "result = 'denied'",
        "bytes_out = bytes_out + 1",
        "key_id = NULL",
        "prev_mac = zeroblob(32)",
        "mac = NULL",
        "mac = zeroblob(32)",
    ];
    for (i, edit) in edits.iter().enumerate() {
        let s = store_with(tmp.path(), &format!("e{i}.db"), &key, 3);
        sql(&s, &format!("UPDATE audit_log SET {edit} WHERE seq = 2;"));
        let err = s.audit(&key).verify().unwrap_err();
        assert!(
            matches!(err, AuditError::Edited { seq: 2 }),
            "{edit}: {err}"
        );
    }
}

#[test]
fn a_deleted_middle_record_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 5);
    sql(&s, "DELETE FROM audit_log WHERE seq IN (2, 3);");
    let err = s.audit(&key).verify().unwrap_err();
    assert!(matches!(err, AuditError::Deleted { seq: 2 }), "{err}");
    // the first record too
    let s = store_with(tmp.path(), "b.db", &key, 2);
    sql(&s, "DELETE FROM audit_log WHERE seq = 1;");
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Deleted { seq: 1 })
    ));
}

#[test]
fn a_deleted_tail_is_caught_by_the_sealed_head() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 4);
    sql(&s, "DELETE FROM audit_log WHERE seq >= 3;");
    let err = s.audit(&key).verify().unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Truncated {
                seq: 3,
                head_seq: 4
            }
        ),
        "{err}"
    );
    // a later append keeps the gap visible instead of papering over it
    s.audit(&key)
        .append(&AuditEntry::new(Actor::Cli, "x"))
        .unwrap();
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Deleted { seq: 3 })
    ));
    // every record deleted, head kept
    let s = store_with(tmp.path(), "b.db", &key, 2);
    sql(&s, "DELETE FROM audit_log;");
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Truncated {
            seq: 1,
            head_seq: 2
        })
    ));
}

#[test]
fn a_rewound_head_is_detected_and_stops_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 3);
    // delete the last record and point the head at the one before (the seal cannot be recomputed)
    sql(
        &s,
        "DELETE FROM audit_log WHERE seq = 3;
         UPDATE audit_head SET seq = 2, mac = (SELECT mac FROM audit_log WHERE seq = 2);",
    );
    let err = s.audit(&key).verify().unwrap_err();
    assert!(matches!(err, AuditError::HeadTampered { seq: 2 }), "{err}");
    let refused = s
        .audit(&key)
        .append(&AuditEntry::new(Actor::Cli, "x"))
        .unwrap_err();
    assert!(
        matches!(refused, AuditError::HeadTampered { .. }),
        "{refused}"
    );
    assert_eq!(
        s.audit(&key).recent(10).unwrap().len(),
        2,
        "nothing appended"
    );
}

#[test]
fn a_deleted_head_is_detected_and_stops_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 3);
    sql(
        &s,
        "DELETE FROM audit_log WHERE seq = 3; DELETE FROM audit_head;",
    );
    let err = s.audit(&key).verify().unwrap_err();
    assert!(matches!(err, AuditError::HeadMissing { seq: 2 }), "{err}");
    assert!(matches!(
        s.audit(&key).append(&AuditEntry::new(Actor::Cli, "x")),
        Err(AuditError::HeadMissing { seq: 2 })
    ));
}

#[test]
fn reordered_records_are_reported_with_their_original_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 4);
    sql(
        &s,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 3;
         UPDATE audit_log SET seq = 3 WHERE seq = 100;",
    );
    let err = s.audit(&key).verify().unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Reordered {
                seq: 2,
                original_seq: 3
            }
        ),
        "{err}"
    );
    // removing a record and renumbering the rest to close the gap is caught the same way
    let s = store_with(tmp.path(), "b.db", &key, 4);
    sql(
        &s,
        "DELETE FROM audit_log WHERE seq = 2;
         UPDATE audit_log SET seq = seq - 1 WHERE seq > 2;",
    );
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Reordered {
            seq: 2,
            original_seq: 3
        })
    ));
}

#[test]
fn a_record_copied_from_another_machine_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (audit_key(1), audit_key(2));
    let s = store_with(tmp.path(), "ours.db", &ours, 3);
    let other = store_with(tmp.path(), "theirs.db", &theirs, 3);
    copy_record(&other, &s, 2);
    let err = s.audit(&ours).verify().unwrap_err();
    assert!(matches!(err, AuditError::WrongKey { seq: 2 }), "{err}");
    assert_eq!(err.code(), "audit.wrong_key");
}

#[test]
fn another_machines_key_verifies_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store_with(tmp.path(), "a.db", &audit_key(1), 2);
    assert!(matches!(
        s.audit(&audit_key(2)).verify(),
        Err(AuditError::WrongKey { seq: 1 })
    ));
    // nor can it append: the head was sealed with the other key
    assert!(matches!(
        s.audit(&audit_key(2))
            .append(&AuditEntry::new(Actor::Cli, "x")),
        Err(AuditError::HeadTampered { seq: 2 })
    ));
}

#[test]
fn a_record_added_past_the_head_is_reported_and_blocks_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 2);
    // a perfect copy of record 2's seal, placed as record 3
    sql(
        &s,
        "INSERT INTO audit_log (seq, at, actor, action, detail, result, bytes_out, paths, key_id, prev_mac, mac)
         SELECT 3, at, actor, action, detail, result, bytes_out, paths, key_id, mac, mac FROM audit_log WHERE seq = 2;",
    );
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Inserted { seq: 3 })
    ));
    assert!(matches!(
        s.audit(&key).append(&AuditEntry::new(Actor::Cli, "x")),
        Err(AuditError::Inserted { seq: 3 })
    ));
    let s = store_with(tmp.path(), "b.db", &key, 1);
    sql(
        &s,
        "INSERT INTO audit_log (seq, at, actor, action, detail, result) VALUES (0, 0, 'cli', 'x', '', 'ok');",
    );
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Inserted { seq: 0 })
    ));
}

#[test]
fn a_record_spliced_from_a_fork_of_the_log_breaks_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 2);
    let forked = fork(&s, &tmp.path().join("fork.db"));
    for (store, action) in [(&s, "file.read"), (&forked, "file.write")] {
        for _ in 0..2 {
            store
                .audit(&key)
                .append(&AuditEntry::new(Actor::Cli, action))
                .unwrap();
        }
    }
    // record 3 from the fork is genuine and follows record 2, but record 4 does not follow it
    copy_record(&forked, &s, 3);
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Unlinked { seq: 4 })
    ));
    // the fork's last record: genuine, but not the one the head was sealed with
    let s2 = store_with(tmp.path(), "c.db", &key, 2);
    let forked2 = fork(&s2, &tmp.path().join("fork2.db"));
    s2.audit(&key)
        .append(&AuditEntry::new(Actor::Cli, "a"))
        .unwrap();
    forked2
        .audit(&key)
        .append(&AuditEntry::new(Actor::Cli, "b"))
        .unwrap();
    copy_record(&forked2, &s2, 3);
    assert!(matches!(
        s2.audit(&key).verify(),
        Err(AuditError::Unlinked { seq: 3 })
    ));
}

#[test]
fn concurrent_writers_keep_one_valid_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.db");
    let key = audit_key(1);
    drop(open(&path));
    const THREADS: i64 = 4;
    const EACH: i64 = 40;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (path, key) = (&path, &key);
            scope.spawn(move || {
                // one connection per thread, as the store requires
                let s = open(path);
                for i in 0..EACH {
                    s.audit(key)
                        .append(&AuditEntry::new(Actor::Cli, format!("t{t}.{i}")))
                        .unwrap();
                }
            });
        }
    });
    let s = open(&path);
    let report = s.audit(&key).verify().unwrap();
    assert_eq!(report.records, u64::try_from(THREADS * EACH).unwrap());
    assert_eq!(report.last_seq, Some(THREADS * EACH));
}

#[test]
fn records_from_before_the_chain_are_sealed_by_the_first_append() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = open(&tmp.path().join("a.db"));
    // what a v1 katachi wrote
    sql(
        &s,
        "INSERT INTO audit_log (at, actor, action, detail, result, bytes_out) VALUES
           (1, 'cli', 'workspace.add', '/a', 'ok', 0),
           (2, 'cli', 'workspace.remove', '/a', 'ok', 0);",
    );
    let before = s.audit(&key).verify().unwrap();
    assert_eq!((before.records, before.unsealed), (2, 2));
    assert_eq!(
        s.audit(&key)
            .append(&AuditEntry::new(Actor::Cli, "workspace.add"))
            .unwrap(),
        3
    );
    let after = s.audit(&key).verify().unwrap();
    assert_eq!((after.records, after.unsealed), (3, 0));
    // and they are protected from then on
    sql(&s, "UPDATE audit_log SET detail = '/b' WHERE seq = 1;");
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Edited { seq: 1 })
    ));
}

#[test]
fn field_boundaries_are_part_of_the_mac() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = open(&tmp.path().join("a.db"));
    s.audit(&key)
        .append(&AuditEntry::new(Actor::Cli, "ab").with_detail("c"))
        .unwrap();
    // the same bytes split differently between two fields must not verify
    sql(
        &s,
        "UPDATE audit_log SET action = 'a', detail = 'bc' WHERE seq = 1;",
    );
    assert!(matches!(
        s.audit(&key).verify(),
        Err(AuditError::Edited { seq: 1 })
    ));
}

#[test]
fn the_audit_key_never_prints() {
    let shown = format!("{:?}", audit_key(1));
    assert!(shown.contains("redacted"), "{shown}");
    assert_ne!(audit_key(1).key_id(), audit_key(2).key_id());
}

#[test]
fn a_batch_is_appended_in_one_transaction_and_chains_like_single_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 2);
    let batch: Vec<AuditEntry> = (0..5)
        .map(|i| AuditEntry::new(browser(), "file.read").with_bytes_out(i))
        .collect();
    assert_eq!(s.audit(&key).append_all(&batch).unwrap(), Some(7));
    assert_eq!(
        s.audit(&key).append_all(&[]).unwrap(),
        None,
        "nothing to do"
    );
    assert_eq!(s.audit(&key).append(&batch[0]).unwrap(), 8);
    assert_eq!(s.audit(&key).verify().unwrap().records, 8);
}

#[test]
fn a_refused_batch_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let s = store_with(tmp.path(), "a.db", &key, 2);
    sql(&s, "UPDATE audit_head SET seal = zeroblob(32);");
    let batch = [
        AuditEntry::new(browser(), "a"),
        AuditEntry::new(browser(), "b"),
    ];
    assert!(matches!(
        s.audit(&key).append_all(&batch),
        Err(AuditError::HeadTampered { seq: 2 })
    ));
    assert_eq!(s.audit(&key).recent(10).unwrap().len(), 2);
}

#[test]
fn check_appendable_tells_whether_an_append_would_go_through() {
    let tmp = tempfile::tempdir().unwrap();
    let key = audit_key(1);
    let fresh = open(&tmp.path().join("fresh.db"));
    assert!(fresh.audit(&key).check_appendable().is_ok(), "empty log");
    let s = store_with(tmp.path(), "a.db", &key, 2);
    assert!(s.audit(&key).check_appendable().is_ok());
    sql(&s, "UPDATE audit_head SET seal = zeroblob(32);");
    assert!(matches!(
        s.audit(&key).check_appendable(),
        Err(AuditError::HeadTampered { seq: 2 })
    ));
    let gone = store_with(tmp.path(), "b.db", &key, 2);
    sql(&gone, "DELETE FROM audit_head;");
    assert!(matches!(
        gone.audit(&key).check_appendable(),
        Err(AuditError::HeadMissing { seq: 2 })
    ));
}
