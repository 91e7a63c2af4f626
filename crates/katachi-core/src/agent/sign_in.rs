//! Signing in from the agent's task: the device flow (RFC 8628) driven as a state of the agent,
//! so every front end shows the same code and sees the same outcome.
//!
//! # Contract
//! - [`super::Agent::sign_in`] answers once the relay gave a code ([`SignInStarted`]); the code
//!   is published as [`Status::WaitingForApproval`]. A failure to start (relay unreachable, CA
//!   refused, relay refused) is the command's error and the agent stays signed out.
//! - While waiting, the task still takes commands: cancel (back to signed out), a new sign-in
//!   (the old code is abandoned), stop. Others are refused as "not now".
//! - An expired code is replaced by a fresh one by itself, and published.
//! - Approved: the credentials are sealed on disk (kept in memory when the disk refuses; the
//!   session retries) and the agent goes online. Denied, or any other failure: signed out with
//!   the reason ([`super::WhenSignedOut::End`]: the task ends with [`AgentEnd::SignInFailed`]).

use serde::Serialize;

use super::command::{Command, CommandError, Reply};
use super::lifecycle::{Lifecycle, Next, Registration};
use super::status::Status;
use super::AgentEnd;
use crate::auth::{this_device, AuthError, DeviceFlow, PendingSignIn};
use crate::relay_link::https::RelayUrl;

/// Where and how to sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRequest {
    /// The relay.
    pub relay: RelayUrl,
    /// The only CA to trust for it (PEM), for self-hosted relays; `None`: the system's roots.
    pub ca_pem: Option<String>,
    /// The name the relay shows for this machine (default: the host name).
    pub device_name: Option<String>,
}

/// The code a started sign-in waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInStarted {
    /// The code the user confirms (XXXX-XXXX).
    pub user_code: String,
    /// The page where they approve it.
    pub verification_uri: String,
    /// The same page with the code filled in, when the relay gave one.
    pub verification_uri_complete: Option<String>,
    /// The page to show and open: the complete one when given, else the plain one.
    pub url_to_open: String,
    /// Whether [`Self::url_to_open`] is on the relay's own origin: only then may a front end open
    /// it in a browser or show it as a QR code (a relay cannot make the agent open arbitrary
    /// URLs or `file:` paths).
    pub safe_to_open: bool,
    /// When the code expires (unix seconds).
    pub expires_at: i64,
}

impl SignInStarted {
    /// What `pending` asks the user to do.
    fn of(pending: &PendingSignIn) -> Self {
        Self {
            user_code: pending.user_code().to_owned(),
            verification_uri: pending.verification_uri().to_owned(),
            verification_uri_complete: pending.verification_uri_complete().map(str::to_owned),
            url_to_open: pending.url_to_open().to_owned(),
            safe_to_open: pending.is_safe_to_open(),
            expires_at: super::unix_now()
                .saturating_add(i64::try_from(pending.expires_in().as_secs()).unwrap_or(i64::MAX)),
        }
    }

    /// The status published while it waits.
    fn status(&self) -> Status {
        Status::WaitingForApproval {
            user_code: self.user_code.clone(),
            verification_uri: self.url_to_open.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// What happened while waiting for approval.
enum Waited {
    /// The relay answered the poll.
    Answer(Result<crate::AgentCredentials, AuthError>),
    /// A command came.
    Command(Option<Command>),
}

impl Lifecycle {
    /// Runs a sign-in from `request`; `reply` gets the code (or why none). `Some` when the
    /// agent leaves the signed-out state (registered, or the task ends).
    pub(super) async fn sign_in(
        &mut self,
        mut request: SignInRequest,
        reply: Reply<SignInStarted>,
    ) -> Option<Next> {
        let mut reply = Some(reply);
        'flow: loop {
            let device = this_device(request.device_name.as_deref());
            let started = match DeviceFlow::new(request.relay.clone(), request.ca_pem.clone()) {
                Ok(flow) => flow.start(&device).await.map(|pending| (flow, pending)),
                Err(e) => Err(e),
            };
            let (flow, mut pending) = match started {
                Ok(started) => started,
                Err(e) => {
                    let failure = start_failure(&request.relay, &e);
                    // Published before the answer: "signed out" is true once it is answered.
                    let next = self.signed_out_after_failure(failure.clone());
                    if let Some(reply) = reply.take() {
                        let _ = reply.send(Err(failure));
                    }
                    return next;
                }
            };
            let mut started = SignInStarted::of(&pending);
            self.ch.status.send_replace(started.status());
            if let Some(reply) = reply.take() {
                let _ = reply.send(Ok(started.clone()));
            }
            tracing::info!(relay = %request.relay, "sign-in started; waiting for approval");
            loop {
                let waited = tokio::select! {
                    answer = flow.wait(&pending) => Waited::Answer(answer),
                    command = self.ch.commands.recv() => Waited::Command(command),
                };
                match waited {
                    Waited::Answer(Ok(credentials)) => {
                        let saved = match credentials.save(&self.home) {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "registered, but the credentials could not be saved yet; the agent keeps them in memory and retries");
                                false
                            }
                        };
                        tracing::info!(agent_id = credentials.agent_id(), relay = %request.relay, "registered");
                        return Some(Next::Registered(Registration { credentials, saved }));
                    }
                    Waited::Answer(Err(AuthError::Expired)) => {
                        // A fresh code, shown at once: the user need not start again.
                        match flow.start(&device).await {
                            Ok(fresh) => {
                                pending = fresh;
                                started = SignInStarted::of(&pending);
                                self.ch.status.send_replace(started.status());
                                tracing::info!("the sign-in code expired; showing a fresh one");
                            }
                            Err(e) => {
                                return self
                                    .signed_out_after_failure(start_failure(&request.relay, &e))
                            }
                        }
                    }
                    Waited::Answer(Err(e)) => {
                        return self.signed_out_after_failure(CommandError::SignIn {
                            code: e.code(),
                            reason: e.to_string(),
                        });
                    }
                    Waited::Command(None) => return Some(Next::End(AgentEnd::Stopped)),
                    Waited::Command(Some(command)) => match command {
                        Command::Stop { reply } => {
                            let _ = reply.send(Ok(()));
                            return Some(Next::End(AgentEnd::Stopped));
                        }
                        Command::CancelSignIn { reply } => {
                            self.ch
                                .status
                                .send_replace(Status::SignedOut { reason: None });
                            let _ = reply.send(Ok(()));
                            return None;
                        }
                        Command::SignIn {
                            request: again,
                            reply: answer,
                        } => {
                            // The old code is abandoned: its poll future is dropped here.
                            request = again;
                            reply = Some(answer);
                            continue 'flow;
                        }
                        other => {
                            let err = self.ch.not_now(other.name());
                            other.refuse(err);
                        }
                    },
                }
            }
        }
    }

    /// Publishes "signed out" with the failure's reason; the task ends when nobody can sign in.
    fn signed_out_after_failure(&mut self, failure: CommandError) -> Option<Next> {
        let reason = match &failure {
            CommandError::SignIn { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        tracing::warn!(%reason, "sign-in failed");
        self.ch.status.send_replace(Status::SignedOut {
            reason: Some(reason),
        });
        self.ends_when_signed_out()
            .then(|| Next::End(AgentEnd::SignInFailed(failure)))
    }
}

/// Why a sign-in could not start, with what to check.
fn start_failure(relay: &RelayUrl, err: &AuthError) -> CommandError {
    let reason = match err {
        AuthError::Unreachable { .. } => format!(
            "{err}; check that the relay at {relay} runs and that its address (and CA, for a self-hosted relay) is right"
        ),
        other => other.to_string(),
    };
    CommandError::SignIn {
        code: err.code(),
        reason,
    }
}
