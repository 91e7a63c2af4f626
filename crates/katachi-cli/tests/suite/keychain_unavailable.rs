//! No keychain, no plaintext: without a reachable, unlocked Secret Service the CLI stops with an
//! error naming the fix and writes no secret anywhere; the file keystore is an explicit opt-in.

use std::process::Command;

use super::support::{finish, fixture, Home, Run};

fn assert_nothing_secret_written(home: &Home) {
    assert!(
        !home.data().join("katachi.db").exists(),
        "no store without a key"
    );
    assert!(
        !home.data().join("keystore.sealed").exists(),
        "no silent file keystore"
    );
}

#[test]
fn without_a_session_bus_the_error_names_the_fix_and_nothing_falls_back_to_plaintext() {
    let home = Home::new();
    let ws = home.mkdir("code");
    let run = finish(
        home.cmd(&["--json", "workspace", "add", ws.to_str().unwrap()])
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/katachi-test-bus",
            )
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.json()["error"]["code"],
        "keystore.no_session_bus",
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("backend = \\\"file\\\""),
        "{}",
        run.stdout
    );
    assert_nothing_secret_written(&home);
}

fn in_bus_without_secret_service(home: &Home, args: &[&str]) -> Run {
    let mut c = Command::new("dbus-run-session");
    c.arg(format!(
        "--config-file={}",
        fixture("no-secret-service-bus.conf").display()
    ))
    .arg("--")
    .arg(env!("CARGO_BIN_EXE_katachi"))
    .args(args)
    .env("KATACHI_HOME", home.home());
    finish(c.output().unwrap())
}

#[test]
fn without_a_secret_service_the_error_says_to_start_gnome_keyring() {
    let home = Home::new();
    let ws = home.mkdir("code");
    let run =
        in_bus_without_secret_service(&home, &["--json", "workspace", "add", ws.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert_eq!(run.json()["error"]["code"], "keystore.no_secret_service");
    assert!(run.stdout.contains("gnome-keyring"));
    assert_nothing_secret_written(&home);

    let doctor = in_bus_without_secret_service(&home, &["doctor"]);
    assert_eq!(doctor.code, 1);
    assert!(doctor.stdout.contains("FAIL keystore"), "{}", doctor.stdout);
}

#[test]
fn a_locked_keyring_is_reported_as_locked() {
    let home = Home::new();
    let ws = home.mkdir("code");
    // A fresh session whose gnome-keyring (activated on demand) has no unlocked login keyring.
    let keyring_home = home.mkdir("locked-keyring");
    let run = finish(
        Command::new("dbus-run-session")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_katachi"))
            .args(["--json", "workspace", "add", ws.to_str().unwrap()])
            .env("KATACHI_HOME", home.home())
            .env("XDG_DATA_HOME", keyring_home.join("data"))
            .env("XDG_CACHE_HOME", keyring_home.join("cache"))
            .env("XDG_RUNTIME_DIR", &keyring_home)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert_eq!(
        run.json()["error"]["code"],
        "keystore.locked",
        "{}",
        run.stdout
    );
    assert_nothing_secret_written(&home);
}

#[test]
fn the_file_keystore_is_an_explicit_opt_in_reported_as_weaker() {
    let home = Home::new();
    std::fs::create_dir_all(home.home().join("config")).unwrap();
    std::fs::write(
        home.home().join("config/config.toml"),
        "[keystore]\nbackend = \"file\"\n",
    )
    .unwrap();
    let ws = home.mkdir("code");
    let add = finish(
        home.cmd(&["workspace", "add", ws.to_str().unwrap()])
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/katachi-test-bus",
            )
            .output()
            .unwrap(),
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert!(home.data().join("keystore.sealed").exists());
    let doctor = finish(
        home.cmd(&["--json", "doctor"])
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/katachi-test-bus",
            )
            .output()
            .unwrap(),
    );
    assert_eq!(doctor.code, 0);
    let report = doctor.json();
    assert_eq!(report["keystore"], "file");
    let ks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["layer"] == "keystore")
        .unwrap();
    assert_eq!(ks["status"], "warn");
    assert!(ks["summary"].as_str().unwrap().contains("weaker"), "{ks}");
}
