//! `katachi audit` and `katachi audit verify` end to end. Records come from real commands and from
//! katachi-core used as a library (as the tunnel's API does); tampering goes through raw SQL on the
//! SQLCipher file opened with this machine's store key — what an attacker holding only that key
//! could do — and `katachi audit verify` must name the record.

use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::store::{Actor, AuditEntry, AuditKey, Workspace};
use katachi_core::vault::Purpose;
use katachi_core::{AgentHome, KatachiDirs};

use super::support::Home;

/// The agent home of `home`, opened in this process (same keychain entry as the CLI).
fn agent_home(home: &Home) -> AgentHome {
    AgentHome::open(KatachiDirs::under(&home.home()), &SystemFingerprint).unwrap()
}

/// Runs `statements` directly on the store's SQLCipher connection, bypassing katachi.
fn tamper(home: &Home, statements: &str) {
    let agent = agent_home(home);
    let key = agent.machine_key().key_for(Purpose::STORE);
    let hex: String = key.expose().iter().map(|b| format!("{b:02x}")).collect();
    let conn = rusqlite::Connection::open(agent.dirs().store_path()).unwrap();
    conn.execute_batch(&format!("PRAGMA key = \"x'{hex}'\";"))
        .unwrap();
    conn.execute_batch(statements).unwrap();
}

/// Allows `n` folders with the CLI: `n` audit records.
fn add_workspaces(home: &Home, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let dir = home.mkdir(&format!("code/p{i}"));
            let run = home.run(&["workspace", "add", dir.to_str().unwrap()]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            std::fs::canonicalize(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn audit_lists_cli_commands_and_verify_passes_on_an_intact_log() {
    let home = Home::new();
    let empty = home.run(&["audit"]);
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    assert!(
        empty.stdout.contains("no calls recorded yet"),
        "{}",
        empty.stdout
    );

    let paths = add_workspaces(&home, 2);
    let rm = home.run(&["workspace", "rm", &paths[0]]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);

    let ledger = home.run(&["--json", "audit", "--limit", "2"]).json();
    assert_eq!(ledger["chain"]["intact"], true);
    assert_eq!(ledger["chain"]["records"], 3);
    let records = ledger["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "--limit");
    assert_eq!(records[0]["seq"], 3);
    assert_eq!(records[0]["action"], "workspace.remove");
    assert_eq!(records[0]["actor"], "cli");
    assert_eq!(records[0]["workspace_path"], paths[0].as_str());
    assert_eq!(ledger["total_bytes_out"], 0, "nothing left the machine");

    let verify = home.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(
        verify.stdout.contains("intact: 3 records"),
        "{}",
        verify.stdout
    );
    let json = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(json["records"], 3);
}

#[test]
fn bytes_out_are_totalled_per_workspace() {
    let home = Home::new();
    let paths = add_workspaces(&home, 2);
    {
        // two calls through the tunnel, as the agent API records them
        let agent = agent_home(&home);
        let store = agent.store().unwrap();
        let key = AuditKey::derive(agent.machine_key());
        let workspaces: Vec<Workspace> = store.workspaces().list().unwrap();
        for (ws, bytes) in workspaces.iter().zip([4096_u64, 100]) {
            let entry = AuditEntry::new(
                Actor::Browser {
                    user: "u-1".to_owned(),
                    session: "s-1".to_owned(),
                },
                "file.read",
            )
            .in_workspace(ws)
            .with_paths(["src/main.rs"])
            .with_bytes_out(bytes);
            store.audit(&key).append(&entry).unwrap();
        }
    }
    let ledger = home.run(&["--json", "audit"]).json();
    assert_eq!(ledger["chain"]["intact"], true);
    assert_eq!(ledger["total_bytes_out"], 4196);
    let egress = ledger["egress"].as_array().unwrap();
    assert_eq!(egress[0]["workspace_path"], paths[0].as_str());
    assert_eq!(
        (egress[0]["calls"].as_i64(), egress[0]["bytes_out"].as_i64()),
        (Some(2), Some(4096))
    );
    assert_eq!(egress[1]["bytes_out"], 100);
    assert_eq!(ledger["records"][0]["user"], "u-1");

    let text = home.run(&["audit"]);
    assert!(text.stdout.contains("4.0 KiB"), "{}", text.stdout);
    assert!(text.stdout.contains("session s-1"), "{}", text.stdout);
    assert!(text.stdout.contains("total"), "{}", text.stdout);
}

#[test]
fn an_edited_record_fails_verify_with_its_seq() {
    let home = Home::new();
    add_workspaces(&home, 3);
    // make a workspace look like it was never added
    tamper(
        &home,
        "UPDATE audit_log SET workspace_path = '/tmp/elsewhere' WHERE seq = 2;",
    );

    let json = home.run(&["--json", "audit", "verify"]);
    assert_eq!(json.code, 1, "{}", json.stdout);
    let error = &json.json()["error"];
    assert_eq!(error["code"], "audit.edited");
    assert_eq!(error["seq"], 2);

    let text = home.run(&["audit", "verify"]);
    assert_eq!(text.code, 1);
    assert!(
        text.stderr.contains("audit record 2 was edited"),
        "{}",
        text.stderr
    );

    // the ledger still prints, flagged
    let ledger = home.run(&["--json", "audit"]);
    assert_eq!(ledger.code, 0, "{}", ledger.stderr);
    let chain = &ledger.json()["chain"];
    assert_eq!(chain["intact"], false);
    assert_eq!(chain["code"], "audit.edited");
    assert_eq!(chain["seq"], 2);
}

#[test]
fn deleted_records_fail_verify_in_the_middle_and_at_the_end() {
    let home = Home::new();
    add_workspaces(&home, 4);
    tamper(&home, "DELETE FROM audit_log WHERE seq = 4;");
    let tail = home.run(&["--json", "audit", "verify"]);
    assert_eq!(tail.code, 1);
    assert_eq!(tail.json()["error"]["code"], "audit.truncated");
    assert_eq!(tail.json()["error"]["seq"], 4);

    tamper(&home, "DELETE FROM audit_log WHERE seq = 2;");
    let middle = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(middle["error"]["code"], "audit.deleted");
    assert_eq!(middle["error"]["seq"], 2);
}

#[test]
fn a_tampered_head_stops_commands_that_would_append() {
    let home = Home::new();
    let paths = add_workspaces(&home, 2);
    tamper(&home, "UPDATE audit_head SET seal = zeroblob(32);");
    let rm = home.run(&["--json", "workspace", "rm", &paths[1]]);
    assert_eq!(rm.code, 1, "{}", rm.stdout);
    assert_eq!(rm.json()["error"]["code"], "audit.head_tampered");
    assert_eq!(rm.json()["error"]["seq"], 2);
}
