//! The model's tools over the real API router (audit layer on, real sandbox for runs): each tool's
//! happy path, structured refusals, atomic patches, previews with real diffs, bounded output, and
//! the proof that no tool call reaches a route outside the tools' own.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use katachi_core::ai::{ApprovalPreview, ToolBox, ToolCall, ToolOptions, ToolProgress, ToolResult};
use katachi_core::api::{router, ApiState, AuditLayer, AuditOptions, FixedWorkspaces};
use katachi_core::store::{AuditKey, Store};
use katachi_core::vault::{DerivedKey, MachineKey, Purpose};
use katachi_core::{Fingerprint, SecretBytes};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api_git::commit_all;
use super::api_support::sha256_hex;

/// A workspace (id 1), a folder beside it, a store with the audit chain, and the tools over the
/// audited router; every request the router receives is recorded as `METHOD path?query`.
struct Fixture {
    _tmp: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
    db: PathBuf,
    layer: AuditLayer,
    tools: ToolBox,
    seen: Arc<Mutex<Vec<String>>>,
}

fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([9; 32], Purpose::STORE)
}

fn audit_key() -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![9])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![9; 32]), &fp))
}

impl Fixture {
    fn new() -> Self {
        Self::with_options(ToolOptions::default())
    }

    fn with_options(options: ToolOptions) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let ws = base.join("ws");
        let outside = base.join("outside");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"TOP-SECRET\n").unwrap();
        let db = base.join("store.db");
        drop(Store::open(&db, &store_key()).unwrap());
        let source = Arc::new(FixedWorkspaces::new([&ws]).unwrap());
        let open_db = db.clone();
        let layer = AuditLayer::start_with(
            move || Store::open(&open_db, &store_key()),
            audit_key(),
            Some(source.clone()),
            AuditOptions::default(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app =
            router(ApiState::new(source))
                .layer(layer.clone())
                .layer(axum::middleware::from_fn(
                    move |req: Request, next: Next| {
                        record
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", req.method(), req.uri()));
                        next.run(req)
                    },
                ));
        let tools = ToolBox::new(app, 1, "u-alice", "chat-1").with_options(options);
        Self {
            _tmp: tmp,
            ws,
            outside,
            db,
            layer,
            tools,
            seen,
        }
    }

    fn put(&self, rel: &str, text: &str) {
        let p = self.ws.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap()
    }

    async fn call(&self, name: &str, args: Value) -> ToolResult {
        let call = tool_call(name, args);
        tokio::time::timeout(Duration::from_secs(60), self.tools.call(&call, None))
            .await
            .expect("a tool call never hangs")
    }

    async fn preview(&self, name: &str, args: Value) -> Result<ApprovalPreview, ToolResult> {
        self.tools.preview(&tool_call(name, args)).await
    }
}

fn tool_call(name: &str, args: Value) -> ToolCall {
    ToolCall {
        id: "call-1".into(),
        name: name.into(),
        arguments: args,
    }
}

fn ok(r: ToolResult) -> Value {
    assert!(!r.is_error, "{}", r.to_text());
    r.content
}

fn err_code(r: &ToolResult) -> &str {
    assert!(r.is_error, "expected an error, got {}", r.to_text());
    r.error_code().unwrap_or("<no code>")
}

#[tokio::test]
async fn list_read_search_and_git_tools_answer_from_the_workspace() {
    let f = Fixture::new();
    f.put("src/lib.rs", "pub fn answer() -> u32 {\n    41\n}\n");
    f.put("README.md", "hello\n");
    commit_all(&f.ws);
    f.put("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n");

    let listing = ok(f.call("list_dir", json!({})).await);
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"src") && names.contains(&"README.md"),
        "{names:?}"
    );

    let found = ok(f.call("search", json!({"query": "answer"})).await);
    assert_eq!(found["matches"][0]["path"], "src/lib.rs", "{found}");
    assert_eq!(found["matches"][0]["line_number"], 1);

    let status = ok(f.call("git_status", json!({})).await);
    let entries = status["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["path"] == "src/lib.rs"),
        "{status}"
    );
    let diff = ok(f.call("git_diff", Value::Null).await);
    let patch = diff["files"][0]["patch"].as_str().unwrap();
    assert!(
        patch.contains("-    41") && patch.contains("+    42"),
        "{patch}"
    );
}

#[tokio::test]
async fn read_file_gives_a_line_range_and_the_hash_a_write_needs_and_a_stale_hash_conflicts() {
    let f = Fixture::new();
    let text = "one\ntwo\nthree\nfour\n";
    f.put("notes.txt", text);
    let read = ok(f
        .call(
            "read_file",
            json!({"path": "notes.txt", "start_line": 2, "end_line": 3}),
        )
        .await);
    assert_eq!(read["content"], "two\nthree\n");
    assert_eq!(read["total_lines"], 4);
    assert_eq!(read["sha256"], sha256_hex(text.as_bytes()).as_str());

    let sha = read["sha256"].as_str().unwrap().to_owned();
    let write = json!({"path": "notes.txt", "content": "new\n", "expected_sha256": sha});
    let written = ok(f.call("write_file", write.clone()).await);
    assert_eq!(written["sha256"], sha256_hex(b"new\n").as_str());
    assert_eq!(f.read("notes.txt"), "new\n");

    // the same hash again is stale now: refused, file kept
    let stale = f.call("write_file", write).await;
    assert_eq!(err_code(&stale), "file.conflict", "{}", stale.to_text());
    let blind = f
        .call("write_file", json!({"path": "notes.txt", "content": "x"}))
        .await;
    assert_eq!(err_code(&blind), "file.conflict");
    assert_eq!(f.read("notes.txt"), "new\n");

    let created = ok(f
        .call(
            "write_file",
            json!({"path": "fresh.txt", "content": "hi\n"}),
        )
        .await);
    assert_eq!(created["created"], true);
}

#[tokio::test]
async fn apply_patch_is_all_or_nothing_when_the_second_file_does_not_apply() {
    let f = Fixture::new();
    f.put("a.txt", "a\nb\n");
    f.put("b.txt", "x\ny\n");
    let good = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n";
    let bad = "--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n x\n-nope\n+z\n";
    let r = f
        .call("apply_patch", json!({"patch": format!("{good}{bad}")}))
        .await;
    assert_eq!(err_code(&r), "patch.does_not_apply");
    let message = r.content["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("b.txt") && message.contains("hunk #1"),
        "{message}"
    );
    assert_eq!(f.read("a.txt"), "a\nb\n", "the first file is untouched");

    let done = ok(f.call("apply_patch", json!({"patch": good})).await);
    assert_eq!(done["files"][0]["change"], "modified");
    assert_eq!(f.read("a.txt"), "a\nB\n");
}

#[tokio::test]
async fn protected_and_escaping_paths_come_back_as_structured_refusals() {
    let f = Fixture::new();
    f.put(".env", "TOKEN=1\n");
    f.put(".git/config", "[core]\n");
    #[cfg(unix)]
    std::os::unix::fs::symlink(f.outside.join("secret"), f.ws.join("link")).unwrap();

    let r = f.call("read_file", json!({"path": ".env"})).await;
    assert_eq!(err_code(&r), "path.protected", "{}", r.to_text());
    let r = f
        .call("write_file", json!({"path": ".git/config", "content": "x"}))
        .await;
    assert_eq!(err_code(&r), "path.protected");
    let r = f
        .call("read_file", json!({"path": "../outside/secret"}))
        .await;
    assert_eq!(err_code(&r), "path.parent_dir");
    #[cfg(unix)]
    {
        let r = f.call("read_file", json!({"path": "link"})).await;
        assert_eq!(err_code(&r), "path.outside_workspace");
    }
    assert_eq!(f.read(".git/config"), "[core]\n");
}

#[tokio::test]
async fn a_command_off_the_allowlist_is_denied_with_what_and_how_to_allow() {
    let f = Fixture::new();
    let args = json!({"command": "curl", "args": ["https://example.com"]});
    let preview = f.preview("run_command", args.clone()).await.unwrap_err();
    assert_eq!(err_code(&preview), "tool.command_not_allowed");
    assert!(preview.to_text().contains("cat"), "lists the allowed ones");

    // called anyway (the engine never does without approval): the sandbox's own refusal
    let r = f.call("run_command", args).await;
    assert_eq!(err_code(&r), "sandbox.denied", "{}", r.to_text());
    let denied = &r.content["error"]["denied"];
    assert_eq!(denied["target"], "curl", "{denied}");
    assert!(denied["kind"].is_string());
    assert!(denied["how_to_allow"].as_str().unwrap().contains("katachi"));
}

#[tokio::test]
async fn run_output_streams_to_progress_and_is_cut_to_head_and_tail_for_the_model() {
    let f = Fixture::with_options(ToolOptions {
        run_output_head_tail_bytes: 64,
        ..ToolOptions::default()
    });
    let text: String = (0..2000).map(|i| format!("line {i:05}\n")).collect();
    f.put("big.txt", &text);
    let args = json!({"command": "cat", "args": ["big.txt"]});
    match f.preview("run_command", args.clone()).await.unwrap() {
        ApprovalPreview::Command { command, args, cwd } => {
            assert_eq!(
                (command.as_str(), args, cwd.as_str()),
                ("cat", vec!["big.txt".to_owned()], "")
            );
        }
        other => panic!("{other:?}"),
    }
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut all = String::new();
        while let Some(ToolProgress::Output { stream, text }) = rx.recv().await {
            assert_eq!(stream, "stdout");
            all.push_str(&text);
        }
        all
    });
    let r = f
        .tools
        .call(&tool_call("run_command", args), Some(tx))
        .await;
    let content = ok(r);
    assert_eq!(content["exit"]["code"], 0, "{content}");
    assert_eq!(collector.await.unwrap(), text, "progress saw every byte");
    let stdout = content["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("line 00000\n"), "{stdout}");
    assert!(stdout.ends_with("line 01999\n"), "{stdout}");
    assert!(stdout.contains("bytes cut"), "{stdout}");
    assert!(stdout.len() < 300, "cut for the model: {}", stdout.len());
}

#[tokio::test]
async fn previews_show_the_real_diff_and_answer_hopeless_calls_at_once() {
    let f = Fixture::new();
    f.put("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    let sha = sha256_hex(f.read("src/main.rs").as_bytes());
    let write = json!({
        "path": "src/main.rs",
        "content": "fn main() {\n    println!(\"bye\");\n}\n",
        "expected_sha256": sha,
    });
    let ApprovalPreview::Diff {
        paths,
        unified_diff,
    } = f.preview("write_file", write).await.unwrap()
    else {
        panic!("a write previews as a diff");
    };
    assert_eq!(paths, ["src/main.rs"]);
    assert!(
        unified_diff.contains("--- a/src/main.rs\n+++ b/src/main.rs\n"),
        "{unified_diff}"
    );
    assert!(
        unified_diff.contains("-    println!(\"hi\");\n+    println!(\"bye\");\n"),
        "{unified_diff}"
    );

    let patch = "--- /dev/null\n+++ b/NEW.md\n@@ -0,0 +1 @@\n+# new\n--- a/src/main.rs\n+++ b/src/main.rs\n@@ -2 +2 @@\n-    println!(\"hi\");\n+    println!(\"patched\");\n";
    let ApprovalPreview::Diff {
        paths,
        unified_diff,
    } = f
        .preview("apply_patch", json!({"patch": patch}))
        .await
        .unwrap()
    else {
        panic!("a patch previews as a diff");
    };
    assert_eq!(paths, ["NEW.md", "src/main.rs"]);
    assert!(
        unified_diff.contains("--- /dev/null\n+++ b/NEW.md\n"),
        "{unified_diff}"
    );
    assert!(
        unified_diff.contains("+    println!(\"patched\");"),
        "{unified_diff}"
    );
    assert!(!f.ws.join("NEW.md").exists(), "a preview writes nothing");

    let stale = json!({"path": "src/main.rs", "content": "x", "expected_sha256": "0".repeat(64)});
    assert_eq!(
        err_code(&f.preview("write_file", stale).await.unwrap_err()),
        "file.conflict"
    );
    // a write the path rules refuse is answered at once, not shown for approval
    f.put(".git/config", "[core]\n");
    let protected = json!({
        "path": ".git/config",
        "content": "[core]\nhooksPath = x\n",
        "expected_sha256": sha256_hex(b"[core]\n"),
    });
    let refused = f.preview("write_file", protected).await.unwrap_err();
    assert_eq!(err_code(&refused), "path.protected");
    // a new file in new folders: shown, then made with its folders, byte for byte
    let nested = json!({"path": "no/such/dir/f.rs", "content": "x\ny"});
    assert!(f.preview("write_file", nested.clone()).await.is_ok());
    let created = ok(f.call("write_file", nested).await);
    assert_eq!(created["created"], true);
    assert_eq!(created["sha256"], sha256_hex(b"x\ny").as_str());
    assert_eq!(f.read("no/such/dir/f.rs"), "x\ny");
    let bad = json!({"patch": "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1 +1 @@\n-nope\n+x\n"});
    assert_eq!(
        err_code(&f.preview("apply_patch", bad).await.unwrap_err()),
        "patch.does_not_apply"
    );
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_say_what_is_expected() {
    let f = Fixture::new();
    let r = f.call("delete_everything", json!({})).await;
    assert_eq!(err_code(&r), "tool.unknown");
    assert!(r.to_text().contains("read_file"));
    let r = f.call("read_file", json!({"file": "x"})).await;
    assert_eq!(err_code(&r), "tool.invalid_arguments");
    assert!(r.to_text().contains("path"), "{}", r.to_text());
    let r = f.call("read_file", json!("not an object")).await;
    assert_eq!(err_code(&r), "tool.invalid_arguments");
    assert_eq!(f.tools.specs().len(), 8);
    for spec in f.tools.specs() {
        assert_eq!(spec.parameters["type"], "object", "{}", spec.name);
        assert_eq!(
            ToolBox::needs_approval(&spec.name),
            ["write_file", "apply_patch", "run_command"].contains(&spec.name.as_str())
        );
    }
}

#[tokio::test]
async fn no_tool_call_reaches_a_route_outside_the_tools_own() {
    let f = Fixture::new();
    f.put("a.txt", "a\n");
    let hostile_paths = [
        "../../v1/workspaces",
        "a.txt?x=1&path=/etc/passwd",
        "a.txt#frag",
        "%2e%2e/%2e%2e/status",
        "/v1/workspaces/2/file",
        "a\nb",
    ];
    let mut names: Vec<String> = f.tools.specs().into_iter().map(|s| s.name).collect();
    names.extend(["set_policy", "add_workspace", "sandbox_allow"].map(String::from));
    for name in &names {
        let spec = f.tools.specs().into_iter().find(|s| &s.name == name);
        for p in hostile_paths {
            // every argument of the tool's schema filled with the hostile text
            let mut args = serde_json::Map::new();
            let props = spec.as_ref().map(|s| s.parameters["properties"].clone());
            for (key, schema) in props.iter().flat_map(|p| p.as_object().unwrap().clone()) {
                let value = match schema["type"].as_str().unwrap() {
                    "string" => json!(p),
                    "array" => json!([p, "--exec=/bin/sh"]),
                    "integer" => json!(1),
                    _ => json!(true),
                };
                args.insert(key, value);
            }
            let args = Value::Object(args);
            let _ = f.call(name, args.clone()).await;
            let _ = f.preview(name, args).await;
        }
        // and with a real command, so that runs are requested too
        let _ = f
            .call(
                name,
                json!({"command": "ls", "path": "a.txt", "query": "a"}),
            )
            .await;
    }
    let allowed = [
        ("GET", "/v1/workspaces/1/tree"),
        ("GET", "/v1/workspaces/1/file"),
        ("PUT", "/v1/workspaces/1/file"),
        ("GET", "/v1/workspaces/1/search"),
        ("POST", "/v1/workspaces/1/patch"),
        ("POST", "/v1/workspaces/1/run"),
        ("GET", "/v1/workspaces/1/run/commands"),
        ("GET", "/v1/workspaces/1/git/status"),
        ("GET", "/v1/workspaces/1/git/diff"),
    ];
    let seen = f.seen.lock().unwrap().clone();
    for (method, route) in allowed {
        let asked = format!("{method} {route}");
        assert!(
            seen.iter()
                .any(|r| *r == asked || r.starts_with(&format!("{asked}?"))),
            "{asked} was exercised: {seen:?}"
        );
    }
    for request in &seen {
        let (method, uri) = request.split_once(' ').unwrap();
        let path = uri.split('?').next().unwrap();
        assert!(
            allowed.contains(&(method, path)),
            "a tool reached {request}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret")).unwrap(),
        "TOP-SECRET\n"
    );
}

#[tokio::test]
async fn the_ais_calls_are_recorded_in_the_audit_chain_as_the_ai() {
    let f = Fixture::new();
    f.put("a.txt", "a\n");
    ok(f.call("read_file", json!({"path": "a.txt"})).await);
    let written = tokio::time::timeout(Duration::from_secs(10), f.layer.written_at_least(1))
        .await
        .unwrap();
    assert!(written >= 1);
    let store = Store::open(&f.db, &store_key()).unwrap();
    let key = audit_key();
    let log = store.audit(&key);
    log.verify().unwrap();
    let records = log.recent(10).unwrap();
    let r = &records[0];
    assert_eq!(r.action, "file.read");
    assert_eq!(r.actor, "ai");
    assert_eq!(r.user.as_deref(), Some("u-alice"));
    assert_eq!(r.session.as_deref(), Some("chat-1"));
    assert_eq!(r.paths, ["a.txt"]);

    // a patch's record names the files it changed (they are in its body, not its query)
    let patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n";
    ok(f.call("apply_patch", json!({"patch": patch})).await);
    f.layer.written_at_least(2).await;
    let records = store.audit(&key).recent(10).unwrap();
    let r = &records[0];
    assert_eq!((r.action.as_str(), r.actor.as_str()), ("file.patch", "ai"));
    assert_eq!(r.paths, ["a.txt"]);
}

#[tokio::test]
async fn a_file_past_the_read_cap_is_refused_with_what_to_do_instead() {
    let f = Fixture::with_options(ToolOptions {
        max_file_bytes: 1024,
        ..ToolOptions::default()
    });
    f.put("big.log", &"x".repeat(4096));
    let r = f.call("read_file", json!({"path": "big.log"})).await;
    assert_eq!(err_code(&r), "tool.too_large");
    assert!(r.to_text().contains("search"), "{}", r.to_text());
}

#[tokio::test]
async fn a_run_past_the_tools_time_limit_is_stopped_and_answered_with_its_output() {
    let f = Fixture::with_options(ToolOptions {
        run_timeout: Duration::from_secs(2),
        ..ToolOptions::default()
    });
    f.put("grows.log", "first line\n");
    let started = std::time::Instant::now();
    // `tail -f` never ends by itself
    let r = f
        .call(
            "run_command",
            json!({"command": "tail", "args": ["-f", "grows.log"]}),
        )
        .await;
    assert_eq!(err_code(&r), "tool.timeout", "{}", r.to_text());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(r.content["stdout"].as_str().unwrap().contains("first line"));
}
