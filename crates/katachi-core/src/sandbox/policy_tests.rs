use super::*;

#[test]
fn command_resolves_to_an_absolute_binary_from_the_trusted_path() {
    let ws = tempfile::tempdir().unwrap();
    let p = SandboxPolicy::builder()
        .workspace(ws.path(), false)
        .allow_command("cat")
        .build()
        .unwrap();
    let cat = p.command("cat").unwrap();
    assert!(
        cat.path.is_absolute() && cat.path.ends_with("cat"),
        "{cat:?}"
    );
}

#[test]
fn command_with_a_path_or_unknown_name_is_refused() {
    for bad in ["./cat", "/bin/cat", "", ".."] {
        let e = SandboxPolicy::builder()
            .allow_command(bad)
            .build()
            .unwrap_err();
        assert!(matches!(e, PolicyError::BadCommandName(_)), "{bad}: {e}");
    }
    let e = SandboxPolicy::builder()
        .allow_command("no-such-program-katachi")
        .build()
        .unwrap_err();
    assert!(matches!(e, PolicyError::CommandNotFound { .. }), "{e}");
}

#[test]
fn command_not_on_the_allowlist_is_an_exec_denial_saying_how_to_allow_it() {
    let p = SandboxPolicy::builder()
        .allow_command("cat")
        .build()
        .unwrap();
    let d = p.command("sh").unwrap_err();
    assert_eq!(d.kind, DenialKind::Exec);
    assert_eq!(d.target, "sh");
    assert!(d.how_to_allow.contains("--allow-cmd sh"));
}

#[test]
fn root_and_system_folders_are_not_workspaces() {
    for bad in ["/", "/etc", "/usr"] {
        let e = SandboxPolicy::builder()
            .workspace(bad, false)
            .build()
            .unwrap_err();
        assert!(matches!(e, PolicyError::SystemFolder(_)), "{bad}: {e}");
    }
}

#[test]
fn credential_carrying_env_names_are_refused() {
    let e = SandboxPolicy::builder()
        .env_allowlist(["LANG", "SSH_AUTH_SOCK"])
        .build()
        .unwrap_err();
    assert!(matches!(e, PolicyError::ForbiddenEnv(n) if n == "SSH_AUTH_SOCK"));
}

#[test]
fn hosts_are_checked_and_zero_limits_refused() {
    assert!(SandboxPolicy::builder()
        .allow_host("crates.io")
        .build()
        .is_ok());
    assert!(SandboxPolicy::builder()
        .allow_host("*.npmjs.org")
        .build()
        .is_ok());
    assert!(SandboxPolicy::builder().allow_host("a b").build().is_err());
    let limits = Limits {
        output_bytes: 0,
        ..Limits::default()
    };
    assert!(matches!(
        SandboxPolicy::builder().limits(limits).build(),
        Err(PolicyError::ZeroLimit("output"))
    ));
}
