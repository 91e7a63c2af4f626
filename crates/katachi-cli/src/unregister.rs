//! `katachi unregister`: tells the relay to forget this agent (a signed call), then wipes the local
//! credentials. When the relay cannot be reached the credentials are kept, so the agent can still
//! unregister later; `--local-only` wipes them without telling the relay.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use katachi_core::agent_status::StatusFile;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::signing::SystemClock;
use katachi_core::{AgentCredentials, AgentHome, KatachiDirs, RelayClient};
use serde::Serialize;

use crate::cli::UnregisterArgs;
use crate::output::Output;

/// What `katachi unregister --json` prints.
#[derive(Debug, Serialize)]
struct Unregistered {
    /// Whether there were credentials to remove.
    was_registered: bool,
    /// The agent's id, when there was one.
    agent_id: Option<String>,
    /// Its relay.
    relay_url: Option<String>,
    /// The relay was told (false with `--local-only`, or when it already did not know the agent).
    relay_told: bool,
    /// Local credentials are gone.
    credentials_wiped: bool,
}

pub(crate) fn run(
    dirs: &KatachiDirs,
    args: &UnregisterArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    let Some(credentials) = AgentCredentials::load(&home)? else {
        let result = Unregistered {
            was_registered: false,
            agent_id: None,
            relay_url: None,
            relay_told: false,
            credentials_wiped: false,
        };
        out.emit(&result, || "not registered; nothing to do".to_owned());
        return Ok(ExitCode::SUCCESS);
    };
    let agent_id = credentials.agent_id().to_owned();
    let relay_url = credentials.relay_url().as_str().to_owned();
    let relay_told = if args.local_only {
        false
    } else {
        tell_relay(credentials, &relay_url)?
    };
    AgentCredentials::wipe(&home).context("cannot remove the local credentials")?;
    if let Err(e) = StatusFile::new(dirs.agent_status_path()).remove() {
        tracing::warn!(error = %e, "cannot remove the status file");
    }
    let result = Unregistered {
        was_registered: true,
        agent_id: Some(agent_id.clone()),
        relay_url: Some(relay_url.clone()),
        relay_told,
        credentials_wiped: true,
    };
    out.emit(&result, || {
        if args.local_only {
            format!("local credentials of agent {agent_id} wiped; {relay_url} was not told and keeps listing the agent until you revoke it there")
        } else if relay_told {
            format!("unregistered agent {agent_id} from {relay_url}; local credentials wiped")
        } else {
            format!("{relay_url} had already revoked or forgotten agent {agent_id}; local credentials wiped")
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// The signed unregister call. `Ok(false)` when the relay already refuses the agent (revoked or
/// unknown: nothing left to remove there).
///
/// # Errors
/// Any other failure, with the credentials left in place.
fn tell_relay(credentials: AgentCredentials, relay_url: &str) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = RelayClient::new(credentials, Arc::new(SystemClock))?;
    match runtime.block_on(client.unregister()) {
        Ok(()) => Ok(true),
        Err(e) if e.needs_sign_in() => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "could not unregister from {relay_url}; the local credentials were kept. Try again when the relay is reachable, or run `katachi unregister --local-only` to wipe them without telling the relay"
        ))),
    }
}
