use super::*;
use crate::vault::{DerivedKey, Purpose};

struct Fx {
    tmp: tempfile::TempDir,
    store: Store,
    ws: Workspace,
}

fn fx() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(
        &tmp.path().join("s.db"),
        &DerivedKey::from_bytes([7; 32], Purpose::STORE),
    )
    .unwrap();
    let dir = tmp.path().join("ws");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let ws = match store.workspaces().add(&dir, &[]).unwrap() {
        crate::store::AddOutcome::Added { workspace, .. } => workspace,
        other => panic!("{other:?}"),
    };
    Fx { tmp, store, ws }
}

#[test]
fn stored_overrides_shape_the_workspace_policy() {
    let f = fx();
    let ov = WorkspaceOverrides {
        allow_commands: vec!["cat".into()],
        allow_hosts: vec!["crates.io".into()],
        allow_env_files: true,
        limits: LimitOverrides {
            wall_time_secs: Some(7),
            ..LimitOverrides::default()
        },
        allow_unsandboxed: true,
    };
    ov.save(&f.store, &f.ws).unwrap();
    // a folder inside the workspace gets the workspace's overrides
    let policy = SandboxPolicy::for_workspace(&f.store, &f.tmp.path().join("ws/sub"), &[])
        .unwrap()
        .build()
        .unwrap();
    assert!(policy.command("cat").is_ok());
    assert!(policy.command("sh").is_err());
    assert!(policy.allows_unsandboxed());
    assert_eq!(policy.allowed_hosts(), ["crates.io"]);
    assert!(policy.workspaces()[0].allow_env_files);
    assert_eq!(policy.limits().wall_time, Duration::from_secs(7));
    assert_eq!(policy.limits().processes, Limits::default().processes);
    // reset gives the defaults back
    assert!(f.store.sandbox_overrides().reset(f.ws.id).unwrap());
    let policy = SandboxPolicy::for_workspace(&f.store, Path::new(&f.ws.path), &[])
        .unwrap()
        .build()
        .unwrap();
    assert!(policy.command("cat").is_err() && policy.allowed_hosts().is_empty());
}

#[test]
fn bad_values_are_refused_before_they_are_stored() {
    let f = fx();
    for ov in [
        WorkspaceOverrides {
            allow_commands: vec!["no-such-program-katachi".into()],
            ..Default::default()
        },
        WorkspaceOverrides {
            allow_hosts: vec!["https://x".into()],
            ..Default::default()
        },
        WorkspaceOverrides {
            limits: LimitOverrides {
                processes: Some(0),
                ..Default::default()
            },
            ..Default::default()
        },
    ] {
        let e = ov.save(&f.store, &f.ws).unwrap_err();
        assert!(matches!(e, OverrideError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains(&f.ws.path), "{e}");
    }
    assert!(f.store.sandbox_overrides().get(f.ws.id).unwrap().is_none());
}

#[test]
fn corrupt_or_stale_stored_values_name_the_workspace_and_the_fix() {
    let f = fx();
    for (doc, want) in [
        ("{not json", "unreadable"),
        (r#"{"allow_commands": "git"}"#, "unreadable"),
        (r#"{"surprise": true}"#, "unreadable"),
        (
            r#"{"allow_commands": ["no-such-program-katachi"]}"#,
            "not valid",
        ),
    ] {
        f.store.sandbox_overrides().set(f.ws.id, doc).unwrap();
        let e = SandboxPolicy::for_workspace(&f.store, Path::new(&f.ws.path), &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(want) && text.contains(&f.ws.path),
            "{doc}: {text}"
        );
        assert!(
            text.contains("katachi sandbox policy reset --workspace"),
            "{text}"
        );
    }
}

#[test]
fn a_folder_outside_the_allowed_workspaces_has_no_policy() {
    let f = fx();
    let e = SandboxPolicy::for_workspace(&f.store, f.tmp.path(), &[]).unwrap_err();
    assert!(matches!(e, OverrideError::NotAWorkspace(_)), "{e}");
    assert!(WorkspaceOverrides::for_path(&f.store, f.tmp.path())
        .unwrap()
        .is_none());
}

#[test]
fn removing_the_workspace_removes_its_overrides() {
    let f = fx();
    let ov = WorkspaceOverrides {
        allow_env_files: true,
        ..Default::default()
    };
    ov.save(&f.store, &f.ws).unwrap();
    f.store.workspaces().remove(Path::new(&f.ws.path)).unwrap();
    assert!(f.store.sandbox_overrides().get(f.ws.id).unwrap().is_none());
}
