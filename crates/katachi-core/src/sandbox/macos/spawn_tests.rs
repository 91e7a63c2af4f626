//! The macOS spawn path on Linux, with a stand-in for `sandbox-exec` that checks its arguments and
//! execs the command: environment, working folder, limits and the whole-group kill.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::spawn_with_launcher;
use crate::sandbox::policy::{Limits, SandboxPolicy, TRUSTED_PATH};
use crate::sandbox::{DenialKind, SandboxError};

/// A launcher that insists on `-p (version 1)… --`, then runs the rest as `sandbox-exec` would.
fn stand_in(dir: &Path) -> PathBuf {
    let path = dir.join("sandbox-exec");
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$1\" = -p ] && [ \"$3\" = -- ] || exit 90\n\
         case \"$2\" in '(version 1)'*) ;; *) exit 91 ;; esac\nshift 3\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn policy(ws: &Path, command: &str, limits: Limits) -> SandboxPolicy {
    SandboxPolicy::builder()
        .workspace(ws, false)
        .allow_command(command)
        .limits(limits)
        .build()
        .unwrap()
}

#[tokio::test]
async fn command_runs_in_its_folder_with_only_the_scrubbed_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let launcher = stand_in(tmp.path());
    let policy = policy(&ws, "env", Limits::default());
    let command = policy.command("env").unwrap().clone();
    let cwd = std::fs::canonicalize(&ws).unwrap();
    let child = spawn_with_launcher(&launcher, &policy, &command, &[], &cwd).unwrap();
    let (outcome, out, err) = child.collect().await;
    assert_eq!(
        outcome.exit.shell_code(),
        0,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let out = String::from_utf8(out).unwrap();
    let allowed = [
        "PATH",
        "HOME",
        "TMPDIR",
        "PWD",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TERM",
        "TZ",
    ];
    for line in out.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            allowed.contains(&name),
            "{name} leaked into the sandbox: {out}"
        );
    }
    assert!(
        out.lines().any(|l| l == format!("PATH={TRUSTED_PATH}")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("HOME=") && l.contains("katachi-run-")),
        "{out}"
    );
}

#[tokio::test]
async fn wall_time_kills_the_command_and_reports_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = stand_in(tmp.path());
    let limits = Limits {
        wall_time: Duration::from_millis(500),
        ..Limits::default()
    };
    let policy = policy(tmp.path(), "sleep", limits);
    let command = policy.command("sleep").unwrap().clone();
    let cwd = std::fs::canonicalize(tmp.path()).unwrap();
    let child = spawn_with_launcher(&launcher, &policy, &command, &["30".into()], &cwd).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the sleep was not killed");
    let denied = outcome.denied.expect("no limit reported");
    assert_eq!(
        (denied.kind, denied.target.as_str()),
        (DenialKind::Limit, "wall time")
    );
}

#[tokio::test]
async fn missing_sandbox_exec_refuses_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = policy(tmp.path(), "true", Limits::default());
    let command = policy.command("true").unwrap().clone();
    let cwd = std::fs::canonicalize(tmp.path()).unwrap();
    let missing = tmp.path().join("no-sandbox-exec");
    let err = spawn_with_launcher(&missing, &policy, &command, &[], &cwd).unwrap_err();
    assert!(
        matches!(&err, SandboxError::LayerUnavailable { layer, .. } if layer == "seatbelt"),
        "{err}"
    );
}

#[tokio::test]
async fn allowed_hosts_are_refused_while_no_proxy_is_wired() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = stand_in(tmp.path());
    let policy = SandboxPolicy::builder()
        .workspace(tmp.path(), false)
        .allow_command("true")
        .allow_host("crates.io")
        .build()
        .unwrap();
    let command = policy.command("true").unwrap().clone();
    let cwd = std::fs::canonicalize(tmp.path()).unwrap();
    let err = spawn_with_launcher(&launcher, &policy, &command, &[], &cwd).unwrap_err();
    assert!(
        matches!(&err, SandboxError::LayerUnavailable { layer, .. } if layer == "proxy"),
        "{err}"
    );
}
