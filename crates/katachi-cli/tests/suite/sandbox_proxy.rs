//! The egress proxy and per-workspace overrides through `katachi sandbox run|policy`: an allowed
//! host is reached through the proxy, anything else is refused with a structured reason, and no
//! way around the proxy reaches the host. The agent home uses the file keystore (no session bus).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::support::{finish, Run};

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        let fx = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fx.ws()).unwrap();
        std::fs::write(fx.ws().join("f"), "inside\n").unwrap();
        let config = fx.home().join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("config.toml"),
            "[keystore]\nbackend = \"file\"\n",
        )
        .unwrap();
        fx
    }
    fn ws(&self) -> PathBuf {
        self.tmp.path().join("ws")
    }
    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }
    fn katachi(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_katachi"))
            .env("KATACHI_HOME", self.home())
            .args(args)
            .output()
            .unwrap();
        finish(out)
    }
    /// `katachi sandbox run --workspace WS [extra…] -- cmd…`
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Run {
        let ws = self.ws().display().to_string();
        let mut args = vec!["sandbox", "run", "--workspace", ws.as_str()];
        args.extend(extra);
        args.push("--");
        args.extend(cmd);
        self.katachi(&args)
    }
}

/// An HTTP server on the host's loopback answering `upstream-ok`; counts connections.
pub(super) fn upstream() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nupstream-ok\n",
            );
        }
    });
    (port, hits)
}

#[track_caller]
fn ok(r: &Run, what: &str) {
    assert_eq!(
        r.code, 0,
        "{what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

#[track_caller]
fn blocked(r: &Run, what: &str) {
    assert_ne!(
        r.code, 0,
        "ESCAPE: {what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

#[test]
fn allowed_host_is_reached_through_the_proxy_and_logged() {
    let fx = Fx::new();
    let (port, hits) = upstream();
    let url = format!("http://localhost:{port}/");
    let allow = format!("localhost:{port}");
    // without the host allowed: refused by the proxy, nothing reaches the server
    let r = fx.run(
        &["--allow-cmd", "curl", "--allow-host", "crates.io"],
        &["curl", "-sS", "-p", "-m", "5", &url],
    );
    blocked(&r, "curl to a host that is not allowed");
    assert!(
        r.stderr.contains(&format!(
            "egress denied localhost:{port}: not in the allowed hosts (add --allow-host localhost:{port} to the run"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // allowed: through the proxy (curl -p tunnels http with CONNECT)
    let r = fx.run(
        &["--allow-cmd", "curl", "--allow-host", &allow],
        &["curl", "-sS", "-p", "-m", "5", &url],
    );
    ok(&r, "curl through the proxy to an allowed host");
    assert_eq!(r.stdout, "upstream-ok\n");
    assert!(
        r.stderr
            .contains(&format!("katachi: egress allowed localhost:{port}")),
        "{}",
        r.stderr
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn host_not_allowed_is_refused_with_a_structured_reason() {
    let fx = Fx::new();
    let (port, hits) = upstream();
    let allow = format!("localhost:{port}");
    let r = fx.run(
        &["--allow-cmd", "curl", "--allow-host", &allow],
        &["curl", "-sS", "-m", "5", "https://evil.example/"],
    );
    blocked(&r, "https to a host that is not allowed");
    assert!(
        r.stderr.contains(
            "egress denied evil.example:443: not in the allowed hosts (add --allow-host evil.example to the run"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            r#"denial {"kind":"network","target":"evil.example:443","how_to_allow":"add --allow-host evil.example to the run, or on the agent's machine run `katachi sandbox policy set --workspace "#
        ),
        "{}",
        r.stderr
    );
    // the allowed name on another port, and an IP literal of the same server
    for url in [
        "http://localhost:1/".to_owned(),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let r = fx.run(
            &["--allow-cmd", "curl", "--allow-host", &allow],
            &["curl", "-sS", "-p", "-m", "5", &url],
        );
        blocked(&r, &url);
        assert!(r.stderr.contains("egress denied"), "{}", r.stderr);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn connections_around_the_proxy_never_leave_the_sandbox() {
    let fx = Fx::new();
    let (port, hits) = upstream();
    let allow = format!("localhost:{port}");
    let flags = [
        "--allow-cmd",
        "curl",
        "--allow-cmd",
        "env",
        "--allow-cmd",
        "bash",
        "--allow-cmd",
        "perl",
        "--allow-host",
        &allow,
    ];
    let direct = format!("http://127.0.0.1:{port}/");
    let by_name = format!("http://localhost:{port}/");
    // baseline: the same curl outside the sandbox reaches the server
    let base = Command::new("curl")
        .args(["-s", "-m", "5", &direct])
        .output()
        .unwrap();
    assert!(base.status.success());
    let seen = hits.load(Ordering::SeqCst);
    let attempts: [&[&str]; 5] = [
        // the proxy variables ignored
        &["curl", "-sS", "--noproxy", "*", "-m", "5", &direct],
        // the proxy variables removed
        &[
            "env",
            "-u",
            "http_proxy",
            "-u",
            "HTTP_PROXY",
            "-u",
            "https_proxy",
            "-u",
            "HTTPS_PROXY",
            "curl",
            "-sS",
            "-m",
            "5",
            &by_name,
        ],
        &["bash", "-c", &format!("echo x > /dev/tcp/127.0.0.1/{port}")],
        &[
            "perl",
            "-MIO::Socket::INET",
            "-e",
            &format!("IO::Socket::INET->new(PeerAddr => q(127.0.0.1:{port})) or exit 1"),
        ],
        // a public address directly
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "-m",
            "3",
            "http://1.1.1.1/",
        ],
    ];
    for cmd in attempts {
        blocked(&fx.run(&flags, cmd), &format!("{cmd:?}"));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        seen,
        "a direct connection reached the host"
    );
    // the control: the same sandbox does reach the server through the proxy
    ok(
        &fx.run(&flags, &["curl", "-sS", "-p", "-m", "5", &by_name]),
        "through the proxy",
    );
}

#[test]
fn workspace_overrides_are_stored_shown_used_and_reset() {
    let fx = Fx::new();
    let ws = fx.ws().display().to_string();
    // not an allowed workspace yet: the error says how to add it
    let r = fx.katachi(&["sandbox", "policy", "show", "--workspace", &ws]);
    assert!(
        r.code != 0 && r.stderr.contains("katachi workspace add"),
        "{}",
        r.stderr
    );
    ok(&fx.katachi(&["workspace", "add", &ws]), "workspace add");
    // without overrides cat is not allowed
    let r = fx.run(&[], &["cat", "f"]);
    assert!(r.stderr.contains("--allow-cmd cat"), "{}", r.stderr);
    // an unknown command is refused and nothing is stored
    let r = fx.katachi(&[
        "sandbox",
        "policy",
        "set",
        "--workspace",
        &ws,
        "--allow-cmd",
        "no-such-program-katachi",
    ]);
    assert!(
        r.code != 0 && r.stderr.contains("no-such-program-katachi"),
        "{}",
        r.stderr
    );
    ok(
        &fx.katachi(&[
            "sandbox",
            "policy",
            "set",
            "--workspace",
            &ws,
            "--allow-cmd",
            "cat",
            "--allow-host",
            "crates.io",
            "--timeout",
            "33",
        ]),
        "policy set",
    );
    let shown = fx.katachi(&["--json", "sandbox", "policy", "show", "--workspace", &ws]);
    ok(&shown, "policy show");
    let v = shown.json();
    assert_eq!(v["overrides"]["allow_commands"][0], "cat");
    assert_eq!(v["effective"]["hosts"][0], "crates.io");
    assert_eq!(v["effective"]["wall_time_secs"], 33);
    // the run uses the stored overrides
    let r = fx.run(&[], &["cat", "f"]);
    ok(&r, "cat allowed by the workspace's overrides");
    assert_eq!(r.stdout, "inside\n");
    ok(
        &fx.katachi(&["sandbox", "policy", "reset", "--workspace", &ws]),
        "policy reset",
    );
    blocked(&fx.run(&[], &["cat", "f"]), "cat after reset");
}

#[test]
fn corrupt_stored_overrides_give_a_clear_error_naming_the_workspace() {
    let fx = Fx::new();
    let ws = fx.ws().display().to_string();
    ok(&fx.katachi(&["workspace", "add", &ws]), "workspace add");
    ok(
        &fx.katachi(&[
            "sandbox",
            "policy",
            "set",
            "--workspace",
            &ws,
            "--allow-env-files",
        ]),
        "policy set",
    );
    {
        let dirs = katachi_core::KatachiDirs::under(&fx.home());
        let home =
            katachi_core::AgentHome::open(dirs, &katachi_core::fingerprint::SystemFingerprint)
                .unwrap();
        let store = home.store().unwrap();
        let id = store.workspaces().list().unwrap()[0].id;
        store.sandbox_overrides().set(id, "{broken").unwrap();
    }
    let canonical = std::fs::canonicalize(fx.ws())
        .unwrap()
        .display()
        .to_string();
    for r in [
        fx.run(&["--allow-cmd", "cat"], &["cat", "f"]),
        fx.katachi(&["sandbox", "policy", "show", "--workspace", &ws]),
    ] {
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains(&canonical)
                && r.stderr
                    .contains("katachi sandbox policy reset --workspace"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    ok(
        &fx.katachi(&["sandbox", "policy", "reset", "--workspace", &ws]),
        "reset repairs it",
    );
    ok(
        &fx.run(&["--allow-cmd", "cat"], &["cat", "f"]),
        "run after reset",
    );
}
