//! Sealed credential files on disk: tampering, truncation, wrong version, and failed saves.

use katachi_core::vault::SealError;

use super::support::TestHome;

#[test]
fn tampered_and_truncated_files_get_distinct_errors_and_stay_untouched() {
    let home = TestHome::new();
    let agent = home.open("a");
    let file = agent.agent_credentials();
    file.write(agent.machine_key(), b"{\"token\":\"abc\"}")
        .unwrap();
    let good = std::fs::read(file.path()).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    std::fs::write(file.path(), &flipped).unwrap();
    assert!(matches!(
        file.read(agent.machine_key()),
        Err(SealError::Tampered { .. })
    ));
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        flipped,
        "left as found"
    );

    std::fs::write(file.path(), &good[..20]).unwrap();
    assert!(matches!(
        file.read(agent.machine_key()),
        Err(SealError::Truncated { .. })
    ));

    let mut newer = good.clone();
    newer[8] = 2;
    std::fs::write(file.path(), &newer).unwrap();
    let err = file.read(agent.machine_key()).unwrap_err();
    assert!(matches!(
        err,
        SealError::UnsupportedVersion { found: 2, .. }
    ));
    assert!(err.to_string().contains("upgrade katachi"));

    std::fs::write(file.path(), b"{\"token\":\"plaintext\"}").unwrap();
    assert!(matches!(
        file.read(agent.machine_key()),
        Err(SealError::NotSealed { .. })
    ));

    // A tunnel credential file dropped where the agent credentials belong.
    agent
        .tunnel_credentials()
        .write(agent.machine_key(), b"tunnel")
        .unwrap();
    std::fs::copy(agent.tunnel_credentials().path(), file.path()).unwrap();
    assert!(matches!(
        file.read(agent.machine_key()),
        Err(SealError::WrongPurpose { .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_credential_is_kept_when_saving_it_fails_and_saves_on_retry() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let agent = home.open("a");
    let file = agent.agent_credentials();
    file.write(agent.machine_key(), b"old-token").unwrap();
    let creds_dir = home.dirs.credentials_dir();
    std::fs::set_permissions(&creds_dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    let obtained = b"fresh-token-from-relay".to_vec();
    let failed = file.write(agent.machine_key(), &obtained);
    std::fs::set_permissions(&creds_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if nix_is_root() {
        // root ignores directory permissions; the failure path is covered by a missing folder instead.
        assert!(failed.is_ok());
    } else {
        assert!(matches!(failed, Err(SealError::Write(_))));
        assert_eq!(
            file.read(agent.machine_key()).unwrap().unwrap().expose(),
            b"old-token"
        );
    }
    // The caller still holds the credential and the retry lands it.
    file.write(agent.machine_key(), &obtained).unwrap();
    assert_eq!(
        file.read(agent.machine_key()).unwrap().unwrap().expose(),
        obtained.as_slice()
    );

    // Deterministic failure even as root: the folder is gone.
    std::fs::remove_dir_all(&creds_dir).unwrap();
    assert!(matches!(
        file.write(agent.machine_key(), &obtained),
        Err(SealError::Write(_))
    ));
    assert_eq!(obtained, b"fresh-token-from-relay");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(unix)]
#[test]
fn sealed_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::new();
    let agent = home.open("a");
    agent
        .tunnel_credentials()
        .write(agent.machine_key(), b"x")
        .unwrap();
    let mode = std::fs::metadata(agent.tunnel_credentials().path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
