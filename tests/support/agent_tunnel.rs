//! An agent's side of the tunnel in the test process: the real dialer, with the credentials a test
//! got through the device flow, serving whatever router the test gives it (the real agent API, or a
//! hostile stand-in).

use std::sync::Arc;

use axum::Router;
use katachi_core::signing::{RequestSigner, SystemClock};
use katachi_core::tunnel::TunnelDialer;
use katachi_core::{AgentCredentials as CoreCredentials, RelayUrl, SecretBytes};
use tokio::task::JoinHandle;

use crate::relay::{AgentCredentials, InProcessRelay};

/// Dials `relay`'s tunnel as `agent` (pinning the relay's CA) and serves `api` over it until the
/// tunnel ends; the task prints why it ended.
///
/// # Errors
/// A relay URL, CA file or credentials the dialer refuses.
pub fn dial_and_serve(
    relay: &InProcessRelay,
    agent: &AgentCredentials,
    api: Router,
) -> anyhow::Result<JoinHandle<()>> {
    let credentials = CoreCredentials::new(
        RelayUrl::parse(relay.url())?,
        agent.agent_id.clone(),
        SecretBytes::new(agent.access_token.as_bytes().to_vec()),
        SecretBytes::new(agent.signing_secret.as_bytes().to_vec()),
        Some(std::fs::read_to_string(relay.ca_file())?),
    );
    let signer = RequestSigner::new(
        agent.agent_id.clone(),
        SecretBytes::new(agent.signing_secret.as_bytes().to_vec()),
        Arc::new(SystemClock),
        0,
    );
    let dialer = TunnelDialer::new(&credentials, signer)?;
    Ok(tokio::spawn(async move {
        if let Err(e) = dialer.dial_and_serve(api).await {
            eprintln!("tunnel ended: {e}");
        }
    }))
}
