//! The test kit for `katachi-relay` (and helper programs) as child processes: one clean command
//! line, a child killed when dropped, free loopback ports.
//!
//! # Contract
//! - [`relay_command`] is the relay binary with a configuration that does not depend on the
//!   test's environment: every `KATACHI_RELAY_*` variable a test run may carry is removed, the
//!   metrics listener is off (tests run side by side: none takes the default port) unless the
//!   caller passes `--metrics-listen`, device polls every second, warn-level logs on stderr
//!   (`KATACHI_LOG`, which the caller may set again), stdout discarded unless set again.
//! - [`Child`] kills its process (SIGKILL) and reaps it when dropped or [`Child::kill`]ed.

use std::path::Path;
use std::process::{Command, Stdio};

/// The variables of the relay's flags that a test's environment could hold.
const RELAY_ENV: [&str; 5] = [
    "KATACHI_RELAY_DATABASE_URL",
    "KATACHI_RELAY_MASTER_KEY_FILE",
    "KATACHI_RELAY_SMTP_URL",
    "KATACHI_RELAY_METRICS_LISTEN",
    "KATACHI_RELAY_LOG_FORMAT",
];

/// `katachi-relay --listen {listen} --data-dir {data_dir}` with a clean configuration (see the
/// module's contract); add flags to it.
pub fn relay_command(listen: &str, data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_katachi-relay"));
    command
        .args(["--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--device-poll-interval", "1"]);
    for name in RELAY_ENV {
        command.env_remove(name);
    }
    command
        .env("KATACHI_RELAY_METRICS_LISTEN", "off")
        .env("KATACHI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// A child process, killed (SIGKILL, no drain: like a crash or an OOM kill) when dropped.
pub struct Child(pub std::process::Child);

impl Child {
    /// Starts `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().unwrap())
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use katachi_testkit::free_port;
