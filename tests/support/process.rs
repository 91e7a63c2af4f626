//! A spawned binary under test: its stdout and stderr captured, every wait bounded, killed on drop.
//!
//! Output is read by two background threads so the child never blocks on a full pipe; stdout comes
//! in as lines (to wait for a readiness line), stderr as one growing text (to explain failures).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How often the `wait_*` helpers poll a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A child process with captured output. Dropping it kills the process (SIGKILL) and reaps it, so a
/// failing test never leaves an app running.
pub struct SpawnedProcess {
    /// What was started, for messages (e.g. `target/debug/katachi-app`).
    name: String,
    /// The running process; `None` once it has been reaped.
    child: Option<Child>,
    /// Lines of the child's stdout, in order, until it closes its stdout.
    stdout_lines: Receiver<String>,
    /// Every stdout line received so far, for failure messages.
    stdout_seen: Vec<String>,
    /// Everything the child wrote on stderr so far.
    stderr_text: Arc<Mutex<String>>,
    /// Exit status once the child has been reaped.
    status: Option<ExitStatus>,
}

impl SpawnedProcess {
    /// Spawns `command` with stdin closed and stdout and stderr captured.
    ///
    /// # Errors
    /// Returns the spawn error (binary missing, not executable, ...).
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let name = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;

        let (line_tx, stdout_lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr_text = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let sink = Arc::clone(&stderr_text);
            thread::spawn(move || {
                let mut chunk = [0_u8; 4096];
                while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                    let text = String::from_utf8_lossy(&chunk[..read]);
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_str(&text);
                }
            });
        }

        Ok(Self {
            name,
            child: Some(child),
            stdout_lines,
            stdout_seen: Vec::new(),
            stderr_text,
            status: None,
        })
    }

    /// The child's process id.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the child prints `expected` as a whole stdout line.
    ///
    /// # Errors
    /// Describes what happened instead (timeout, stdout closed, process exited) with the output so
    /// far, ready to be shown as the test's failure message.
    pub fn wait_for_stdout_line(
        &mut self,
        expected: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        self.wait_for_stdout(&format!("`{expected}`"), timeout, |line| line == expected)
            .map(drop)
    }

    /// Waits until the child prints a stdout line starting with `prefix`, and returns the rest of
    /// that line, trimmed (`open: https://…` with prefix `open:` gives `https://…`).
    ///
    /// # Errors
    /// As [`Self::wait_for_stdout_line`].
    pub fn wait_for_stdout_value(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let line = self.wait_for_stdout(
            &format!("a line starting with `{prefix}`"),
            timeout,
            |line| line.starts_with(prefix),
        )?;
        Ok(line[prefix.len()..].trim().to_owned())
    }

    /// Waits until the child prints a stdout line containing `needle`, and returns the rest of that
    /// line after it (a log line whose prefix carries a timestamp), trimmed.
    ///
    /// # Errors
    /// As [`Self::wait_for_stdout_line`].
    pub fn wait_for_stdout_after(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let line =
            self.wait_for_stdout(&format!("a line containing `{needle}`"), timeout, |line| {
                line.contains(needle)
            })?;
        let at = line.find(needle).map_or(0, |i| i + needle.len());
        Ok(line[at..].trim().to_owned())
    }

    /// Waits up to `timeout` for the child to exit and close its stdout (a command that runs to
    /// completion); returns its exit status and everything it printed on stdout, lines already
    /// waited for included.
    ///
    /// # Errors
    /// The child still ran, or kept its stdout open, at the deadline; the message carries its
    /// output so far.
    pub fn wait_for_output(&mut self, timeout: Duration) -> Result<(ExitStatus, String), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left.min(POLL_INTERVAL)) {
                Ok(line) => self.stdout_seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(self.describe(&format!("still running after {timeout:?}")));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.wait_for_exit(left) {
            Some(status) => Ok((status, self.stdout_seen.join("\n"))),
            None => Err(self.describe(&format!(
                "closed its stdout but did not exit within {timeout:?}"
            ))),
        }
    }

    /// Waits until a stdout line satisfies `matches` (described as `what` in failures); returns it.
    fn wait_for_stdout(
        &mut self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left.min(POLL_INTERVAL)) {
                Ok(line) => {
                    let found = matches(&line);
                    self.stdout_seen.push(line.clone());
                    if found {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; give it a moment to be reaped.
                    let status = self.wait_for_exit(Duration::from_secs(2));
                    return Err(self.describe(&format!(
                        "stdout closed before {what} was printed (exit status: {status:?})"
                    )));
                }
                Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(
                        self.describe(&format!("{what} was not printed within {timeout:?}"))
                    );
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether the child is still running (not exited, not yet reaped).
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    /// Waits up to `timeout` for the child to exit; returns its status, or `None` if still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Asks the child to stop with SIGTERM (as a session manager would), waits up to `timeout`,
    /// then kills it with SIGKILL. Returns the status it ended with.
    ///
    /// # Errors
    /// Returns an error if the child could not be signalled or reaped.
    pub fn terminate(&mut self, timeout: Duration) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.poll_exit() {
            return Ok(status);
        }
        if let Some(pid) = self.id() {
            // `kill` keeps this crate free of unsafe code; a failure only means SIGKILL comes sooner.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(status) = self.wait_for_exit(timeout) {
            return Ok(status);
        }
        self.kill()
    }

    /// Kills the child with SIGKILL and reaps it.
    ///
    /// # Errors
    /// Returns an error if the child could not be killed or reaped.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let Some(child) = self.child.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the process was never started",
            ));
        };
        child.kill()?;
        let status = child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// A failure message: `what` went wrong, then the child's stdout and stderr so far.
    pub fn describe(&mut self, what: &str) -> String {
        while let Ok(line) = self.stdout_lines.try_recv() {
            self.stdout_seen.push(line);
        }
        format!(
            "{}: {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.stdout_seen.join("\n"),
            self.stderr()
        )
    }

    /// Reaps the child if it has exited, remembering its status.
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                }
            }
        }
        self.status
    }
}

impl Drop for SpawnedProcess {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            let _ = self.kill();
        }
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `timeout`.
/// Returns the last `Some` value, or `None` if the time ran out.
pub fn wait_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Pids of the processes `keep` accepts, from the numeric entries of `/proc` (empty without it).
pub fn pids_where(mut keep: impl FnMut(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| keep(pid))
        .collect()
}

/// Whether [`isolate_user_dirs`] also gives the process a runtime folder of its own.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeDir {
    /// `XDG_RUNTIME_DIR` under the fresh home too (the tray app: its own control socket and lock).
    Isolated,
    /// The session's `XDG_RUNTIME_DIR` is kept (the window process, driven through WebDriver).
    Shared,
}

/// Points HOME and the XDG base directories of `command` at fresh `0700` folders under `home`, so
/// the process (GTK, WebKit, appindicator's icon files) never reads or writes the real user's files.
///
/// # Errors
/// A folder that cannot be created.
#[cfg(unix)]
pub fn isolate_user_dirs(
    command: &mut Command,
    home: &std::path::Path,
    runtime: RuntimeDir,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    command.env("HOME", home);
    let mut dirs = vec![
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ];
    if runtime == RuntimeDir::Isolated {
        dirs.push(("XDG_RUNTIME_DIR", "runtime"));
    }
    for (variable, dir) in dirs {
        let path = home.join(dir);
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        command.env(variable, path);
    }
    Ok(())
}
