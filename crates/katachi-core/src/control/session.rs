//! One accepted, admitted connection: read request lines, carry them out, answer.
//!
//! Transport-independent (Unix socket, named pipe): the listener has already checked who the peer
//! is. Every wait is bounded: reading a request ([`IDLE_TIMEOUT`]), carrying it out
//! ([`REQUEST_TIMEOUT`]) and writing a line ([`WRITE_TIMEOUT`]); a stuck client only ever holds
//! its own connection slot, and only for that long.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::time::timeout;

use super::lock::FrontEnd;
use super::protocol::{codes, Failure, Reply, Request, RequestLine, StatusReport, MAX_LINE};
use crate::agent::{Agent, CommandError, SignInRequest};
use crate::agent_home::AgentHome;
use crate::relay_link::https::RelayUrl;
use crate::store::Actor;
use crate::workspace_admin::{self, AdminError};

/// How long a connection may sit without sending a request.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing one line may take.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause a client may ask for (30 days): longer would overflow the agent's clock.
const MAX_PAUSE_SECS: u64 = 30 * 24 * 3600;

/// What every connection shares.
pub(crate) struct Shared {
    /// The running agent.
    pub(crate) agent: Agent,
    /// Its home, for workspace changes.
    pub(crate) home: Arc<AgentHome>,
    /// This process.
    pub(crate) pid: u32,
    /// When the server started (unix seconds).
    pub(crate) started_at: i64,
    /// Which front end runs the agent, from its lock.
    pub(crate) by: Option<FrontEnd>,
}

impl Shared {
    fn report(&self) -> StatusReport {
        StatusReport {
            status: self.agent.status().borrow().clone(),
            session: self.agent.session_status().borrow().clone(),
            pid: self.pid,
            started_at: self.started_at,
            by: self.by,
        }
    }
}

/// A line could not be read.
enum LineError {
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The connection failed.
    Io,
}

/// Reads one line into `buf` (newline dropped); `Ok(false)` at the end of the stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, LineError> {
    buf.clear();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
    let n = (&mut *reader)
        .take(limit)
        .read_until(b'\n', buf)
        .await
        .map_err(|_| LineError::Io)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(true);
    }
    if buf.len() >= MAX_LINE {
        return Err(LineError::TooLong);
    }
    // the last line, without a newline before the end of the stream
    Ok(true)
}

/// Writes `value` as one line, within [`WRITE_TIMEOUT`]; `false` when the client is gone.
pub(crate) async fn write_line<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> bool {
    let Ok(mut bytes) = serde_json::to_vec(value) else {
        return false;
    };
    bytes.push(b'\n');
    let write = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    matches!(timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// Sends one error line and closes: for connections that are not served.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, code: &str, message: &str) {
    let _ = write_line(&mut stream, &Reply::Error(Failure::new(code, message))).await;
    let _ = timeout(WRITE_TIMEOUT, stream.shutdown()).await;
}

/// Serves requests on `stream` until the client closes, idles, or starts a watch that ends.
pub(crate) async fn serve<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        match timeout(IDLE_TIMEOUT, read_line(&mut reader, &mut line)).await {
            Ok(Ok(true)) => {}
            // idle too long, closed, or failed: nothing more to answer
            Err(_) | Ok(Ok(false)) | Ok(Err(LineError::Io)) => return,
            Ok(Err(LineError::TooLong)) => {
                let failure = Failure::new(
                    codes::LINE_TOO_LONG,
                    format!("a request line is at most {MAX_LINE} bytes"),
                );
                let _ = write_line(&mut write, &Reply::Error(failure)).await;
                return;
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: RequestLine = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure::new(codes::BAD_REQUEST, format!("not a request: {e}"));
                if !write_line(&mut write, &Reply::Error(failure)).await {
                    return;
                }
                continue;
            }
        };
        if request.request == Request::Watch {
            watch(&mut reader, &mut write, &shared).await;
            return;
        }
        let name = request.request.name();
        let reply = match timeout(REQUEST_TIMEOUT, handle(request, &shared)).await {
            Ok(reply) => reply,
            Err(_) => Reply::Error(Failure::new(
                codes::TIMEOUT,
                format!("{name} took longer than {} s", REQUEST_TIMEOUT.as_secs()),
            )),
        };
        if !write_line(&mut write, &reply).await {
            return;
        }
    }
}

/// Streams status lines until the client closes (or the agent's status channel ends).
async fn watch<R, W>(reader: &mut R, writer: &mut W, shared: &Shared)
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut status = shared.agent.status();
    let mut session = shared.agent.session_status();
    status.mark_unchanged();
    session.mark_unchanged();
    if !write_line(writer, &Reply::Ok(json(&shared.report()))).await {
        return;
    }
    let mut sink = [0u8; 512];
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    // the agent's task ended: its last status was sent
                    return;
                }
            }
            changed = session.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // anything from the client (or its end) closes the watch
            _ = reader.read(&mut sink) => return,
        }
        if !write_line(writer, &Reply::Ok(json(&shared.report()))).await {
            return;
        }
    }
}

/// Carries out one request (not `watch`).
async fn handle(line: RequestLine, shared: &Shared) -> Reply {
    // the audit log records which of the user's front ends asked
    let actor = match line.by {
        FrontEnd::Cli => Actor::Cli,
        FrontEnd::App => Actor::Tray,
    };
    let agent = &shared.agent;
    match line.request {
        Request::Status | Request::Watch => Reply::Ok(json(&shared.report())),
        Request::WorkspaceAdd { path } => {
            if !path.is_absolute() {
                return relative(&path);
            }
            admin(shared, move |home| {
                workspace_admin::add_workspace(home, actor, &path)
            })
            .await
        }
        Request::WorkspaceRemove { path } => {
            if !path.is_absolute() {
                return relative(&path);
            }
            admin(shared, move |home| {
                workspace_admin::remove_workspace(home, actor, &path)
            })
            .await
        }
        Request::WorkspaceList => admin(shared, workspace_admin::list_workspaces).await,
        Request::PolicySet(change) => {
            if !change.workspace.is_absolute() {
                return relative(&change.workspace);
            }
            admin(shared, move |home| {
                workspace_admin::set_policy(home, actor, &change)
            })
            .await
        }
        Request::PolicyReset { workspace } => {
            if !workspace.is_absolute() {
                return relative(&workspace);
            }
            admin(shared, move |home| {
                workspace_admin::reset_policy(home, actor, &workspace)
            })
            .await
        }
        Request::Pause { secs } => {
            if secs == 0 || secs > MAX_PAUSE_SECS {
                return Reply::Error(Failure::new(
                    codes::BAD_REQUEST,
                    format!("a pause lasts 1 to {MAX_PAUSE_SECS} seconds, not {secs}"),
                ));
            }
            command(agent.pause(Duration::from_secs(secs)).await)
        }
        Request::Resume => command(agent.resume().await),
        Request::ReconnectNow => command(agent.reconnect_now().await),
        Request::SignIn {
            relay,
            ca_pem,
            device_name,
        } => {
            let relay = match RelayUrl::parse(&relay) {
                Ok(r) => r,
                Err(e) => return Reply::Error(Failure::new("relay.invalid_url", e.to_string())),
            };
            let request = SignInRequest {
                relay,
                ca_pem,
                device_name,
            };
            match agent.sign_in(request).await {
                Ok(started) => Reply::Ok(json(&started)),
                Err(e) => Reply::Error(command_failure(&e)),
            }
        }
        Request::CancelSignIn => command(agent.cancel_sign_in().await),
        Request::SignOut { local_only } => command(agent.sign_out(local_only).await),
        Request::Stop => command(agent.stop().await),
    }
}

/// Runs a blocking workspace change on a blocking thread.
async fn admin<T, F>(shared: &Shared, change: F) -> Reply
where
    T: Serialize + Send + 'static,
    F: FnOnce(&AgentHome) -> Result<T, AdminError> + Send + 'static,
{
    let home = Arc::clone(&shared.home);
    match tokio::task::spawn_blocking(move || change(&home)).await {
        Ok(Ok(value)) => Reply::Ok(json(&value)),
        Ok(Err(e)) => Reply::Error(Failure::new(e.code(), e.to_string())),
        Err(_) => Reply::Error(Failure::new(
            codes::INTERNAL,
            "the workspace change failed inside the agent; see its log",
        )),
    }
}

/// The answer to an agent command.
fn command(result: Result<(), CommandError>) -> Reply {
    match result {
        Ok(()) => Reply::Ok(serde_json::Value::Null),
        Err(e) => Reply::Error(command_failure(&e)),
    }
}

/// The stable code of a refused agent command.
pub(crate) fn command_failure(e: &CommandError) -> Failure {
    Failure::new(e.code(), e.to_string())
}

fn relative(path: &std::path::Path) -> Reply {
    Reply::Error(Failure::new(
        "workspace.relative",
        format!(
            "{} is relative; the agent needs an absolute path",
            path.display()
        ),
    ))
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
