//! Runs the built `katachi` binary against a temp home.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Home {
    pub tmp: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

impl Home {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn data(&self) -> PathBuf {
        self.home().join("data")
    }

    /// A `katachi` command with this home; env only for the child.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_katachi"));
        c.env("KATACHI_HOME", self.home()).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        require_session_bus();
        finish(self.cmd(args).output().unwrap())
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.tmp.path().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Remove this home's keychain entry (service name is derived from the home path).
        let dirs = katachi_core::KatachiDirs::under(&self.home());
        let _ = katachi_core::vault::Keystore::delete(
            &katachi_core::vault::OsKeychain::new(dirs.keychain_service()),
            katachi_core::vault::MACHINE_SECRET_ACCOUNT,
        );
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn require_session_bus() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the tests with `make test` or `scripts/with-session.sh cargo test`"
    );
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
