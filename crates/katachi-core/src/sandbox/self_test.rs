//! The self-test: tries a set of escapes on this machine and reports each as blocked or not.
//!
//! Each attempt is paired with a control that must succeed under the same policy (reading a
//! workspace file, writing one), so a sandbox that blocks everything does not pass as secure.

use std::path::Path;

use super::{RunRequest, Sandbox, SandboxError, SandboxPolicy, SandboxStatus};

/// The result of one escape attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EscapeResult {
    /// What was tried.
    pub attempt: String,
    /// `true` when the sandbox stopped it.
    pub blocked: bool,
    /// The command's exit code or the spawn error.
    pub detail: String,
}

/// The self-test's findings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SelfTestReport {
    /// The layers of this machine.
    pub status: SandboxStatus,
    /// Whether the controls (allowed actions) worked; when not, the sandbox is unusable here.
    pub controls_ok: bool,
    /// Each attempt.
    pub results: Vec<EscapeResult>,
}

impl SelfTestReport {
    /// Every escape blocked and every control working.
    pub fn passed(&self) -> bool {
        self.controls_ok && self.results.iter().all(|r| r.blocked)
    }
}

/// Runs the self-test (needs `sh` and `cat` on the trusted PATH).
///
/// # Errors
/// [`SandboxError`] when the test folders cannot be made or the policy cannot be built.
pub async fn self_test(sandbox: &Sandbox) -> Result<SelfTestReport, SandboxError> {
    let setup = |source| SandboxError::Setup {
        step: "self-test folders",
        source,
    };
    let tmp = tempfile::tempdir().map_err(setup)?;
    let ws = tmp.path().join("workspace");
    let outside = tmp.path().join("outside");
    for d in [&ws, &outside, &ws.join(".git/hooks")] {
        std::fs::create_dir_all(d).map_err(setup)?;
    }
    std::fs::write(ws.join("readme"), "hello").map_err(setup)?;
    std::fs::write(ws.join(".env"), "TOKEN=secret").map_err(setup)?;
    std::fs::write(outside.join("secret"), "secret").map_err(setup)?;
    let policy = SandboxPolicy::builder()
        .workspace(&ws, false)
        .allow_command("sh")
        .allow_command("cat")
        .allow_command("chmod")
        .build()?;
    let o = outside.display();
    let agent = std::process::id();
    let controls = [
        "cat readme".to_owned(),
        "echo ok > written && cat written".to_owned(),
    ];
    let attempts = [
        ("read /etc/shadow", "cat /etc/shadow".to_owned()),
        (
            "read a file outside the workspace",
            format!("cat {o}/secret"),
        ),
        (
            "write outside the workspace",
            format!("echo x > {o}/planted"),
        ),
        (
            "write outside via ..",
            "echo x > ../outside/planted2".to_owned(),
        ),
        ("read .env in the workspace", "cat .env".to_owned()),
        (
            "create a git hook",
            "echo x > .git/hooks/pre-commit".to_owned(),
        ),
        ("exec a disallowed binary", "id".to_owned()),
        (
            "exec a disallowed binary via the loader",
            "/lib64/ld-linux-x86-64.so.2 /usr/bin/id".to_owned(),
        ),
        (
            "exec a copied binary",
            "cat /bin/cat > c && chmod +x c && ./c readme".to_owned(),
        ),
        ("signal the agent", format!("kill -0 {agent}")),
        (
            "read the agent's environment",
            format!("cat /proc/{agent}/environ"),
        ),
    ];
    let mut controls_ok = true;
    for script in controls {
        controls_ok &= run_sh(sandbox, &policy, &ws, &script).await.0;
    }
    let mut results = Vec::new();
    for (attempt, script) in attempts {
        let (succeeded, detail) = run_sh(sandbox, &policy, &ws, &script).await;
        let planted = outside.join("planted").exists() || outside.join("planted2").exists();
        results.push(EscapeResult {
            attempt: attempt.to_owned(),
            blocked: !succeeded && !planted,
            detail,
        });
    }
    Ok(SelfTestReport {
        status: sandbox.status(),
        controls_ok,
        results,
    })
}

/// Runs `sh -c script` in the workspace: (exited 0, detail).
async fn run_sh(
    sandbox: &Sandbox,
    policy: &SandboxPolicy,
    ws: &Path,
    script: &str,
) -> (bool, String) {
    let request = RunRequest {
        command: "sh".to_owned(),
        args: vec!["-c".into(), script.into()],
        cwd: ws.to_path_buf(),
    };
    match sandbox.spawn(policy, &request) {
        Ok(child) => {
            let (outcome, _, err) = child.collect().await;
            let code = outcome.exit.shell_code();
            let err = String::from_utf8_lossy(&err);
            (code == 0, format!("exit {code}: {}", err.trim()))
        }
        Err(e) => (false, e.to_string()),
    }
}
