//! The store's schema, one migration per version (tracked in `PRAGMA user_version` by
//! `rusqlite_migration`). Migrations only ever get appended; a released one never changes.

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

use super::{Result, StoreError};

/// Every migration, oldest first.
const MIGRATIONS: &[M<'static>] = &[
    // v1: the tables of the foundation issue.
    M::up(
        "CREATE TABLE allowed_workspaces (
            id        INTEGER PRIMARY KEY,
            path      TEXT NOT NULL UNIQUE,
            added_at  INTEGER NOT NULL
         );
         CREATE TABLE chat_sessions (
            id            INTEGER PRIMARY KEY,
            workspace_id  INTEGER REFERENCES allowed_workspaces(id) ON DELETE SET NULL,
            title         TEXT NOT NULL,
            created_at    INTEGER NOT NULL,
            updated_at    INTEGER NOT NULL
         );
         CREATE TABLE messages (
            id          INTEGER PRIMARY KEY,
            session_id  INTEGER NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
            role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
            content     TEXT NOT NULL,
            created_at  INTEGER NOT NULL
         );
         CREATE INDEX messages_by_session ON messages(session_id, id);
         CREATE TABLE workspace_memory (
            workspace_id  INTEGER NOT NULL REFERENCES allowed_workspaces(id) ON DELETE CASCADE,
            key           TEXT NOT NULL,
            value         TEXT NOT NULL,
            updated_at    INTEGER NOT NULL,
            PRIMARY KEY (workspace_id, key)
         );
         CREATE TABLE activity_outbox (
            event_id         TEXT PRIMARY KEY,
            kind             TEXT NOT NULL,
            payload          TEXT NOT NULL,
            created_at       INTEGER NOT NULL,
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_at  INTEGER NOT NULL DEFAULT 0
         );
         CREATE TABLE audit_log (
            seq        INTEGER PRIMARY KEY,
            at         INTEGER NOT NULL,
            actor      TEXT NOT NULL,
            action     TEXT NOT NULL,
            detail     TEXT NOT NULL,
            result     TEXT NOT NULL,
            bytes_out  INTEGER NOT NULL DEFAULT 0
         );",
    ),
    // v2: the audit log becomes a tamper-evident chain and an egress ledger (tunnel issue).
    // Each record: who (user, browser session), which workspace and paths, and the chain columns
    // (key id, predecessor's MAC, own MAC; NULL on v1 records until the first append seals them).
    // No foreign key to allowed_workspaces: ON DELETE would rewrite sealed records.
    // `audit_head` holds the sealed end of the chain (last seq and MAC, and a MAC over both).
    M::up(
        "ALTER TABLE audit_log ADD COLUMN user_id TEXT;
         ALTER TABLE audit_log ADD COLUMN browser_session TEXT;
         ALTER TABLE audit_log ADD COLUMN workspace_id INTEGER;
         ALTER TABLE audit_log ADD COLUMN workspace_path TEXT;
         ALTER TABLE audit_log ADD COLUMN paths TEXT NOT NULL DEFAULT '[]';
         ALTER TABLE audit_log ADD COLUMN key_id BLOB;
         ALTER TABLE audit_log ADD COLUMN prev_mac BLOB;
         ALTER TABLE audit_log ADD COLUMN mac BLOB;
         CREATE INDEX audit_log_egress ON audit_log(workspace_id, workspace_path, bytes_out);
         CREATE TABLE audit_head (
            id    INTEGER PRIMARY KEY CHECK (id = 1),
            seq   INTEGER NOT NULL,
            mac   BLOB NOT NULL,
            seal  BLOB NOT NULL
         );",
    ),
    // v3: per-workspace sandbox overrides (sandbox issue): one JSON document per allowed
    // workspace (allowed commands and hosts, `.env` access, limits), parsed and checked by
    // `sandbox::overrides`; removed with the workspace.
    M::up(
        "CREATE TABLE sandbox_overrides (
            workspace_id  INTEGER PRIMARY KEY REFERENCES allowed_workspaces(id) ON DELETE CASCADE,
            policy        TEXT NOT NULL,
            updated_at    INTEGER NOT NULL
         );",
    ),
    // v4: AI operations (AI issue). A message's structured part (an assistant's tool calls, a tool
    // result's call id and outcome, a summary's range) as JSON beside its text; the approvals
    // ledger (every decision, revocable session grants); the provider each workspace uses (row 0:
    // the default for all), which follows its workspace out.
    M::up(
        "ALTER TABLE messages ADD COLUMN payload TEXT;
         CREATE INDEX chat_sessions_by_workspace ON chat_sessions(workspace_id, updated_at);
         CREATE TABLE ai_approvals (
            id            INTEGER PRIMARY KEY,
            workspace_id  INTEGER NOT NULL REFERENCES allowed_workspaces(id) ON DELETE CASCADE,
            session_id    INTEGER REFERENCES chat_sessions(id) ON DELETE CASCADE,
            tool          TEXT NOT NULL,
            subject       TEXT NOT NULL,
            decision      TEXT NOT NULL CHECK (decision IN ('once', 'session', 'deny', 'expired')),
            decided_at    INTEGER NOT NULL,
            revoked_at    INTEGER
         );
         CREATE INDEX ai_approvals_by_workspace ON ai_approvals(workspace_id, id);
         CREATE INDEX ai_approvals_grants ON ai_approvals(session_id, tool, subject)
            WHERE decision = 'session' AND revoked_at IS NULL;
         CREATE TABLE ai_settings (
            workspace_id  INTEGER PRIMARY KEY,
            provider      TEXT NOT NULL,
            model         TEXT NOT NULL,
            base_url      TEXT,
            key_name      TEXT,
            updated_at    INTEGER NOT NULL
         );
         CREATE TRIGGER ai_settings_follow_workspace AFTER DELETE ON allowed_workspaces
         BEGIN DELETE FROM ai_settings WHERE workspace_id = old.id; END;",
    ),
    // v5: a chat session's id is never given again after the session is deleted (a browser tab
    // or a relay event naming session 7 never means another conversation). SQLite reuses the
    // highest id once its row is gone, so the highest id ever given is kept beside the table.
    M::up(
        "CREATE TABLE chat_session_ids (
            highest  INTEGER NOT NULL
         );
         INSERT INTO chat_session_ids (highest) SELECT coalesce(max(id), 0) FROM chat_sessions;
         CREATE TRIGGER chat_session_ids_follow AFTER INSERT ON chat_sessions
         BEGIN UPDATE chat_session_ids SET highest = max(highest, new.id); END;",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the schema to the latest version; refuses a newer one without touching it.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: latest_version(),
        });
    }
    if found < latest_version() {
        Migrations::from_slice(MIGRATIONS).to_latest(conn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(Migrations::from_slice(MIGRATIONS).validate().is_ok());
    }

    #[test]
    fn v1_audit_records_survive_v2_and_are_sealed_by_the_first_append() {
        use crate::store::{Actor, AuditEntry, AuditKey, Store};
        use crate::vault::{DerivedKey, MachineKey, Purpose};

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v1.db");
        let store_key = DerivedKey::from_bytes([1; 32], Purpose::STORE);
        {
            // a store as a v1 katachi left it
            let mut conn = Connection::open(&path).unwrap();
            super::super::apply_key(&conn, &store_key).unwrap();
            Migrations::from_slice(&MIGRATIONS[..1])
                .to_latest(&mut conn)
                .unwrap();
            conn.execute_batch(
                "INSERT INTO audit_log (at, actor, action, detail, result, bytes_out)
                 VALUES (1, 'cli', 'workspace.add', '/a', 'ok', 0);",
            )
            .unwrap();
        }
        let store = Store::open(&path, &store_key).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
        let fp = crate::Fingerprint::from_components([("machine_id", vec![1])]).unwrap();
        let key = AuditKey::derive(&MachineKey::derive(
            &crate::SecretBytes::new(vec![1; 32]),
            &fp,
        ));
        let log = store.audit(&key);
        assert_eq!(log.verify().unwrap().unsealed, 1);
        let old = &log.recent(1).unwrap()[0];
        assert_eq!((old.detail.as_str(), old.paths.len()), ("/a", 0));
        log.append(&AuditEntry::new(Actor::Cli, "workspace.remove"))
            .unwrap();
        let report = log.verify().unwrap();
        assert_eq!((report.records, report.unsealed), (2, 0));
    }
}
