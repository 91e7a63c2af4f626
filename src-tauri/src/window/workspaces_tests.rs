//! Workspace changes from the window on a real store (in-memory keystore).

use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::sandbox::WorkspaceOverrides;
use katachi_core::store::AuditKey;
use katachi_core::vault::MemoryKeystore;
use katachi_core::workspace_admin;
use katachi_core::{AgentHome, KatachiDirs};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn home(root: &Path) -> Result<AgentHome, Box<dyn std::error::Error>> {
    Ok(AgentHome::open_with_keystore(
        KatachiDirs::under(root),
        &SystemFingerprint,
        Box::new(MemoryKeystore::default()),
    )?)
}

fn policy(path: &str, commands: &[&str], hosts: &[&str]) -> WorkspacePolicy {
    WorkspacePolicy {
        path: path.to_owned(),
        allowed_commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
    }
}

#[test]
fn a_folder_added_from_the_window_is_listed_and_audited_as_the_tray() -> TestResult {
    let root = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;
    let path = folder.path().to_string_lossy().into_owned();
    let home = home(root.path())?;

    let listed = add(&home, &path)?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, path);
    assert!(listed[0].exists);

    let store = home.store()?;
    let records = store
        .audit(&AuditKey::derive(home.machine_key()))
        .recent(5)?;
    assert_eq!(records[0].action, "workspace.add");
    assert_eq!(records[0].actor, "tray");

    assert!(remove(&home, &path)?.is_empty());
    Ok(())
}

#[test]
fn a_folder_that_is_gone_is_listed_as_missing() -> TestResult {
    let root = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;
    let path = folder.path().to_string_lossy().into_owned();
    let home = home(root.path())?;
    add(&home, &path)?;
    drop(folder);
    let listed = list(&home)?;
    assert_eq!(listed[0].path, path);
    assert!(!listed[0].exists);
    Ok(())
}

#[test]
fn a_missing_folder_is_refused_as_invalid_input_with_the_reason() -> TestResult {
    let root = tempfile::tempdir()?;
    let home = home(root.path())?;
    let err = add(&home, "/nonexistent/katachi-window-test")
        .err()
        .ok_or("a missing folder was allowed")?;
    assert_eq!(err.code, IpcCode::InvalidInput);
    assert!(err.message.contains("workspace."), "{}", err.message);
    Ok(())
}

#[test]
fn saving_a_policy_replaces_the_lists_and_keeps_the_other_overrides() -> TestResult {
    let root = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;
    let path = folder.path().to_string_lossy().into_owned();
    let home = home(root.path())?;
    add(&home, &path)?;
    // `.env` files allowed from the CLI: the window's save must not drop it
    let change = workspace_admin::PolicyChange {
        workspace: folder.path().to_path_buf(),
        env_files: Some(true),
        ..workspace_admin::PolicyChange::default()
    };
    workspace_admin::set_policy(&home, Actor::Cli, &change)?;

    set_policy(&home, &policy(&path, &["git", "sh"], &["crates.io"]))?;
    let listed = set_policy(&home, &policy(&path, &["git"], &[]))?;
    assert_eq!(listed[0].allowed_commands, ["git"]);
    assert!(listed[0].allowed_hosts.is_empty());

    let store = home.store()?;
    let ws = workspace_admin::workspace_of(&store, folder.path())?;
    assert!(WorkspaceOverrides::load(&store, &ws)?.allow_env_files);
    Ok(())
}

#[test]
fn an_invalid_policy_is_refused_and_the_stored_one_is_kept() -> TestResult {
    let root = tempfile::tempdir()?;
    let folder = tempfile::tempdir()?;
    let path = folder.path().to_string_lossy().into_owned();
    let home = home(root.path())?;
    add(&home, &path)?;
    set_policy(&home, &policy(&path, &["git"], &["crates.io"]))?;

    let err = set_policy(&home, &policy(&path, &["no-such-command-katachi"], &[]))
        .err()
        .ok_or("an unknown command was allowed")?;
    assert_eq!(err.code, IpcCode::InvalidInput);
    let listed = list(&home)?;
    assert_eq!(listed[0].allowed_commands, ["git"]);
    assert_eq!(listed[0].allowed_hosts, ["crates.io"]);
    Ok(())
}
