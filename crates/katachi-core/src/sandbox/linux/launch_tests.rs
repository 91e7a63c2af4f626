//! The launcher on its own: reports, failures by step, the path without namespaces.

use std::ffi::CString;
use std::io::Read;
use std::path::Path;

use super::super::limits::Rlimits;
use super::super::netns::IdMaps;
use super::super::seccomp;
use super::{launch, ExecImage, Launch, Step};
use crate::sandbox::policy::Limits;

fn plan(program: &str, args: &[&str], namespaces: bool) -> Launch {
    let args: Vec<_> = args.iter().map(Into::into).collect();
    Launch {
        cgroup_fd: None,
        namespaces: namespaces.then(IdMaps::for_current_user),
        proxy: None,
        mounts: None,
        cwd: CString::new("/").unwrap(),
        rlimits: Rlimits::from_limits(&Limits::default()),
        ruleset: None,
        filters: seccomp::filters().unwrap(),
        image: ExecImage::new(Path::new(program), &args, &[("LANG".into(), "C".into())]).unwrap(),
    }
}

/// Runs the plan to its end: (stdout, raw wait status).
async fn run(plan: Launch) -> (String, i32) {
    let launched = launch(plan, 1 << 16).unwrap();
    let mut out = String::new();
    std::fs::File::from(launched.stdout)
        .read_to_string(&mut out)
        .unwrap();
    (out, launched.exit.await.unwrap())
}

#[tokio::test]
async fn the_command_runs_under_an_init_and_its_exit_code_comes_back() {
    let (out, status) = run(plan("/bin/sh", &["-c", "echo $$ $0; exit 3"], true)).await;
    // PID 2 in its own PID namespace (the init is 1), argv[0] is the path
    assert_eq!(out, "2 /bin/sh\n");
    assert!(libc::WIFEXITED(status));
    assert_eq!(libc::WEXITSTATUS(status), 3);
}

#[tokio::test]
async fn without_namespaces_the_command_is_the_first_process() {
    let (out, status) = run(plan("/bin/sh", &["-c", "echo ok; exit 4"], false)).await;
    assert_eq!(out, "ok\n");
    assert_eq!(libc::WEXITSTATUS(status), 4);
}

#[tokio::test]
async fn the_environment_is_exactly_the_plans() {
    let (out, _) = run(plan("/usr/bin/env", &[], true)).await;
    assert_eq!(out, "LANG=C\n");
}

#[tokio::test]
async fn signals_are_unblocked_and_default_for_the_command() {
    // the launcher blocks every signal and the agent ignores SIGPIPE: the command must see neither
    let (out, _) = run(plan(
        "/bin/grep",
        &["-E", "^Sig(Blk|Ign)", "/proc/self/status"],
        true,
    ))
    .await;
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[tokio::test]
async fn a_failed_exec_is_reported_as_the_exec_step_with_its_errno() {
    for namespaces in [true, false] {
        let err = match launch(plan("/nonexistent/program", &[], namespaces), 1 << 16) {
            Ok(_) => panic!("a missing program started"),
            Err(e) => e,
        };
        assert_eq!(err.step, Step::Exec, "namespaces: {namespaces}");
        assert_eq!(err.source.raw_os_error(), Some(libc::ENOENT));
    }
}

#[tokio::test]
async fn a_failed_setup_step_is_named() {
    let mut p = plan("/bin/true", &[], true);
    p.cwd = CString::new("/nonexistent-folder").unwrap();
    let err = match launch(p, 1 << 16) {
        Ok(_) => panic!("started in a missing folder"),
        Err(e) => e,
    };
    assert_eq!(err.step, Step::WorkingFolder);
    assert_eq!(err.source.raw_os_error(), Some(libc::ENOENT));
}

#[tokio::test]
async fn nothing_of_the_agent_stays_open_in_the_command() {
    // descriptors of the agent are close-on-exec (std opens them so); the command sees 0, 1, 2
    // and the folder ls itself opens
    let (out, _) = run(plan("/bin/ls", &["/proc/self/fd"], true)).await;
    let fds: Vec<_> = out.lines().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
}
