//! `katachi start`: the agent without a tray. Runs the core's agent runtime
//! ([`katachi_core::agent::Agent`]: sign-in, heartbeats, activity outbox, the API served over the
//! tunnel) until Ctrl-C or SIGTERM, printing its changes; signs in first when not registered.
//! Every change of the tunnel's status goes into the status file (`katachi status`).

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use katachi_core::agent::{Agent, AgentConfig, AgentEnd, SignInRequest, WhenSignedOut};
use katachi_core::agent_status::{AgentStatus, ConnectionState, StatusFile};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::relay_link::calls::RelayError;
use katachi_core::signing::SystemClock;
use katachi_core::tunnel::{SystemNetworkChanges, TunnelStatus};
use katachi_core::{
    AgentCredentials, AgentHome, KatachiDirs, RelayUrl, SessionEnd, SessionOptions,
};
use tokio::sync::watch;

use katachi_core::control::{AgentLock, ControlServer, FrontEnd, LockError};
use katachi_core::exit_codes;

use crate::cli::StartArgs;
use crate::output::Output;
use crate::sign_in::SignInView;

/// Runs the agent; a failure is printed here and exits with the code a service manager can act
/// on ([`katachi_core::exit_codes`]).
pub(crate) fn run(dirs: &KatachiDirs, args: StartArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match run_agent(dirs, args, out) {
        Ok(code) => Ok(code),
        Err(err) => {
            let _ = out.fail(&err);
            Ok(ExitCode::from(exit_code_of(&err)))
        }
    }
}

/// This agent is not registered and no relay was given to sign in at.
#[derive(Debug, thiserror::Error)]
#[error("this agent is not registered yet; pass the relay to sign in at: katachi start --relay https://HOST:PORT")]
struct NotRegistered;

/// The agent is registered with another relay than the one asked for.
#[derive(Debug, thiserror::Error)]
#[error("this agent is registered with {registered}, not {asked}; run `katachi unregister` first to move it")]
struct RegisteredElsewhere {
    registered: String,
    asked: String,
}

/// The exit code for how `katachi start` failed.
fn exit_code_of(err: &anyhow::Error) -> u8 {
    use katachi_core::agent::CommandError;
    use katachi_core::auth::AuthError;
    use katachi_core::relay_link::https::RelayHttpError;
    use katachi_core::tunnel::TunnelError;
    for cause in err.chain() {
        if cause.is::<NotRegistered>() {
            return exit_codes::NEEDS_SIGN_IN;
        }
        if cause.is::<RegisteredElsewhere>() || cause.is::<RelayHttpError>() {
            return exit_codes::CONFIG_ERROR;
        }
        if let Some(e) = cause.downcast_ref::<CommandError>() {
            return match e.code() {
                "relay.invalid_url" | "relay.invalid_ca" | "relay.tls" => exit_codes::CONFIG_ERROR,
                "relay.unreachable" => exit_codes::FAILED,
                _ => exit_codes::NEEDS_SIGN_IN,
            };
        }
        if let Some(e) = cause.downcast_ref::<AuthError>() {
            return match e {
                AuthError::Http(_) => exit_codes::CONFIG_ERROR,
                AuthError::Unreachable { .. } => exit_codes::FAILED,
                _ => exit_codes::NEEDS_SIGN_IN,
            };
        }
        if let Some(e) = cause.downcast_ref::<RelayError>() {
            if matches!(e, RelayError::Revoked | RelayError::UnknownAgent) {
                return exit_codes::REVOKED;
            }
        }
        if let Some(e) = cause.downcast_ref::<TunnelError>() {
            return if e.needs_sign_in() {
                exit_codes::NEEDS_SIGN_IN
            } else {
                exit_codes::CONFIG_ERROR
            };
        }
        if cause.is::<katachi_core::agent_home::HomeError>()
            || cause.is::<katachi_core::vault::KeystoreError>()
            || cause.is::<katachi_core::store::StoreError>()
            || cause.is::<katachi_core::auth::CredentialsError>()
        {
            return exit_codes::CONFIG_ERROR;
        }
    }
    exit_codes::FAILED
}

fn run_agent(dirs: &KatachiDirs, args: StartArgs, out: &Output) -> anyhow::Result<ExitCode> {
    // one agent per user: a second one says who runs instead of dialling a second tunnel
    let _lock = match AgentLock::acquire(dirs, FrontEnd::Cli) {
        Ok(lock) => lock,
        Err(e @ (LockError::AlreadyRunning { .. } | LockError::HeldByUnknown(_))) => {
            out.fail(&anyhow::Error::new(e));
            return Ok(ExitCode::from(exit_codes::ALREADY_RUNNING));
        }
        Err(e) => return Err(e.into()),
    };
    let home = Arc::new(
        AgentHome::open(dirs.clone(), &SystemFingerprint)
            .context("cannot open the agent's secrets")?,
    );
    let relay = args.relay.as_deref().map(RelayUrl::parse).transpose()?;
    let ca_pem = args
        .ca
        .as_deref()
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))
        })
        .transpose()?;
    let sign_in = match check_registration(&home, relay, ca_pem, out)? {
        Registration::Registered => None,
        Registration::SignInAt(request) => Some(SignInRequest {
            device_name: args.device_name.clone(),
            ..request
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(katachi_core::agent::BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Opened (and migrated) once here, before the session and the API open it concurrently.
        drop(home.store().context("cannot open the agent's store")?);
        let shutdown = shutdown_signal().context("cannot listen for SIGINT/SIGTERM")?;
        // The agent runtime does everything; this command only renders it.
        let (agent, task) = Agent::launch(AgentConfig {
            home: Arc::clone(&home),
            options: SessionOptions {
                heartbeat_every: Duration::from_secs(args.heartbeat_secs),
            },
            clock: Arc::new(SystemClock),
            network: Box::new(SystemNetworkChanges::new()),
            when_signed_out: WhenSignedOut::End,
        });
        // `katachi status|workspace|pause…` drive this agent through its control socket
        let _control = ControlServer::start(dirs, agent.clone(), home.clone())
            .map_err(|e| out.warn(&format!("the control socket is not served: {e}")))
            .ok();
        let status_file = StatusFile::new(dirs.agent_status_path());
        let mut first_code = None;
        if let Some(request) = sign_in {
            let relay = request.relay.clone();
            match agent.sign_in(request).await {
                Ok(started) => {
                    // Written before the code is shown: `katachi status` says "waiting" at once.
                    crate::sign_in::write_waiting_status(&status_file, &relay);
                    SignInView::new(&relay, !args.no_browser).show(&started, out);
                    first_code = Some((relay, started.user_code));
                }
                Err(e) => {
                    let _ = agent.stop().await;
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot start signing in at {relay}")));
                }
            }
        }
        let run = async {
            tokio::pin!(task);
            tokio::select! {
                end = &mut task => end,
                () = shutdown => {
                    // Already ended by itself when this fails: its result says how.
                    let _ = agent.stop().await;
                    task.await
                }
            }
        };
        // The renderers end when the agent's task has ended (its channels close).
        // An idle agent keeps none of its start-up pages resident (katachi_core::memory).
        let (end, (), (), (), ()) = tokio::join!(
            run,
            katachi_core::memory::release_when_settled(agent.status()),
            record_tunnel_status(agent.tunnel_status(), &status_file, out),
            print_status_changes(agent.session_status(), out),
            crate::sign_in::follow(&agent, first_code, &status_file, !args.no_browser, out),
        );
        finish(end.context("the agent's task failed")?)
    })
}

/// What `katachi start` has to do before going online.
enum Registration {
    /// Credentials are saved (and match what was asked).
    Registered,
    /// Not registered: sign in there first.
    SignInAt(SignInRequest),
}

/// Checks the saved credentials against what the command line asks; pins a new CA given for
/// the registered relay.
fn check_registration(
    home: &AgentHome,
    relay: Option<RelayUrl>,
    ca_pem: Option<String>,
    out: &Output,
) -> anyhow::Result<Registration> {
    let Some(mut credentials) = AgentCredentials::load(home)? else {
        let relay = relay.ok_or(NotRegistered)?;
        return Ok(Registration::SignInAt(SignInRequest {
            relay,
            ca_pem,
            device_name: None,
        }));
    };
    if let Some(asked) = &relay {
        if asked != credentials.relay_url() {
            return Err(RegisteredElsewhere {
                registered: credentials.relay_url().to_string(),
                asked: asked.to_string(),
            }
            .into());
        }
    }
    if ca_pem.is_some() && ca_pem.as_deref() != credentials.ca_pem() {
        // The relay's CA changed and the user passed the new one: pin it from now on.
        credentials.set_ca_pem(ca_pem);
        credentials
            .save(home)
            .context("cannot save the new relay CA")?;
        out.event(
            &serde_json::json!({ "event": "ca_pinned", "relay_url": credentials.relay_url().as_str() }),
            || format!("pinned the new CA for {}", credentials.relay_url()),
        );
    }
    Ok(Registration::Registered)
}

/// Writes every tunnel status into the status file and prints each new state once (`tunnel:
/// connected since …`, `tunnel: reconnecting in 1 s: …`); ends when the loop stops.
async fn record_tunnel_status(
    mut updates: watch::Receiver<TunnelStatus>,
    file: &StatusFile,
    out: &Output,
) {
    let mut shown: Option<&'static str> = None;
    loop {
        let status = updates.borrow_and_update().clone();
        if let Err(e) = file.write_tunnel(&status) {
            tracing::warn!(error = %e, "cannot record the tunnel status");
        }
        if shown != Some(status.state_word()) {
            out.event(
                &serde_json::json!({ "event": "tunnel", "tunnel": &status }),
                || format!("tunnel: {}", status.describe(unix_now())),
            );
            shown = Some(status.state_word());
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}

/// Wall-clock unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Prints each change of connection state on its own line (`online`, `reconnecting: …`).
async fn print_status_changes(mut updates: watch::Receiver<AgentStatus>, out: &Output) {
    let mut shown: Option<ConnectionState> = None;
    loop {
        let status = updates.borrow_and_update().clone();
        // Reasons change while reconnecting (each error text); print each new state once.
        if shown != Some(status.state) {
            print_status(&status, out);
            shown = Some(status.state);
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}

fn print_status(status: &AgentStatus, out: &Output) {
    if status.state == ConnectionState::NeedsSignIn {
        return; // said by `finish` with what to do
    }
    out.event(
        &serde_json::json!({ "event": "state", "state": status.state, "reason": status.reason }),
        || match (status.state, &status.reason) {
            (ConnectionState::Connecting, None) => format!(
                "connecting to {}",
                status.relay_url.as_deref().unwrap_or("the relay")
            ),
            (state, Some(reason)) => format!("{}: {reason}", state.label()),
            (state, None) => state.label().to_owned(),
        },
    );
}

/// The exit code and last words for how the agent ended.
fn finish(end: AgentEnd) -> anyhow::Result<ExitCode> {
    let (cause, wiped) = match end {
        AgentEnd::Stopped => return Ok(ExitCode::SUCCESS),
        AgentEnd::Session(SessionEnd::Stopped) => return Ok(ExitCode::SUCCESS),
        AgentEnd::Session(SessionEnd::Revoked { credentials_wiped }) => {
            (RelayError::Revoked, credentials_wiped)
        }
        AgentEnd::Session(SessionEnd::Forgotten { credentials_wiped }) => {
            (RelayError::UnknownAgent, credentials_wiped)
        }
        AgentEnd::SessionFailed(reason) => {
            anyhow::bail!("the relay session could not run: {reason}")
        }
        AgentEnd::SignInFailed(err) => return Err(anyhow::Error::new(err)),
        AgentEnd::Credentials(reason) => {
            return Err(anyhow::anyhow!("{reason}")).context("the agent cannot start")
        }
        AgentEnd::TunnelStopped(err) => {
            let headline = if err.needs_sign_in() {
                "the relay refused this agent's tunnel for good; the agent went offline; sign in again"
            } else {
                "the tunnel to the relay cannot work; the agent went offline"
            };
            return Err(anyhow::Error::new(err).context(headline));
        }
    };
    let what = if wiped {
        "its local credentials were wiped"
    } else {
        "its local credentials could NOT be removed; run `katachi unregister --local-only`"
    };
    let headline = match cause {
        RelayError::Revoked => "this agent was revoked at the relay",
        _ => "the relay no longer knows this agent",
    };
    Err(anyhow::Error::new(cause).context(format!("{headline}; {what}")))
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives before the future is first polled is not missed.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
