use super::super::{LayerStatus, SandboxStatus};

/// The Windows backend's message, as `windows::UNSANDBOXED_MESSAGE` spells it (that module only
/// compiles on Windows; [`windows_text_is_the_backends_own`] keeps the two equal on every OS).
const WINDOWS_MESSAGE: &str = "commands run unsandboxed on Windows: katachi cannot confine them";
/// The macOS backend's message without `/usr/bin/sandbox-exec` (see `Sandbox::status`).
const MACOS_MISSING_MESSAGE: &str = "sandbox-exec is missing: commands are refused";

fn layer(name: &str, active: bool) -> LayerStatus {
    LayerStatus {
        name: name.to_owned(),
        active,
        detail: format!("{name} detail"),
    }
}

fn linux(missing: &[&str]) -> SandboxStatus {
    let names = [
        "landlock abi 7",
        "seccomp",
        "userns",
        "netns",
        "pidns",
        "mountns",
        "pids cgroup",
        "proxy",
    ];
    SandboxStatus {
        backend: "linux",
        enforced: true,
        message: None,
        layers: names
            .iter()
            .map(|n| layer(n, !missing.contains(n)))
            .collect(),
    }
}

fn windows() -> SandboxStatus {
    SandboxStatus {
        backend: "windows",
        enforced: false,
        message: Some(WINDOWS_MESSAGE.to_owned()),
        layers: vec![
            layer("sandbox", false),
            layer("limits", true),
            layer("tree kill", true),
        ],
    }
}

#[test]
fn linux_with_every_layer_lists_them_all_as_on() {
    let status = linux(&[]);
    assert_eq!(
        status.summary(),
        "Sandbox: on — landlock abi 7, seccomp, userns, netns, pidns, mountns, pids cgroup, proxy"
    );
    assert_eq!(status.notice(), None);
    assert!(status.missing_layers().is_empty());
}

#[test]
fn linux_with_a_missing_layer_names_it_after_the_active_ones() {
    let status = linux(&["pids cgroup"]);
    assert_eq!(
        status.summary(),
        "Sandbox: on — landlock abi 7, seccomp, userns, netns, pidns, mountns, proxy; missing: pids cgroup"
    );
    assert_eq!(status.notice(), None);
    assert_eq!(status.missing_layers(), ["pids cgroup"]);
}

#[test]
fn linux_with_no_active_layer_still_says_which_are_missing() {
    let mut status = linux(&[]);
    status.layers.truncate(2);
    for l in &mut status.layers {
        l.active = false;
    }
    assert_eq!(
        status.summary(),
        "Sandbox: on — no layer active; missing: landlock abi 7, seccomp"
    );
}

#[test]
fn windows_says_plainly_that_commands_run_unsandboxed() {
    let status = windows();
    let summary = status.summary();
    assert_eq!(summary, format!("Sandbox: OFF — {WINDOWS_MESSAGE}"));
    assert!(summary.contains("unsandboxed"), "{summary}");
    // the active limits must not make it read as "on"
    assert!(!summary.contains("on —"), "{summary}");
    assert_eq!(status.notice().as_deref(), Some(WINDOWS_MESSAGE));
}

#[test]
fn windows_text_is_the_backends_own() {
    // windows.rs compiles only on Windows; its source is readable everywhere
    let source = include_str!("windows.rs");
    assert!(
        source.contains(&format!("\"{WINDOWS_MESSAGE}\"")),
        "windows.rs no longer says {WINDOWS_MESSAGE:?}"
    );
}

#[test]
fn macos_text_is_the_backends_own() {
    let source = include_str!("mod.rs");
    assert!(
        source.contains(&format!("\"{MACOS_MISSING_MESSAGE}\"")),
        "mod.rs no longer says {MACOS_MISSING_MESSAGE:?}"
    );
}

#[cfg(windows)]
#[test]
fn windows_status_of_this_machine_is_the_one_tested_here() {
    let status = super::super::Sandbox::probe().status();
    assert_eq!(status.summary(), windows().summary());
}

#[test]
fn macos_without_sandbox_exec_is_off_and_says_why() {
    let status = SandboxStatus {
        backend: "macos",
        enforced: false,
        message: Some(MACOS_MISSING_MESSAGE.to_owned()),
        layers: vec![
            layer("seatbelt", false),
            layer("rlimits", true),
            layer("process group", true),
        ],
    };
    assert_eq!(
        status.summary(),
        "Sandbox: OFF — sandbox-exec is missing: commands are refused"
    );
    assert_eq!(status.notice().as_deref(), Some(MACOS_MISSING_MESSAGE));
    assert_eq!(status.missing_layers(), ["seatbelt"]);
}

#[test]
fn not_enforced_without_a_message_still_says_commands_are_not_confined() {
    for message in [None, Some("  ".to_owned())] {
        let status = SandboxStatus {
            backend: "none",
            enforced: false,
            message,
            layers: Vec::new(),
        };
        assert_eq!(
            status.summary(),
            "Sandbox: OFF — commands are not confined by an OS sandbox"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn this_machine_summary_names_its_first_layer() {
    let status = super::super::Sandbox::probe().status();
    let summary = status.summary();
    assert!(summary.starts_with("Sandbox: on — "), "{summary}");
    let first = status.layers.first().map(|l| l.name.as_str());
    assert!(
        first.is_some_and(|name| summary.contains(name)),
        "{summary}"
    );
}
