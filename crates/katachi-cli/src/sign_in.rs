//! The sign-in part of `katachi start`, as seen from the terminal: shows the page and the code
//! the agent runtime got from the relay (and opens a browser), shows each fresh code when one
//! expires, and says when the agent is registered.

use katachi_core::agent::{Agent, SignInStarted, Status};
use katachi_core::agent_status::{AgentStatus, ConnectionState, StatusFile};
use katachi_core::RelayUrl;

use crate::output::Output;

/// How a sign-in is shown.
pub(crate) struct SignInView<'a> {
    /// The relay signed in at.
    relay: &'a RelayUrl,
    /// Open the page in the default browser.
    open_browser: bool,
}

impl<'a> SignInView<'a> {
    /// A view for a sign-in at `relay`.
    pub(crate) fn new(relay: &'a RelayUrl, open_browser: bool) -> Self {
        Self {
            relay,
            open_browser,
        }
    }

    /// Prints the page and the code, each on its own marked line (`open: …`, `code: …`), and
    /// opens the page when it is the relay's own.
    pub(crate) fn show(&self, started: &SignInStarted, out: &Output) {
        let expires_in = started.expires_at.saturating_sub(unix_now()).max(0);
        let minutes = expires_in.unsigned_abs().div_ceil(60);
        let relay = self.relay;
        out.event(
            &serde_json::json!({
                "event": "sign_in",
                "relay_url": relay.as_str(),
                "verification_uri": started.verification_uri,
                "verification_uri_complete": started.verification_uri_complete,
                "user_code": started.user_code,
                "expires_in_secs": expires_in,
            }),
            || {
                format!(
                    "To register this machine with {relay}, open this page, sign in, and check that it shows the same code:\n\
                     open: {}\n\
                     code: {}\n\
                     waiting for approval (the code expires in {minutes} min)…",
                    started.url_to_open, started.user_code
                )
            },
        );
        if self.open_browser {
            open_in_browser(started, out);
        }
    }
}

/// Follows the agent while it signs in: writes "waiting" into the status file, shows each fresh
/// code (the first, `first_code`, was shown already), and prints `registered as agent …` once.
/// Ends when the agent's task ends.
pub(crate) async fn follow(
    agent: &Agent,
    first: Option<(RelayUrl, String)>,
    file: &StatusFile,
    open_browser: bool,
    out: &Output,
) {
    let Some((relay, mut shown_code)) = first else {
        return;
    };
    let mut status = agent.status();
    let mut registered = agent.registered();
    registered.mark_unchanged();
    loop {
        let now = status.borrow_and_update().clone();
        if let Status::WaitingForApproval {
            user_code,
            verification_uri,
            expires_at,
        } = now
        {
            write_waiting_status(file, &relay);
            if user_code != shown_code {
                let fresh = SignInStarted {
                    user_code: user_code.clone(),
                    verification_uri: verification_uri.clone(),
                    verification_uri_complete: None,
                    safe_to_open: relay.is_same_origin(&verification_uri),
                    url_to_open: verification_uri,
                    expires_at,
                };
                out.warn("the sign-in code expired; here is a fresh one");
                SignInView::new(&relay, open_browser).show(&fresh, out);
                shown_code = user_code;
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            changed = registered.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = registered.borrow_and_update().clone();
                if let Some(now) = now {
                    out.event(
                        &serde_json::json!({ "event": "registered", "agent_id": now.agent_id, "relay_url": now.relay }),
                        || format!("registered as agent {}", now.agent_id),
                    );
                    return;
                }
            }
        }
    }
}

/// Lets `katachi status` show that a sign-in is waiting.
pub(crate) fn write_waiting_status(file: &StatusFile, relay: &RelayUrl) {
    let mut status = AgentStatus::new(ConnectionState::NeedsSignIn);
    status.relay_url = Some(relay.as_str().to_owned());
    status.reason = Some("waiting for the sign-in to be approved in a browser".to_owned());
    if let Err(e) = file.write(&status) {
        tracing::warn!(error = %e, "cannot write the status file");
    }
}

/// Opens the sign-in page in the default browser, only when it is the relay's own page and a
/// display is there to show it.
fn open_in_browser(started: &SignInStarted, out: &Output) {
    if !has_display() {
        return;
    }
    if !started.safe_to_open {
        out.warn("the relay's sign-in page is not on the relay's own address; not opening it automatically");
        return;
    }
    let url = started.url_to_open.clone();
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

/// Wall-clock unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
