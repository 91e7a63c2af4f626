//! The deployment files in `deploy/`: the systemd unit verifies with `systemd-analyze` and keeps its
//! hardening; the container image runs the relay as a non-root user with a health check on
//! `/healthz`; every `KATACHI_RELAY_*` variable they set is one the relay reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

/// `[Section]` → key → values (a key may repeat), comments and blank lines dropped.
fn unit_sections(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("a unit line is key=value");
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

/// The `KATACHI_RELAY_*` names a text sets.
fn relay_variables(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("KATACHI_RELAY_"))
        // The unit's own variable of extra flags, not one the relay reads.
        .filter(|w| *w != "KATACHI_RELAY_ARGS")
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every variable the relay reads, as `--help` lists them (`[env: NAME=]`).
fn variables_the_relay_reads() -> String {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_katachi-relay"))
        .arg("--help")
        .output()
        .unwrap();
    let rotate = std::process::Command::new(env!("CARGO_BIN_EXE_katachi-relay"))
        .args(["rotate-master-key", "--help"])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&rotate.stdout)
    )
}

#[test]
fn the_systemd_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(deploy_file("katachi-relay.service")).unwrap();
    let unit = unit_sections(&text);
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] has no {key}="));
        values.last().unwrap()
    };
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "katachi-relay"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(key), want, "{key}");
    }
    assert_eq!(
        service["Environment"]
            .iter()
            .find(|e| e.starts_with("KATACHI_RELAY_METRICS_LISTEN="))
            .map(String::as_str),
        Some("KATACHI_RELAY_METRICS_LISTEN=127.0.0.1:9464"),
        "metrics stay on loopback"
    );
    let reads = variables_the_relay_reads();
    for name in relay_variables(&text) {
        assert!(
            reads.contains(&format!("[env: {name}")),
            "the relay does not read {name}"
        );
    }

    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed here; the unit was not verified by systemd"
        );
        return;
    };
    // The unit as installed names /usr/bin/katachi-relay; verify it naming the binary just built
    // (systemd-analyze checks that the command exists), nothing else changed.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("katachi-relay.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/bin/katachi-relay",
            env!("CARGO_BIN_EXE_katachi-relay"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are only warnings: none may name the unit.
    let about_the_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("katachi-relay.service"))
        .collect();
    assert!(about_the_unit.is_empty(), "{about_the_unit:#?}");
}

#[test]
fn the_container_image_runs_the_relay_as_non_root_with_a_healthcheck_on_healthz() {
    let text = std::fs::read_to_string(deploy_file("Containerfile")).unwrap();
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        pending.push_str(trimmed.trim_end_matches('\\'));
        pending.push(' ');
        if !trimmed.ends_with('\\') {
            let (op, args) = pending.trim().split_once(' ').unwrap();
            instructions.push((op.to_owned(), args.trim().to_owned()));
            pending.clear();
        }
    }
    let runtime_start = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .unwrap();
    let runtime = &instructions[runtime_start..];
    let args_of = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert!(
        args_of("FROM")[0].contains("debian:bookworm-slim"),
        "{runtime:?}"
    );
    assert!(
        instructions.iter().filter(|(op, _)| op == "FROM").count() >= 2,
        "a multi-stage build"
    );
    assert!(args_of("RUN").iter().any(|r| r.contains("ca-certificates")));
    let user = args_of("USER");
    assert_eq!(user.len(), 1);
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {uid}");
    let health = args_of("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].contains("CMD") && health[0].contains("/healthz"),
        "{health:?}"
    );
    assert_eq!(
        args_of("ENTRYPOINT"),
        vec![r#"["/usr/local/bin/katachi-relay"]"#]
    );
    let reads = variables_the_relay_reads();
    for name in relay_variables(&text) {
        assert!(
            reads.contains(&format!("[env: {name}")),
            "the relay does not read {name}"
        );
    }
}

/// The first executable named `name` on `PATH`.
fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
