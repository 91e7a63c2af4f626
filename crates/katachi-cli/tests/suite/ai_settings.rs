//! `katachi ai use|show|reset|key` end to end, on the real keychain.

use std::io::Write;
use std::process::Stdio;

use super::support::{finish, Home, Run};

fn set_key(home: &Home, name: &str, stdin: &str) -> Run {
    let mut child = home
        .cmd(&["ai", "key", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    finish(child.wait_with_output().unwrap())
}

#[test]
fn provider_settings_and_keys_are_set_shown_and_reset_without_the_key_ever_printed() {
    let home = Home::new();
    let show = home.run(&["ai", "show"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("default: none set"), "{}", show.stdout);

    let used = home.run(&["ai", "use", "openai", "gpt-4.1"]);
    assert_eq!(used.code, 0, "{}", used.stderr);
    assert!(
        used.stdout
            .contains("every workspace now uses openai gpt-4.1"),
        "{}",
        used.stdout
    );
    assert!(
        used.stdout.contains("katachi ai key set openai"),
        "{}",
        used.stdout
    );

    let secret = "sk-test-3f9a7c1e0b5d";
    let stored = set_key(&home, "openai", &format!("{secret}\n"));
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    // the keychain holds it sealed, not in clear
    let dirs = katachi_core::KatachiDirs::under(&home.home());
    let keychain = katachi_core::vault::OsKeychain::new(dirs.keychain_service());
    let raw = katachi_core::vault::Keystore::get(&keychain, "api-key:openai")
        .unwrap()
        .expect("the key is in the keychain");
    assert!(!raw.contains(secret));

    let ws = home.mkdir("code/shop");
    assert_eq!(
        home.run(&["workspace", "add", ws.to_str().unwrap()]).code,
        0
    );
    let local = home.run(&[
        "ai",
        "use",
        "openai",
        "qwen2.5-coder",
        "--base-url",
        "http://127.0.0.1:11434/v1",
        "--key-name",
        "ollama",
        "--workspace",
        ws.to_str().unwrap(),
    ]);
    assert_eq!(local.code, 0, "{}", local.stderr);
    let shown = home.run(&["--json", "ai", "show"]).json();
    assert_eq!(shown[0]["scope"], "default");
    assert_eq!(shown[0]["settings"]["model"], "gpt-4.1");
    assert_eq!(shown[0]["key_stored"], true);
    assert_eq!(shown[1]["settings"]["model"], "qwen2.5-coder");
    assert_eq!(
        shown[1]["settings"]["base_url"],
        "http://127.0.0.1:11434/v1"
    );
    assert_eq!(shown[1]["key_stored"], false);
    let text = home.run(&["ai", "show"]);
    for out in [&used, &stored, &local, &text] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }

    let reset = home.run(&["ai", "reset", "--workspace", ws.to_str().unwrap()]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let shown = home.run(&["--json", "ai", "show"]).json();
    assert!(shown[1]["settings"].is_null());

    let removed = home.run(&["ai", "key", "rm", "openai"]);
    assert!(
        removed.stdout.contains("removed the API key"),
        "{}",
        removed.stdout
    );
    assert!(
        katachi_core::vault::Keystore::get(&keychain, "api-key:openai")
            .unwrap()
            .is_none()
    );
}

#[test]
fn bad_provider_settings_and_keys_are_refused_with_what_to_do() {
    let home = Home::new();
    for (args, says) in [
        (
            vec!["ai", "use", "gemini", "x"],
            "unknown provider \"gemini\"",
        ),
        (
            vec![
                "ai",
                "use",
                "openai",
                "m",
                "--base-url",
                "http://example.com/v1",
            ],
            "plain http is allowed only to this machine",
        ),
        (
            vec!["ai", "use", "openai", "m", "--workspace", "/"],
            "is not an allowed workspace; allow it first with `katachi workspace add /`",
        ),
        (vec!["ai", "key", "set", "Open AI"], "invalid provider name"),
    ] {
        let run = home.run(&args);
        assert_ne!(run.code, 0, "{args:?} was accepted");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    let empty = set_key(&home, "openai", "\n");
    assert_ne!(empty.code, 0);
    assert!(
        empty.stderr.contains("no key was given"),
        "{}",
        empty.stderr
    );
    let shown = home.run(&["--json", "ai", "show"]).json();
    assert!(
        shown[0]["settings"].is_null(),
        "nothing was stored: {shown}"
    );
}

#[test]
fn notes_for_the_model_are_saved_listed_refused_when_malformed_and_deleted() {
    let home = Home::new();
    let ws = home.mkdir("code/shop");
    let path = ws.to_str().unwrap();
    assert_eq!(home.run(&["workspace", "add", path]).code, 0);

    let saved = home.run(&[
        "ai",
        "note",
        "set",
        "build",
        "Use `make fast`.",
        "--workspace",
        path,
    ]);
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let listed = home.run(&["--json", "ai", "note", "ls"]).json();
    assert_eq!(listed[0]["key"], "build");
    assert_eq!(listed[0]["value"], "Use `make fast`.");
    let text = home.run(&["ai", "note", "ls", "--workspace", path]);
    assert!(
        text.stdout.contains("build: Use `make fast`."),
        "{}",
        text.stdout
    );

    let bad_key = home.run(&["ai", "note", "set", "a b", "x", "--workspace", path]);
    assert_ne!(bad_key.code, 0);
    assert!(bad_key.stderr.contains("note key"), "{}", bad_key.stderr);
    let long = "v".repeat(8 * 1024 + 1);
    let too_long = home.run(&["ai", "note", "set", "k", &long, "--workspace", path]);
    assert_ne!(too_long.code, 0);
    assert!(
        too_long.stderr.contains("at most 8192 bytes"),
        "{}",
        too_long.stderr
    );
    let elsewhere = home.mkdir("code/other");
    let not_ws = home.run(&[
        "ai",
        "note",
        "set",
        "k",
        "x",
        "--workspace",
        elsewhere.to_str().unwrap(),
    ]);
    assert_ne!(not_ws.code, 0);

    let removed = home.run(&["ai", "note", "rm", "build", "--workspace", path]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let again = home.run(&["ai", "note", "rm", "build", "--workspace", path]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("no note"), "{}", again.stderr);
    let listed = home.run(&["--json", "ai", "note", "ls"]).json();
    assert_eq!(listed, serde_json::json!([]));
}
