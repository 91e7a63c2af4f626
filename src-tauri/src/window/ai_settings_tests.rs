//! The Settings view's AI provider commands on the mock runtime, over a real agent home (the
//! session's keychain, a real store): what they save is what `katachi ai show` reads.

use katachi_core::ai::settings_scope;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::vault::{Keystore, OsKeychain};
use katachi_core::{AgentHome, KatachiDirs};

use super::*;

/// A temp agent home with one allowed workspace; its keychain entries go when dropped.
struct Home {
    root: tempfile::TempDir,
    dirs: KatachiDirs,
    workspace: String,
}

impl Home {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        assert!(
            std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
            "no D-Bus session: run the tests with `make test` or `scripts/with-session.sh cargo test`"
        );
        let root = tempfile::tempdir()?;
        let dirs = KatachiDirs::under(&root.path().join("home"));
        let ws = root.path().join("proj");
        std::fs::create_dir(&ws)?;
        let home = AgentHome::open(dirs.clone(), &SystemFingerprint)?;
        home.store()?.workspaces().add(&ws, &[])?;
        let workspace = std::fs::canonicalize(&ws)?.to_string_lossy().into_owned();
        Ok(Self {
            root,
            dirs,
            workspace,
        })
    }

    fn window(
        &self,
    ) -> Result<(App<MockRuntime>, WebviewWindow<MockRuntime>), Box<dyn std::error::Error>> {
        let context = WindowContext::new(
            Arc::new(FakeAgent::default()),
            Ok(self.dirs.clone()),
            WindowArgs::default(),
        );
        let app = build_window_app(mock_builder(), context)?;
        let window = main_window(&app)?;
        Ok((app, window))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let keychain = OsKeychain::new(self.dirs.keychain_service());
        for account in ["machine-secret", "api-key:ollama"] {
            let _ = keychain.delete(account);
        }
    }
}

#[test]
fn a_provider_saved_in_settings_is_checked_and_stored_where_the_cli_reads_it() -> TestResult {
    let home = Home::new()?;
    let (_app, window) = home.window()?;
    let empty = invoke(&window, "ai_settings", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(empty["providers"], json!(["openai", "anthropic"]));
    assert_eq!(empty["default"], Value::Null);
    assert_eq!(empty["workspaces"][0]["path"], home.workspace.as_str());

    let saved = invoke(
        &window,
        "set_ai_provider",
        json!({"choice": {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": " ", "key_name": ""}}),
    )
    .map_err(|e| e.to_string())?;
    assert_eq!(
        saved["default"],
        json!({"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": null, "key_name": "anthropic", "own": false})
    );
    let own = invoke(
        &window,
        "set_ai_provider",
        json!({"choice": {"workspace": home.workspace, "provider": "openai", "model": "qwen2.5-coder",
                          "base_url": "http://127.0.0.1:11434/v1", "key_name": "ollama"}}),
    )
    .map_err(|e| e.to_string())?;
    assert_eq!(
        own["workspaces"][0]["own"]["base_url"],
        "http://127.0.0.1:11434/v1"
    );

    // the CLI's view of the same store (`katachi ai show` reads this overview)
    let store = AgentHome::open(home.dirs.clone(), &SystemFingerprint)?.store()?;
    let overview = settings_scope::overview(&store)?;
    assert_eq!(
        overview.default.map(|s| s.model),
        Some("claude-sonnet-4-5".to_owned())
    );
    assert_eq!(
        overview.workspaces[0]
            .own
            .as_ref()
            .map(|s| s.key_name.as_str()),
        Some("ollama")
    );

    let reset = invoke(
        &window,
        "reset_ai_provider",
        json!({"workspace": home.workspace}),
    )
    .map_err(|e| e.to_string())?;
    assert_eq!(reset["workspaces"][0]["own"], Value::Null);
    Ok(())
}

#[test]
fn a_refused_provider_choice_says_why_and_changes_nothing() -> TestResult {
    let home = Home::new()?;
    let (_app, window) = home.window()?;
    let elsewhere = home.root.path().to_string_lossy().into_owned();
    for (choice, says) in [
        (
            json!({"provider": "openai", "model": "m", "base_url": "http://example.com/v1"}),
            "plain http is allowed only to this machine",
        ),
        (
            json!({"provider": "gemini", "model": "m"}),
            "unknown provider",
        ),
        (
            json!({"provider": "openai", "model": ""}),
            "invalid model name",
        ),
        (
            json!({"provider": "openai", "model": "m", "key_name": "Bad Name"}),
            "invalid key name",
        ),
        (
            json!({"provider": "openai", "model": "m", "workspace": elsewhere}),
            "is not an allowed workspace",
        ),
    ] {
        let err = invoke(&window, "set_ai_provider", json!({ "choice": choice }))
            .err()
            .ok_or(format!("{choice} was accepted"))?;
        assert_eq!(err["code"], "invalid_input", "{choice}: {err}");
        assert!(
            err["message"].as_str().unwrap_or("").contains(says),
            "{choice}: {err}"
        );
    }
    let err = invoke(
        &window,
        "reset_ai_provider",
        json!({"workspace": elsewhere}),
    )
    .err()
    .ok_or("a folder that is not a workspace was reset")?;
    assert_eq!(err["code"], "invalid_input");
    let unchanged = invoke(&window, "ai_settings", json!({})).map_err(|e| e.to_string())?;
    assert_eq!(unchanged["default"], Value::Null);
    assert_eq!(unchanged["workspaces"][0]["own"], Value::Null);
    Ok(())
}

#[test]
fn the_key_a_provider_choice_names_is_listed_and_its_value_never_comes_back() -> TestResult {
    let home = Home::new()?;
    let (_app, window) = home.window()?;
    invoke(
        &window,
        "set_ai_provider",
        json!({"choice": {"provider": "openai", "model": "m", "base_url": "http://localhost:8080/v1", "key_name": "ollama"}}),
    )
    .map_err(|e| e.to_string())?;
    let keys = invoke(&window, "api_keys", json!({})).map_err(|e| e.to_string())?;
    assert!(
        keys.as_array()
            .is_some_and(|k| k.contains(&json!({"provider": "ollama", "set": false}))),
        "{keys}"
    );
    let secret = "sk-local-0123456789-never-shown";
    let after = invoke(
        &window,
        "set_api_key",
        json!({"provider": "ollama", "key": secret}),
    )
    .map_err(|e| e.to_string())?;
    assert!(
        after
            .as_array()
            .is_some_and(|k| k.contains(&json!({"provider": "ollama", "set": true}))),
        "{after}"
    );
    for cmd in ["api_keys", "ai_settings", "settings"] {
        let answer = invoke(&window, cmd, json!({})).unwrap_or_else(|e| e);
        assert!(
            !answer.to_string().contains(secret),
            "{cmd} sent the key back"
        );
    }
    Ok(())
}
