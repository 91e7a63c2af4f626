//! [`Client`]: the `katachi` CLI's and the app window's side of the control socket, one typed
//! method per request.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, ReadHalf, WriteHalf};

use super::error::ControlError;
use super::lock::FrontEnd;
use super::protocol::{Reply, Request, RequestLine, StatusReport, MAX_LINE};
use super::session::write_line;
use crate::agent::SignInStarted;
use crate::dirs::KatachiDirs;
use crate::store::{AddOutcome, Workspace};
use crate::workspace_admin::{ListedWorkspace, PolicyChange, PolicyReset, PolicySet};

#[cfg(unix)]
use super::unix as platform;
#[cfg(windows)]
use super::windows as platform;

#[cfg(unix)]
type Stream = tokio::net::UnixStream;
#[cfg(windows)]
type Stream = tokio::net::windows::named_pipe::NamedPipeClient;

/// How long the client waits for an answer (the agent bounds each request at 60 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(75);

/// A connection to the running agent.
pub struct Client {
    /// Answers.
    reader: BufReader<ReadHalf<Stream>>,
    /// Requests.
    writer: WriteHalf<Stream>,
    /// Who asks (recorded in the agent's audit log).
    by: FrontEnd,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("by", &self.by)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the agent running for `dirs`, as the CLI; `None` when no agent runs.
    ///
    /// # Errors
    /// [`ControlError::Connect`] when a socket is there but cannot be reached (permissions).
    pub async fn connect(dirs: &KatachiDirs) -> Result<Option<Self>, ControlError> {
        let Some(stream) = platform::connect(dirs).await? else {
            return Ok(None);
        };
        let (read, writer) = tokio::io::split(stream);
        Ok(Some(Self {
            reader: BufReader::new(read),
            writer,
            by: FrontEnd::Cli,
        }))
    }

    /// Says which front end asks (the app's window says [`FrontEnd::App`]).
    #[must_use]
    pub fn as_front_end(mut self, by: FrontEnd) -> Self {
        self.by = by;
        self
    }

    /// The agent's status now.
    ///
    /// # Errors
    /// [`ControlError`]; a refusal is [`ControlError::Refused`] with its code.
    pub async fn status(&mut self) -> Result<StatusReport, ControlError> {
        self.call(Request::Status).await
    }

    /// The status now, then every change, until the returned stream is dropped.
    ///
    /// # Errors
    /// As [`Self::status`].
    pub async fn watch(mut self) -> Result<StatusStream, ControlError> {
        self.send(Request::Watch).await?;
        Ok(StatusStream { client: self })
    }

    /// Allows the folder `path` (made absolute against this process's working folder).
    ///
    /// # Errors
    /// As [`Self::status`]; `workspace.not_found`, `workspace.protected`… as refusals.
    pub async fn workspace_add(&mut self, path: &Path) -> Result<AddOutcome, ControlError> {
        let path = absolute(path)?;
        self.call(Request::WorkspaceAdd { path }).await
    }

    /// Stops allowing the workspace at `path`.
    ///
    /// # Errors
    /// As [`Self::status`]; `workspace.not_allowed` as a refusal.
    pub async fn workspace_remove(&mut self, path: &Path) -> Result<Workspace, ControlError> {
        let path = absolute(path)?;
        self.call(Request::WorkspaceRemove { path }).await
    }

    /// The allowed workspaces, each with whether its folder still exists.
    ///
    /// # Errors
    /// As [`Self::status`].
    pub async fn workspace_list(&mut self) -> Result<Vec<ListedWorkspace>, ControlError> {
        self.call(Request::WorkspaceList).await
    }

    /// Adds `change` to a workspace's sandbox overrides.
    ///
    /// # Errors
    /// As [`Self::status`]; `workspace.not_allowed`, `sandbox.policy_invalid` as refusals.
    pub async fn policy_set(
        &mut self,
        mut change: PolicyChange,
    ) -> Result<PolicySet, ControlError> {
        change.workspace = absolute(&change.workspace)?;
        self.call(Request::PolicySet(change)).await
    }

    /// Removes the sandbox overrides of the workspace at `workspace` (made absolute against this
    /// process's working folder): the running agent applies the default policy from the next run.
    ///
    /// # Errors
    /// As [`Self::status`]; `workspace.not_allowed` as a refusal.
    pub async fn policy_reset(&mut self, workspace: &Path) -> Result<PolicyReset, ControlError> {
        let workspace = absolute(workspace)?;
        self.call(Request::PolicyReset { workspace }).await
    }

    /// Takes remote access down for `duration` (whole seconds, at least 1).
    ///
    /// # Errors
    /// As [`Self::status`]; `agent.not_now`, `agent.not_running` as refusals.
    pub async fn pause(&mut self, duration: Duration) -> Result<(), ControlError> {
        let secs = duration.as_secs().max(1);
        self.call_unit(Request::Pause { secs }).await
    }

    /// Ends a pause now.
    ///
    /// # Errors
    /// As [`Self::pause`].
    pub async fn resume(&mut self) -> Result<(), ControlError> {
        self.call_unit(Request::Resume).await
    }

    /// Redials the relay now.
    ///
    /// # Errors
    /// As [`Self::pause`].
    pub async fn reconnect_now(&mut self) -> Result<(), ControlError> {
        self.call_unit(Request::ReconnectNow).await
    }

    /// Starts signing in at `relay`; answers once the relay gave the code to approve.
    ///
    /// # Errors
    /// As [`Self::status`]; `relay.invalid_url`, `agent.already_signed_in`… as refusals.
    pub async fn sign_in(
        &mut self,
        relay: &str,
        ca_pem: Option<String>,
        device_name: Option<String>,
    ) -> Result<SignInStarted, ControlError> {
        self.call(Request::SignIn {
            relay: relay.to_owned(),
            ca_pem,
            device_name,
        })
        .await
    }

    /// Abandons a sign-in that waits for approval.
    ///
    /// # Errors
    /// As [`Self::pause`].
    pub async fn cancel_sign_in(&mut self) -> Result<(), ControlError> {
        self.call_unit(Request::CancelSignIn).await
    }

    /// Signs out (the relay forgets this agent unless `local_only`; credentials are wiped).
    ///
    /// # Errors
    /// As [`Self::pause`].
    pub async fn sign_out(&mut self, local_only: bool) -> Result<(), ControlError> {
        self.call_unit(Request::SignOut { local_only }).await
    }

    /// Stops the agent cleanly; returns once its session stopped.
    ///
    /// # Errors
    /// As [`Self::pause`].
    pub async fn stop(&mut self) -> Result<(), ControlError> {
        self.call_unit(Request::Stop).await
    }

    async fn call_unit(&mut self, request: Request) -> Result<(), ControlError> {
        let _: serde_json::Value = self.call(request).await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(&mut self, request: Request) -> Result<T, ControlError> {
        self.send(request).await?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, self.receive())
            .await
            .map_err(|_| ControlError::Timeout(REPLY_TIMEOUT.as_secs()))??;
        let value = reply.ok_or(ControlError::Closed)?;
        serde_json::from_value(value).map_err(|e| ControlError::BadReply(e.to_string()))
    }

    async fn send(&mut self, request: Request) -> Result<(), ControlError> {
        let line = RequestLine {
            by: self.by,
            request,
        };
        if write_line(&mut self.writer, &line).await {
            Ok(())
        } else {
            Err(ControlError::Closed)
        }
    }

    /// The next answer: `Ok(None)` when the agent closed the connection.
    async fn receive(&mut self) -> Result<Option<serde_json::Value>, ControlError> {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await
            .map_err(ControlError::Transport)?;
        if n == 0 {
            return Ok(None);
        }
        match serde_json::from_slice::<Reply>(&line) {
            Ok(Reply::Ok(value)) => Ok(Some(value)),
            Ok(Reply::Error(failure)) => Err(ControlError::Refused(failure)),
            Err(e) => Err(ControlError::BadReply(e.to_string())),
        }
    }
}

/// The live status of [`Client::watch`].
#[derive(Debug)]
pub struct StatusStream {
    /// The connection, now only reading.
    client: Client,
}

impl StatusStream {
    /// The next status: the current one first, then one per change; `None` when the agent
    /// closed the stream (it stopped).
    ///
    /// # Errors
    /// [`ControlError::Transport`], [`ControlError::BadReply`], a refusal.
    pub async fn next(&mut self) -> Result<Option<StatusReport>, ControlError> {
        match self.client.receive().await? {
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| ControlError::BadReply(e.to_string())),
            None => Ok(None),
        }
    }
}

fn absolute(path: &Path) -> Result<std::path::PathBuf, ControlError> {
    std::path::absolute(path).map_err(ControlError::Transport)
}
