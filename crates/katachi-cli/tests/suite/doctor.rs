//! `katachi doctor` against the real keychain.

use super::support::Home;

fn check<'a>(report: &'a serde_json::Value, layer: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["layer"] == layer)
        .unwrap()
}

#[test]
fn doctor_reports_every_layer_on_a_fresh_and_a_used_home() {
    let home = Home::new();
    let fresh = home.run(&["--json", "doctor"]);
    assert_eq!(fresh.code, 0, "{}{}", fresh.stdout, fresh.stderr);
    let report = fresh.json();
    for layer in [
        "config",
        "fingerprint",
        "keystore",
        "store",
        "credentials",
        "permissions",
    ] {
        assert_eq!(check(&report, layer)["status"], "ok", "{layer}: {report}");
    }
    assert_eq!(report["keystore"], "os_keychain");

    let ws = home.mkdir("code");
    assert_eq!(
        home.run(&["workspace", "add", ws.to_str().unwrap()]).code,
        0
    );
    let used = home.run(&["--json", "doctor"]).json();
    let store = check(&used, "store")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(store.contains("1 workspaces"), "{store}");
    assert!(check(&used, "fingerprint")["summary"]
        .as_str()
        .unwrap()
        .contains("unchanged"));

    let text = home.run(&["doctor"]);
    assert!(text.stdout.contains("all layers work"), "{}", text.stdout);
}

#[cfg(unix)]
#[test]
fn doctor_warns_when_folders_or_files_are_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let ws = home.mkdir("code");
    assert_eq!(
        home.run(&["workspace", "add", ws.to_str().unwrap()]).code,
        0
    );
    std::fs::set_permissions(home.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        home.data().join("katachi.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let report = home.run(&["--json", "doctor"]);
    assert_eq!(report.code, 0, "a warning is not a failure");
    let perms = check(&report.json(), "permissions").clone();
    assert_eq!(perms["status"], "warn");
    let summary = perms["summary"].as_str().unwrap();
    assert!(
        summary.contains("chmod 700") && summary.contains("chmod 600"),
        "{summary}"
    );
}

#[test]
fn invalid_config_fails_the_config_layer_with_its_location() {
    let home = Home::new();
    std::fs::create_dir_all(home.home().join("config")).unwrap();
    std::fs::write(
        home.home().join("config/config.toml"),
        "[keystore]\nbackend = \"plaintext\"\n",
    )
    .unwrap();
    let run = home.run(&["--json", "doctor"]);
    assert_eq!(run.code, 1);
    let report = run.json();
    let config = check(&report, "config");
    assert_eq!(config["status"], "fail");
    assert!(
        config["summary"].as_str().unwrap().contains("line 2"),
        "{config}"
    );
    assert_eq!(check(&report, "store")["status"], "skipped");
}

#[test]
fn relative_katachi_home_is_refused() {
    let home = Home::new();
    let run = super::support::finish(
        home.cmd(&["doctor"])
            .env("KATACHI_HOME", "relative/dir")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("absolute"), "{}", run.stderr);
}
