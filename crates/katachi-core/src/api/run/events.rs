//! The streamed answer of a run: newline-delimited JSON, written as the command produces output.
//!
//! ```text
//! {"stream":"stdout","data":"src\nCargo.toml\n"}
//! {"stream":"stderr","data":"/w+AA==","encoding":"base64"}
//! {"exit":{"code":0},"denied":null,"duration_ms":12,"output_bytes":20,"layers":["seccomp",…]}
//! ```
//!
//! Output is UTF-8 text when it is; a chunk that is not (binary output) is sent as base64, and a
//! character cut between two chunks is carried to the next one rather than mangled. The final line
//! always comes last, once the process tree is gone.
//!
//! A task owns the running command and feeds the body through a bounded channel, so a slow reader
//! slows the command down (back-pressure) instead of filling memory. When the body is dropped (the
//! client went away) the task cancels the run, which kills the whole tree; the run's slot is
//! released only after that.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use base64::Engine as _;
use hyper::body::Frame;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use utoipa::ToSchema;

use crate::api::DenialFeed;
use crate::sandbox::{ExitKind, OutputStream, RunOutcome, SandboxChild, SandboxDenied};

/// Lines buffered between the run and the connection.
const LINES_IN_FLIGHT: usize = 16;

/// One chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RunOutputEvent {
    /// `stdout` or `stderr`.
    #[schema(value_type = String)]
    pub stream: OutputStream,
    /// The bytes: UTF-8 text, or base64 when `encoding` is `base64`.
    pub data: String,
    /// `base64` for output that is not UTF-8; absent for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunExit {
    /// It exited with this code (`128 + N` when signal `N` ended it inside the PID namespace).
    Code(i32),
    /// Signal `N` ended it.
    Signal(i32),
}

/// The last line of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunFinalEvent {
    /// `{"code": N}` or `{"signal": N}`.
    pub exit: RunExit,
    /// What ended the run early: a limit (`wall time`, `output`, `cpu time`) or `cancelled`.
    #[schema(value_type = Option<Object>)]
    pub denied: Option<SandboxDenied>,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    /// Bytes of output produced (both streams, capped by the output limit).
    pub output_bytes: u64,
    /// The sandbox layers that were active.
    pub layers: Vec<String>,
}

impl RunFinalEvent {
    fn of(outcome: RunOutcome, layers: Vec<String>) -> Self {
        Self {
            exit: match outcome.exit {
                ExitKind::Code(c) => RunExit::Code(c),
                ExitKind::Signal(s) => RunExit::Signal(s),
            },
            denied: outcome.denied,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            output_bytes: outcome.output_bytes,
            layers,
        }
    }
}

/// Where a run's denials go once it has ended, and what to say about the run.
pub(super) struct DenialReport {
    /// The API's feed.
    pub(super) feed: DenialFeed,
    /// The workspace's root.
    pub(super) workspace: PathBuf,
    /// The command asked for.
    pub(super) command: String,
    /// Its arguments.
    pub(super) args: Vec<String>,
}

impl DenialReport {
    /// Publishes what ended the run (not a cancellation) and each host the proxy refused it
    /// (once per host).
    fn publish(&self, outcome: &RunOutcome) {
        let refused_hosts = outcome.egress.iter().filter_map(|a| a.denied.as_ref());
        let mut seen: Vec<&SandboxDenied> = Vec::new();
        for denied in outcome.denied.iter().chain(refused_hosts) {
            if seen.contains(&denied) {
                continue;
            }
            seen.push(denied);
            self.feed
                .publish(&self.workspace, &self.command, &self.args, denied);
        }
    }
}

/// Starts the task that runs `child` to its end and returns the body it writes into; at the end
/// the run's denials go to `denials`.
pub(super) fn stream_run(
    child: SandboxChild,
    permit: OwnedSemaphorePermit,
    layers: Vec<String>,
    denials: DenialReport,
) -> Body {
    let (tx, rx) = mpsc::channel(LINES_IN_FLIGHT);
    tokio::spawn(async move {
        let outcome = forward_output(child, &tx).await;
        denials.publish(&outcome);
        // nobody may be listening any more; the run is over either way
        let _ = tx.send(line(&RunFinalEvent::of(outcome, layers))).await;
        drop(permit);
    });
    Body::new(LineBody { rx })
}

/// Forwards output until the command ends or the client goes; then waits for the tree's end.
async fn forward_output(mut child: SandboxChild, tx: &mpsc::Sender<Bytes>) -> RunOutcome {
    let cancel = child.cancel_handle();
    let mut text = [TextCarry::default(), TextCarry::default()];
    let mut gone = false;
    while !gone {
        tokio::select! {
            event = child.next_output() => {
                let Some(event) = event else { break };
                let carry = &mut text[stream_index(event.stream)];
                if let Some(out) = carry.push(event.stream, &event.data) {
                    gone = tx.send(line(&out)).await.is_err();
                }
            }
            // the body was dropped: the client closed the connection or reset the stream
            () = tx.closed() => gone = true,
        }
    }
    if gone {
        tracing::debug!("api: run cancelled, its client went away");
        cancel.cancel();
    } else {
        for (carry, stream) in text
            .iter_mut()
            .zip([OutputStream::Stdout, OutputStream::Stderr])
        {
            if let Some(out) = carry.finish(stream) {
                let _ = tx.send(line(&out)).await;
            }
        }
    }
    child.wait().await
}

fn stream_index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

/// One NDJSON line.
fn line<T: Serialize>(event: &T) -> Bytes {
    // plain data: serialising cannot fail; an empty object keeps the stream well-formed if it did
    let mut bytes = serde_json::to_vec(event).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Turns output chunks into text events, carrying a UTF-8 character cut at a chunk's end.
#[derive(Debug, Default)]
pub(super) struct TextCarry {
    /// The start of a character whose remaining bytes are in the next chunk (at most 3 bytes).
    pending: Vec<u8>,
}

impl TextCarry {
    /// The event for `data` (with what was carried), or `None` when all of it is carried.
    pub(super) fn push(&mut self, stream: OutputStream, data: &[u8]) -> Option<RunOutputEvent> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(data);
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let utf8 = e.utf8_error();
                let mut bytes = e.into_bytes();
                // only a character cut at the very end is carried; anything else is binary
                if utf8.error_len().is_some() {
                    return Some(binary(stream, &bytes));
                }
                self.pending = bytes.split_off(utf8.valid_up_to());
                String::from_utf8(bytes).ok()?
            }
        };
        (!text.is_empty()).then_some(RunOutputEvent {
            stream,
            data: text,
            encoding: None,
        })
    }

    /// What is still carried at the end of the stream (an unfinished character), as base64.
    pub(super) fn finish(&mut self, stream: OutputStream) -> Option<RunOutputEvent> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| binary(stream, &rest))
    }
}

fn binary(stream: OutputStream, bytes: &[u8]) -> RunOutputEvent {
    RunOutputEvent {
        stream,
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
        encoding: Some("base64".to_owned()),
    }
}

/// A response body fed line by line by the run's task; dropping it tells the task to cancel.
struct LineBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for LineBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}
