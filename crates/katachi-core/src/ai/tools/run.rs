//! `run_command`: `POST /run` in process, its NDJSON output streamed to the progress sender as it
//! comes, and kept for the model with its head and tail only.

use std::collections::VecDeque;

use axum::body::Body;
use axum::http::Method;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::http::timeout;
use super::specs::RunCommandArgs;
use super::{ApprovalPreview, ToolBox, ToolProgress, ToolResult};

/// Longest NDJSON line accepted from the run (an output chunk, base64-encoded at worst).
const MAX_LINE_BYTES: usize = 4 << 20;

/// Largest answer of `GET /run/commands`.
const MAX_LIST_BYTES: usize = 1 << 20;

/// Most arguments a call may pass (the API's own limit is higher).
const MAX_ARGS: usize = 256;

/// The command line of a run, checked: the command is on the workspace's allowlist (a command that
/// is not is answered at once, nothing asked, nothing run).
pub(super) async fn preview_run(
    tb: &ToolBox,
    a: RunCommandArgs,
) -> Result<ApprovalPreview, ToolResult> {
    let (command, args, cwd) = checked(a)?;
    let list = tb
        .fetch_json(
            Method::GET,
            &tb.uri("/run/commands", &[]),
            None,
            MAX_LIST_BYTES,
        )
        .await?;
    let allowed: Vec<&str> = list["commands"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    if !allowed.contains(&command.as_str()) {
        return Err(ToolResult::error(
            "tool.command_not_allowed",
            format!(
                "`{command}` is not on this workspace's allowlist, so nothing was run; the allowed commands are: {}. Only the user can allow another one, with `katachi sandbox policy` on the agent's machine",
                allowed.join(", ")
            ),
        ));
    }
    Ok(ApprovalPreview::Command { command, args, cwd })
}

/// Checks the arguments the API would refuse anyway, so an invalid call is never shown.
fn checked(a: RunCommandArgs) -> Result<(String, Vec<String>, String), ToolResult> {
    let args = a.args.unwrap_or_default();
    let cwd = a.cwd.unwrap_or_default();
    let bad = |m: &str| ToolResult::error("tool.invalid_arguments", m);
    if a.command.trim().is_empty() {
        return Err(bad("`command` is empty; name an allowlisted command"));
    }
    if a.command.contains(['/', '\\', ' ']) {
        return Err(bad(
            "`command` is a name such as `cargo`, not a path or a shell line; put arguments in `args`",
        ));
    }
    if args.len() > MAX_ARGS {
        return Err(bad("too many arguments"));
    }
    if std::iter::once(&a.command)
        .chain(&args)
        .chain(std::iter::once(&cwd))
        .any(|s| s.contains('\0'))
    {
        return Err(bad("an argument contains a NUL byte"));
    }
    Ok((a.command, args, cwd))
}

/// Runs the command and answers with its exit, denial and output (cut to head + tail).
pub(super) async fn run_command(
    tb: &ToolBox,
    a: RunCommandArgs,
    mut progress: Option<mpsc::Sender<ToolProgress>>,
) -> Result<ToolResult, ToolResult> {
    let timeout_secs = a.timeout_secs;
    let (command, args, cwd) = checked(a)?;
    let body = json!({"command": command, "args": args, "cwd": cwd, "timeout_secs": timeout_secs});
    let response = tb
        .send(
            Method::POST,
            &tb.uri("/run", &[]),
            Some("application/json"),
            Body::from(body.to_string()),
        )
        .await?;
    if !response.status().is_success() {
        return Err(tb.error_of(response).await);
    }
    let keep = tb.options.run_output_head_tail_bytes;
    let mut stdout = Capture::new(keep);
    let mut stderr = Capture::new(keep);
    let mut body = response.into_body();
    let deadline = tokio::time::Instant::now() + tb.options.run_timeout;
    let mut pending: Vec<u8> = Vec::new();
    let mut last: Option<Value> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            // dropping the body cancels the run: the sandbox kills its process tree
            Err(_) => {
                let mut r = timeout(tb.options.run_timeout);
                r.content["stdout"] = json!(stdout.text());
                r.content["stderr"] = json!(stderr.text());
                return Err(r);
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(ToolResult::error(
                    "tool.failed",
                    "the run's output stream broke",
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if event.get("exit").is_some() {
                last = Some(event);
                continue;
            }
            let Some(bytes) = output_bytes(&event) else {
                continue;
            };
            let stream = event["stream"].as_str().unwrap_or("stdout").to_owned();
            if stream == "stderr" {
                stderr.push(&bytes);
            } else {
                stdout.push(&bytes);
            }
            if let Some(tx) = &progress {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if tx
                    .send(ToolProgress::Output { stream, text })
                    .await
                    .is_err()
                {
                    progress = None;
                }
            }
        }
        if pending.len() > MAX_LINE_BYTES {
            return Err(ToolResult::error(
                "tool.failed",
                "the run sent a line longer than the tool accepts",
            ));
        }
    }
    let Some(last) = last else {
        return Err(ToolResult::error(
            "tool.failed",
            "the run ended without its final status line",
        ));
    };
    let denied = last["denied"].clone();
    let content = json!({
        "exit": last["exit"],
        "denied": denied,
        "duration_ms": last["duration_ms"],
        "output_bytes": last["output_bytes"],
        "stdout": stdout.text(),
        "stderr": stderr.text(),
    });
    Ok(ToolResult {
        content,
        is_error: !denied.is_null(),
    })
}

/// The bytes of an output event (`data`, base64-decoded when `encoding` says so).
fn output_bytes(event: &Value) -> Option<Vec<u8>> {
    let data = event["data"].as_str()?;
    if event["encoding"].as_str() == Some("base64") {
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    } else {
        Some(data.as_bytes().to_vec())
    }
}

/// One stream's output as the model gets it: the first `keep` bytes and the last `keep` bytes.
#[derive(Debug)]
pub(super) struct Capture {
    /// Bytes kept from each end.
    keep: usize,
    /// The first bytes.
    head: Vec<u8>,
    /// The latest bytes after `head`.
    tail: VecDeque<u8>,
    /// Bytes dropped between the two.
    cut: u64,
}

impl Capture {
    pub(super) fn new(keep: usize) -> Self {
        Self {
            keep,
            head: Vec::new(),
            tail: VecDeque::new(),
            cut: 0,
        }
    }

    pub(super) fn push(&mut self, mut bytes: &[u8]) {
        let room = self.keep.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        bytes = rest;
        self.tail.extend(bytes);
        if self.tail.len() > self.keep {
            let drop = self.tail.len() - self.keep;
            self.tail.drain(..drop);
            self.cut += drop as u64;
        }
    }

    pub(super) fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.cut > 0 {
            text.push_str(&format!("\n[… {} bytes cut …]\n", self.cut));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_keeps_the_head_and_the_tail_and_counts_the_cut() {
        let mut c = Capture::new(4);
        c.push(b"abc");
        c.push(b"defghij");
        c.push(b"klm");
        assert_eq!(c.text(), "abcd\n[… 5 bytes cut …]\njklm");
        let mut small = Capture::new(4);
        small.push(b"abcdef");
        assert_eq!(small.text(), "abcdef", "nothing cut below twice the budget");
    }
}
