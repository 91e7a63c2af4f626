//! The sign-in part of `katachi start`: runs the device flow, shows the page and the code (and
//! opens a browser), waits for approval, and seals the credentials.

use anyhow::Context;
use katachi_core::agent_status::{AgentStatus, ConnectionState, StatusFile};
use katachi_core::auth::{this_device, AgentCredentials, DeviceFlow, PendingSignIn};
use katachi_core::{AgentHome, RelayUrl};

use crate::output::Output;

/// What signing in produced: the credentials, and whether they are sealed on disk yet.
pub(crate) struct SignedIn {
    /// The new credentials (kept in memory whatever happened to the save).
    pub credentials: AgentCredentials,
    /// False when sealing failed; the session retries.
    pub saved: bool,
}

/// Runs the device flow against `relay` and seals the result.
///
/// # Errors
/// Any [`katachi_core::auth::AuthError`]: unreachable relay, denied, expired…
pub(crate) async fn sign_in(
    home: &AgentHome,
    relay: RelayUrl,
    ca_pem: Option<String>,
    device_name: Option<&str>,
    open_browser: bool,
    out: &Output,
) -> anyhow::Result<SignedIn> {
    let flow = DeviceFlow::new(relay.clone(), ca_pem)?;
    let device = this_device(device_name);
    let pending = flow
        .start(&device)
        .await
        .with_context(|| format!("cannot start signing in at {relay}"))?;
    write_waiting_status(home, &relay);
    show_sign_in(&pending, &relay, out);
    if open_browser {
        open_in_browser(&pending, out);
    }
    let credentials = flow.wait(&pending).await.context("signing in failed")?;
    // Never drop credentials the relay issued because the disk said no: keep them, say so, retry.
    let saved = match credentials.save(home) {
        Ok(()) => true,
        Err(e) => {
            out.warn(&format!(
                "registered, but the credentials could not be saved yet ({e}); the agent keeps them in memory and retries"
            ));
            false
        }
    };
    out.event(
        &serde_json::json!({ "event": "registered", "agent_id": credentials.agent_id(), "relay_url": relay.as_str() }),
        || format!("registered as agent {}", credentials.agent_id()),
    );
    Ok(SignedIn { credentials, saved })
}

/// Prints the page and the code, each on its own marked line (`open: …`, `code: …`).
fn show_sign_in(pending: &PendingSignIn, relay: &RelayUrl, out: &Output) {
    let minutes = pending.expires_in().as_secs().div_ceil(60);
    out.event(
        &serde_json::json!({
            "event": "sign_in",
            "relay_url": relay.as_str(),
            "verification_uri": pending.verification_uri(),
            "verification_uri_complete": pending.verification_uri_complete(),
            "user_code": pending.user_code(),
            "expires_in_secs": pending.expires_in().as_secs(),
        }),
        || {
            format!(
                "To register this machine with {relay}, open this page, sign in, and check that it shows the same code:\n\
                 open: {}\n\
                 code: {}\n\
                 waiting for approval (the code expires in {minutes} min)…",
                pending.url_to_open(),
                pending.user_code()
            )
        },
    );
}

/// Lets `katachi status` show that a sign-in is waiting.
fn write_waiting_status(home: &AgentHome, relay: &RelayUrl) {
    let mut status = AgentStatus::new(ConnectionState::NeedsSignIn);
    status.relay_url = Some(relay.as_str().to_owned());
    status.reason = Some("waiting for the sign-in to be approved in a browser".to_owned());
    if let Err(e) = StatusFile::new(home.dirs().agent_status_path()).write(&status) {
        tracing::warn!(error = %e, "cannot write the status file");
    }
}

/// Opens the sign-in page in the default browser, only when it is the relay's own page and a
/// display is there to show it.
fn open_in_browser(pending: &PendingSignIn, out: &Output) {
    if !has_display() {
        return;
    }
    if !pending.is_safe_to_open() {
        out.warn("the relay's sign-in page is not on the relay's own address; not opening it automatically");
        return;
    }
    let url = pending.url_to_open().to_owned();
    // A browser may take its time to start; never hold up polling for it.
    std::thread::spawn(move || {
        if let Err(e) = webbrowser::open(&url) {
            tracing::info!(error = %e, "could not open a browser");
        }
    });
}

/// True where a graphical browser can be shown.
fn has_display() -> bool {
    if cfg!(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd"
    )) {
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    } else {
        true
    }
}
