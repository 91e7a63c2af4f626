//! Escape battery through `katachi sandbox run` (the agent's code path): every attempt must fail,
//! and each is paired with an allowed case (or an unsandboxed baseline) that must work, so a
//! sandbox that blocks everything — or a test that cannot detect an escape — fails.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::support::{finish, Run};

/// A workspace, an outside folder with secrets, and an agent home, all in one temp dir.
struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        let fx = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fx.ws().join("sub")).unwrap();
        std::fs::create_dir_all(fx.outside()).unwrap();
        std::fs::write(fx.ws().join("f"), "inside\n").unwrap();
        std::fs::write(fx.ws().join(".env"), "TOKEN=envsecret\n").unwrap();
        std::fs::write(fx.ws().join("sub/.env.local"), "TOKEN=envsecret\n").unwrap();
        std::fs::write(fx.outside().join("secret"), "outsidesecret\n").unwrap();
        let ssh = fx.tmp.path().join("userhome/.ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join("id_ed25519"), "PRIVATE KEY\n").unwrap();
        let data = fx.home().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("store.db"), "database\n").unwrap();
        std::fs::write(data.join("credentials.sealed"), "sealed\n").unwrap();
        fx
    }
    fn ws(&self) -> PathBuf {
        self.tmp.path().join("ws")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn home(&self) -> PathBuf {
        self.tmp.path().join("agenthome")
    }
    fn p(&self, rel: &str) -> String {
        self.tmp.path().join(rel).display().to_string()
    }

    /// `katachi sandbox run --workspace WS [extra…] --allow-cmd C… -- cmd…`
    fn run(&self, allow: &[&str], extra: &[&str], cmd: &[&str]) -> Run {
        let ws = self.ws().display().to_string();
        let mut args = vec!["sandbox", "run", "--workspace", ws.as_str()];
        for a in allow {
            args.extend(["--allow-cmd", a]);
        }
        args.extend(extra);
        args.push("--");
        args.extend(cmd);
        let out = Command::new(env!("CARGO_BIN_EXE_katachi"))
            .env("KATACHI_HOME", self.home())
            .args(&args)
            .output()
            .unwrap();
        finish(out)
    }

    fn sh(&self, allow: &[&str], script: &str) -> Run {
        let mut all = vec!["sh"];
        all.extend(allow);
        self.run(&all, &[], &["sh", "-c", script])
    }
}

#[track_caller]
fn ok(r: &Run, what: &str) {
    assert_eq!(
        r.code, 0,
        "allowed case failed: {what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

#[track_caller]
fn blocked(r: &Run, what: &str) {
    assert_ne!(
        r.code, 0,
        "ESCAPE succeeded: {what}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

#[test]
fn reading_secrets_outside_the_workspace_is_blocked() {
    let fx = Fx::new();
    ok(
        &fx.run(&["cat"], &[], &["cat", "f"]),
        "read a workspace file",
    );
    ok(
        &fx.run(&["cat"], &[], &["cat", "/etc/passwd"]),
        "read a system file",
    );
    let targets = [
        "/etc/shadow".to_owned(),
        fx.p("userhome/.ssh/id_ed25519"),
        fx.p("outside/secret"),
        fx.p("agenthome/data/store.db"),
        fx.p("agenthome/data/credentials.sealed"),
        "/root/.bashrc".to_owned(),
    ];
    for t in &targets {
        let r = fx.run(&["cat"], &[], &["cat", t]);
        blocked(&r, &format!("read {t}"));
        assert!(!r.stdout.contains("secret") && !r.stdout.contains("PRIVATE"));
    }
    blocked(
        &fx.run(&["ls"], &[], &["ls", "/home"]),
        "list other users' homes",
    );
    ok(
        &fx.run(&["ls"], &[], &["ls", "sub"]),
        "list a workspace folder",
    );
}

#[test]
fn env_files_and_the_agents_own_folder_in_a_workspace_are_hidden() {
    let fx = Fx::new();
    for f in [".env", "sub/.env.local"] {
        let r = fx.run(&["cat"], &[], &["cat", f]);
        assert!(!r.stdout.contains("envsecret"), "read {f}: {}", r.stdout);
        let r = fx.run(&["cat"], &["--allow-env-files"], &["cat", f]);
        ok(&r, "read .env when allowed");
        assert!(r.stdout.contains("envsecret"));
    }
    // an agent home inside the workspace stays invisible
    let inner = fx.ws().join(".katachi");
    std::fs::create_dir_all(inner.join("data")).unwrap();
    std::fs::write(inner.join("data/store.db"), "database\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_katachi"))
        .env("KATACHI_HOME", &inner)
        .args(["sandbox", "run", "--workspace"])
        .arg(fx.ws())
        .args(["--allow-cmd", "cat", "--", "cat", ".katachi/data/store.db"])
        .output()
        .unwrap();
    let r = finish(out);
    blocked(&r, "read the agent's store inside the workspace");
    assert!(!r.stdout.contains("database"));
}

#[test]
fn writing_outside_the_workspace_is_blocked() {
    let fx = Fx::new();
    let o = fx.p("outside");
    ok(&fx.sh(&[], "echo x > written"), "write in the workspace");
    ok(
        &fx.sh(&["ln", "cat"], "ln -s f lnk && cat lnk >/dev/null"),
        "symlink inside",
    );
    let attempts = [
        ("absolute path", format!("echo x > {o}/p1")),
        ("..", "echo x > ../outside/p2".to_owned()),
        ("/proc/self/root", format!("echo x > /proc/self/root{o}/p3")),
        (
            "symlink to outside",
            format!("ln -s {o} out && echo x > out/p4"),
        ),
        (
            "hard link of an outside file",
            format!("ln {o}/secret hl && echo x >> hl"),
        ),
        ("/tmp", "echo x > /tmp/katachi-sandbox-escape".to_owned()),
    ];
    for (what, script) in &attempts {
        blocked(&fx.sh(&["ln", "cat"], script), what);
    }
    // symlink swap while writing (TOCTOU): the link flips between inside and outside
    let swap = format!(
        "mkdir -p d; i=0; while [ $i -lt 200 ]; do ln -sfn {o} sw; echo x > sw/p5 2>/dev/null; \
         ln -sfn d sw; echo x > sw/p5; i=$((i+1)); done"
    );
    ok(&fx.sh(&["ln", "mkdir"], &swap), "symlink swap loop ran");
    assert!(
        fx.ws().join("d/p5").exists(),
        "the inside half of the swap must work"
    );
    // /proc/PID/cwd of a process sitting outside
    let mut sitter = Command::new("sleep")
        .arg("30")
        .current_dir(fx.outside())
        .spawn()
        .unwrap();
    let r = fx.sh(&[], &format!("echo x > /proc/{}/cwd/p6", sitter.id()));
    sitter.kill().unwrap();
    let _ = sitter.wait();
    blocked(&r, "/proc/PID/cwd");
    for n in 1..=6 {
        assert!(
            !fx.outside().join(format!("p{n}")).exists(),
            "p{n} was written outside"
        );
    }
    assert_eq!(
        std::fs::read_to_string(fx.outside().join("secret")).unwrap(),
        "outsidesecret\n"
    );
    assert!(!Path::new("/tmp/katachi-sandbox-escape").exists());
}

#[test]
fn git_hooks_and_config_cannot_be_planted() {
    let fx = Fx::new();
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(fx.ws())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(git(&["init", "-q"]).status.success());
    ok(
        &fx.sh(&[], "echo x > .git/description"),
        "write inside .git",
    );
    ok(
        &fx.run(&["git"], &[], &["git", "status", "--short"]),
        "git status",
    );
    let attempts = [
        ("create a hook", "echo 'id' > .git/hooks/pre-commit"),
        (
            "edit .git/config",
            "echo '[core] fsmonitor = id' >> .git/config",
        ),
        ("replace .git/config", "echo x > cfg && mv cfg .git/config"),
        ("remove the hooks folder", "rm -rf .git/hooks"),
        (
            "rename .git away",
            "mv .git .git-old && mkdir -p .git/hooks",
        ),
    ];
    for (what, script) in attempts {
        blocked(&fx.sh(&["mv", "rm", "mkdir"], script), what);
    }
    assert!(!fx.ws().join(".git/hooks/pre-commit").exists());
    assert!(!fx.ws().join(".git-old").exists());
    let cfg = std::fs::read_to_string(fx.ws().join(".git/config")).unwrap();
    assert!(!cfg.contains("fsmonitor"));
}

#[test]
fn a_git_repository_made_by_a_run_is_moved_aside_and_reported() {
    let fx = Fx::new();
    // a workspace without `.git`: a run plants one with a hook and an fsmonitor config
    let r = fx.sh(
        &["mkdir"],
        "mkdir -p .git/hooks && echo id > .git/hooks/post-checkout \
         && printf '[core]\\n\\tfsmonitor = id\\n' > .git/config",
    );
    ok(&r, "the script itself runs");
    assert!(!fx.ws().join(".git").exists(), "the planted .git stayed");
    assert!(fx
        .ws()
        .join(".git.refused-by-katachi/hooks/post-checkout")
        .exists());
    assert!(
        r.stderr.contains(&format!(
            "sandbox denied file access to {}",
            fx.ws().join(".git").display()
        )),
        "{}",
        r.stderr
    );
    // `git init` from a run is moved aside the same way (a second name, nothing lost)
    let r = fx.run(&["git"], &[], &["git", "init", "-q"]);
    ok(&r, "git init runs");
    assert!(!fx.ws().join(".git").exists());
    assert!(fx.ws().join(".git.refused-by-katachi-2").is_dir());
}

#[test]
fn only_allowlisted_binaries_can_be_executed() {
    let fx = Fx::new();
    // direct: a structured exec denial
    let r = fx.run(&["cat"], &[], &["id"]);
    assert_eq!(r.code, 126, "{}", r.stderr);
    assert!(
        r.stderr.contains(r#""kind":"exec""#) && r.stderr.contains("--allow-cmd id"),
        "{}",
        r.stderr
    );
    ok(&fx.run(&["id"], &[], &["id"]), "allowlisted id");
    let pairs: [(&[&str], &[&str], &[&str]); 6] = [
        (&["sh"], &["sh", "-c", "id"], &["sh", "-c", "cat f"]),
        (&["env"], &["env", "id"], &["env", "cat", "f"]),
        (
            &["sh", "xargs"],
            &["sh", "-c", "echo . | xargs id"],
            &["sh", "-c", "echo f | xargs cat"],
        ),
        (
            &["find"],
            &["find", "f", "-exec", "id", ";"],
            &["find", "f", "-exec", "cat", "{}", ";"],
        ),
        (
            &["perl"],
            &["perl", "-e", "exec '/usr/bin/id' or exit 1"],
            &["perl", "-e", "exec 'cat', 'f' or exit 1"],
        ),
        (
            &["python3"],
            &[
                "python3",
                "-c",
                "import os; os.execv('/usr/bin/id', ['id'])",
            ],
            &[
                "python3",
                "-c",
                "import os; os.execv('/usr/bin/cat', ['cat', 'f'])",
            ],
        ),
    ];
    for (allow, escape, control) in pairs {
        let mut allow = allow.to_vec();
        allow.push("cat");
        let r = fx.run(&allow, &[], control);
        ok(&r, &format!("{control:?}"));
        assert_eq!(r.stdout, "inside\n", "{control:?}");
        // some launchers (find) exit 0 when the exec fails: the proof is id's output
        let r = fx.run(&allow, &[], escape);
        assert!(
            !r.stdout.contains("uid="),
            "ESCAPE succeeded: {escape:?}: {}",
            r.stdout
        );
    }
    // git running a command from a config option
    Command::new("git")
        .current_dir(fx.ws())
        .args(["init", "-q"])
        .status()
        .unwrap();
    ok(
        &fx.run(&["git"], &[], &["git", "-c", "alias.st=status", "st"]),
        "git alias",
    );
    blocked(
        &fx.run(&["git"], &[], &["git", "-c", "alias.x=!id", "x"]),
        "git ! alias",
    );
    blocked(
        &fx.run(
            &["git"],
            &[],
            &["git", "-c", "core.sshCommand=id", "ls-remote", "ssh://h/r"],
        ),
        "git core.sshCommand",
    );
}

#[test]
fn planted_scripts_copies_and_the_loader_cannot_run_other_programs() {
    let fx = Fx::new();
    let allow = ["cp", "chmod", "cat"];
    std::fs::write(fx.ws().join("s.sh"), "#!/bin/sh\ncat f\n").unwrap();
    ok(
        &fx.sh(&allow, "sh s.sh"),
        "run a script through the allowed shell",
    );
    blocked(
        &fx.sh(&allow, "chmod +x s.sh && ./s.sh"),
        "run a shebang script directly",
    );
    blocked(
        &fx.sh(&allow, "cp /usr/bin/cat c && chmod +x c && ./c f"),
        "run a copied binary",
    );
    let ld = "/lib64/ld-linux-x86-64.so.2";
    ok(
        &fx.sh(&allow, &format!("{ld} /usr/bin/cat f")),
        "loader on an allowed binary",
    );
    blocked(
        &fx.sh(&allow, &format!("{ld} /usr/bin/id")),
        "loader on a disallowed binary",
    );
    blocked(
        &fx.sh(&allow, &format!("cp /usr/bin/cat c2 && {ld} ./c2 f")),
        "loader on a copy in the workspace",
    );
}

/// A TCP listener that records whether anyone connected.
fn tcp_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Whether anyone connected since the last call (drains every pending connection).
fn was_connected(l: &TcpListener) -> bool {
    std::thread::sleep(Duration::from_millis(100));
    let mut any = false;
    while l.accept().is_ok() {
        any = true;
    }
    any
}

#[test]
fn network_is_blocked_by_the_kernel() {
    let fx = Fx::new();
    let tcp_attempts: [(&[&str], String); 4] = [
        (&["curl"], "curl -s -m 3 http://127.0.0.1:PORT/".to_owned()),
        (&["wget"], "wget -q -t 1 -T 3 -O - http://127.0.0.1:PORT/".to_owned()),
        (&["bash"], "bash -c 'echo hi > /dev/tcp/127.0.0.1/PORT'".to_owned()),
        (&["perl"], "perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr=>q(127.0.0.1:PORT)) or exit 1'".to_owned()),
    ];
    for (allow, script) in tcp_attempts {
        let (l, port) = tcp_listener();
        let script = script.replace("PORT", &port.to_string());
        // baseline: the same command outside the sandbox does reach the listener
        let _ = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(was_connected(&l), "baseline did not connect: {script}");
        blocked(&fx.sh(allow, &script), &script);
        assert!(
            !was_connected(&l),
            "sandboxed connection reached the host: {script}"
        );
    }
    blocked(
        &fx.sh(&["curl"], "curl -s -m 3 http://1.1.1.1/"),
        "curl to the internet",
    );
    // UDP (a DNS query) and a raw socket (ping)
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let send = format!(
        "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(Proto=>q(udp), PeerAddr=>q(127.0.0.1:{})) or exit 1; $s->send(q(dns)) or exit 1'",
        udp.local_addr().unwrap().port()
    );
    assert!(Command::new("sh")
        .args(["-c", &send])
        .status()
        .unwrap()
        .success());
    assert!(udp.recv(&mut [0u8; 16]).is_ok(), "UDP baseline");
    blocked(&fx.sh(&["perl"], &send), "UDP datagram");
    assert!(
        udp.recv(&mut [0u8; 16]).is_err(),
        "a UDP datagram left the sandbox"
    );
    let raw = "perl -MSocket -e 'socket(S, PF_INET, SOCK_RAW, 1) or exit 1'";
    assert!(
        Command::new("sh")
            .args(["-c", raw])
            .status()
            .unwrap()
            .success(),
        "raw baseline (root)"
    );
    blocked(&fx.sh(&["perl"], raw), "raw ICMP socket");
}

#[test]
fn unix_sockets_of_the_host_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    let fx = Fx::new();
    let name = format!("katachi-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abs = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    abs.set_nonblocking(true).unwrap();
    let path = fx.outside().join("agent.sock");
    let named = std::os::unix::net::UnixListener::bind(&path).unwrap();
    named.set_nonblocking(true).unwrap();
    let connect = |target: &str| {
        format!("perl -MSocket -e 'socket(S, PF_UNIX, SOCK_STREAM, 0) or exit 1; connect(S, pack_sockaddr_un(\"{target}\")) or exit 1'")
    };
    let abs_script = connect(&format!("\\0{name}"));
    let path_script = connect(&path.display().to_string());
    for (script, listener) in [(&abs_script, &abs), (&path_script, &named)] {
        assert!(
            Command::new("sh")
                .args(["-c", script])
                .status()
                .unwrap()
                .success(),
            "baseline {script}"
        );
        assert!(listener.accept().is_ok());
        blocked(&fx.sh(&["perl"], script), script);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            listener.accept().is_err(),
            "sandbox reached a host UNIX socket: {script}"
        );
    }
    // socketpair inside the sandbox still works (pipes between its own processes)
    ok(
        &fx.sh(
            &["perl"],
            "perl -MSocket -e 'socketpair(A, B, AF_UNIX, SOCK_STREAM, 0) or exit 1'",
        ),
        "socketpair",
    );
}

#[test]
fn limits_stop_bombs_and_the_whole_tree_dies() {
    let fx = Fx::new();
    // wall time
    ok(
        &fx.run(&["sleep"], &["--timeout", "5"], &["sleep", "0.1"]),
        "short sleep",
    );
    let t = Instant::now();
    let r = fx.run(&["sleep"], &["--timeout", "1"], &["sleep", "30"]);
    blocked(&r, "sleep past the limit");
    assert!(
        t.elapsed() < Duration::from_secs(5) && r.stderr.contains(r#""kind":"limit""#),
        "{}",
        r.stderr
    );
    // output
    let r = fx.run(&["cat"], &["--max-output", "100000"], &["cat", "/dev/zero"]);
    blocked(&r, "infinite output");
    assert!(
        r.stdout.len() <= 100_000 && r.stderr.contains("output"),
        "{}",
        r.stderr
    );
    let r = fx.run(&["cat"], &["--max-output", "100000"], &["cat", "f"]);
    ok(&r, "small output");
    assert_eq!(r.stdout, "inside\n");
    // memory
    let mem = ["--max-memory-mib", "256"];
    ok(
        &fx.run(
            &["perl"],
            &mem,
            &["perl", "-e", "$x = q(a) x (10 * 1024 * 1024)"],
        ),
        "10 MiB",
    );
    blocked(
        &fx.run(
            &["perl"],
            &mem,
            &["perl", "-e", "$x = q(a) x (2 * 1024 ** 3)"],
        ),
        "memory bomb",
    );
    // CPU time
    let r = fx.run(
        &["perl"],
        &["--max-cpu", "1", "--timeout", "20"],
        &["perl", "-e", "1 while 1"],
    );
    blocked(&r, "CPU spin");
    assert!(r.stderr.contains("cpu time"), "{}", r.stderr);
    // fork bomb: stopped by the process limit and the timeout, and nothing survives
    let marker = format!("katachi-bomb-{}", std::process::id());
    let bomb = format!("$0 = q({marker}); fork while 1; sleep 60");
    ok(
        &fx.run(
            &["perl"],
            &["--max-processes", "64"],
            &["perl", "-e", "fork or exit; wait; print 1"],
        ),
        "one fork",
    );
    let t = Instant::now();
    let r = fx.run(
        &["perl"],
        &["--max-processes", "64", "--timeout", "3"],
        &["perl", "-e", &bomb],
    );
    blocked(&r, "fork bomb");
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(processes_named(&marker), 0, "fork bomb processes survived");
    // an orphaned grandchild dies with the run
    let marker = format!("katachi-orphan-{}", std::process::id());
    let script = format!("perl -e '$0 = q({marker}); open F, q(>orphan-ran); close F; sleep 300' & sleep 0.5; echo started");
    let r = fx.sh(&["perl", "sleep"], &script);
    ok(&r, "start a background child");
    assert!(
        fx.ws().join("orphan-ran").exists(),
        "the orphan never ran: the test proves nothing"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        processes_named(&marker),
        0,
        "an orphaned grandchild survived the run"
    );
}

/// Processes whose command line contains `marker`.
fn processes_named(marker: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(entry.path().join("cmdline")) {
            let _ = f.read_to_string(&mut s);
        }
        if s.contains(marker) {
            n += 1;
        }
    }
    n
}

#[test]
fn the_agent_cannot_be_traced_or_signalled() {
    let fx = Fx::new();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    ok(
        &fx.sh(&["sleep"], "sleep 5 & kill $!"),
        "signal its own child",
    );
    blocked(
        &fx.sh(&[], &format!("kill -KILL {pid}")),
        "SIGKILL a host process",
    );
    let trace = format!("perl -e 'syscall(101, 16, {pid}, 0, 0) == 0 or exit 1'");
    ok(
        &fx.sh(&["perl"], "perl -e 'syscall(39) > 0 or exit 1'"),
        "a harmless syscall",
    );
    blocked(&fx.sh(&["perl"], &trace), "ptrace attach");
    blocked(
        &fx.run(&["unshare"], &[], &["unshare", "-r", "true"]),
        "new namespaces",
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was killed from the sandbox"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
    let _ = std::io::stdout().flush();
}

#[test]
fn status_lists_the_active_layers_and_the_self_test_passes() {
    let fx = Fx::new();
    let out = Command::new(env!("CARGO_BIN_EXE_katachi"))
        .env("KATACHI_HOME", fx.home())
        .args(["--json", "sandbox", "status"])
        .output()
        .unwrap();
    let r = finish(out);
    ok(&r, "status");
    let v = r.json();
    let active: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["active"] == true)
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for layer in [
        "landlock abi 7",
        "seccomp",
        "netns",
        "pidns",
        "mountns",
        "proxy",
    ] {
        assert!(active.contains(&layer), "{layer} missing: {active:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_katachi"))
        .env("KATACHI_HOME", fx.home())
        .args(["sandbox", "test"])
        .output()
        .unwrap();
    let r = finish(out);
    ok(&r, "self-test");
    assert!(!r.stdout.contains("ESCAPED"), "{}", r.stdout);
}
