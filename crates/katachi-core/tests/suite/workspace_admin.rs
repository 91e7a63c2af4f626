//! `workspace_admin`: each change reaches the store, the audit log (by the named actor) and the
//! outbox; the list says which folders are gone.

use katachi_core::store::{Actor, AddOutcome, AuditKey};
use katachi_core::vault::MemoryKeystore;
use katachi_core::workspace_admin::{self, PolicyChange};
use katachi_core::{AgentHome, KatachiDirs};

use super::support::machine;

fn home(tmp: &tempfile::TempDir) -> AgentHome {
    let dirs = KatachiDirs::under(&tmp.path().join("home"));
    AgentHome::open_with_keystore(dirs, &machine("admin"), Box::new(MemoryKeystore::default()))
        .unwrap()
}

#[test]
fn added_workspace_is_audited_queued_and_listed_then_missing_once_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(&tmp);
    let ws = tmp.path().join("code");
    std::fs::create_dir(&ws).unwrap();

    let outcome = workspace_admin::add_workspace(&home, Actor::Tray, &ws).unwrap();
    assert!(matches!(outcome, AddOutcome::Added { .. }), "{outcome:?}");
    let store = home.store().unwrap();
    let records = store
        .audit(&AuditKey::derive(home.machine_key()))
        .recent(10)
        .unwrap();
    let added = records
        .iter()
        .find(|r| r.action == "workspace.add")
        .unwrap();
    assert_eq!(added.actor, "tray");
    assert_eq!(store.outbox().pending_count().unwrap(), 1);

    let listed = workspace_admin::list_workspaces(&home).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].exists);
    std::fs::remove_dir(&ws).unwrap();
    let listed = workspace_admin::list_workspaces(&home).unwrap();
    assert!(!listed[0].exists, "a deleted folder is listed as missing");

    let removed =
        workspace_admin::remove_workspace(&home, Actor::Cli, std::path::Path::new(&listed[0].path))
            .unwrap();
    assert_eq!(removed.path, listed[0].path);
    assert!(workspace_admin::list_workspaces(&home).unwrap().is_empty());
    assert_eq!(store.outbox().pending_count().unwrap(), 2);
}

#[test]
fn removing_a_folder_that_is_not_allowed_has_a_stable_code() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(&tmp);
    let err = workspace_admin::remove_workspace(&home, Actor::Cli, tmp.path()).unwrap_err();
    assert_eq!(err.code(), "workspace.not_allowed", "{err}");
}

#[test]
fn policy_set_adds_to_stored_overrides_and_reset_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(&tmp);
    let ws = tmp.path().join("code");
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    workspace_admin::add_workspace(&home, Actor::Cli, &ws).unwrap();

    let first = PolicyChange {
        workspace: ws.join("sub"),
        allow_hosts: vec!["example.com".to_owned()],
        env_files: Some(true),
        ..PolicyChange::default()
    };
    workspace_admin::set_policy(&home, Actor::Cli, &first).unwrap();
    let second = PolicyChange {
        workspace: ws.clone(),
        allow_hosts: vec!["*.crates.io".to_owned()],
        ..PolicyChange::default()
    };
    let set = workspace_admin::set_policy(&home, Actor::Cli, &second).unwrap();
    assert_eq!(set.overrides.allow_hosts, ["example.com", "*.crates.io"]);
    assert!(
        set.overrides.allow_env_files,
        "an unset choice keeps the stored one"
    );

    let reset = workspace_admin::reset_policy(&home, Actor::Cli, &ws).unwrap();
    assert!(reset.removed);
    let outside = PolicyChange {
        workspace: tmp.path().to_path_buf(),
        ..PolicyChange::default()
    };
    let err = workspace_admin::set_policy(&home, Actor::Cli, &outside).unwrap_err();
    assert_eq!(err.code(), "workspace.not_allowed", "{err}");
}
