//! The user's side of adding a machine, in the browser: sign up (the address counted as verified, as
//! after opening the mailed link) and approve a device by typing the code it shows (RFC 8628 §5.4:
//! an approval is never one click).

use std::time::Duration;

use crate::chromium::Browser;
use crate::relay::{poll_for_credentials, request_device_code, AgentCredentials, InProcessRelay};

/// Signs up `email` in the browser and marks the address verified through the store, the same call
/// the mailed link makes.
///
/// # Errors
/// A page that did not load or answer within `page`, or a store failure.
pub async fn sign_up_verified(
    browser: &Browser,
    relay: &InProcessRelay,
    email: &str,
    password: &str,
    page: Duration,
) -> anyhow::Result<()> {
    browser.sign_up(relay.url(), email, password, page).await?;
    relay.verify_email(email).await
}

/// A new device named `name` asks for a code; the signed-in user opens the verification link,
/// types the code and approves; the device's credentials.
///
/// # Errors
/// A page or the token poll that did not answer within `page` (30 s for the poll).
pub async fn approve_device(
    browser: &Browser,
    relay: &InProcessRelay,
    name: &str,
    page: Duration,
) -> anyhow::Result<AgentCredentials> {
    let agent_http = relay.client()?;
    let dc = request_device_code(relay, &agent_http, name, "Debian 12").await?;
    let field = |key: &str| {
        dc[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the device code answer has no {key}: {dc}"))
    };
    browser.goto(&field("verification_uri_complete")?).await?;
    browser.fill("#confirm-code", &field("user_code")?).await?;
    browser.click("#approve").await?;
    browser
        .wait_for_text("#result", "Device connected", page)
        .await?;
    poll_for_credentials(
        relay,
        &agent_http,
        &field("device_code")?,
        Duration::from_millis(1100),
        Duration::from_secs(30),
    )
    .await
}
