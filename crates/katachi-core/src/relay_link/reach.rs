//! Is the relay there? A check made *before* a sign-in starts, so a wrong URL, a stopped relay or a
//! wrong CA gets a clear message instead of a device flow that never shows a code.
//!
//! # Contract
//! - One HTTPS `GET` of the relay's device-approval page ([`VERIFY_PATH`]) through
//!   [`relay_http_client`]: the same TLS configuration as every agent connection (TLS 1.3 only, the
//!   given CA as the only root), no redirect followed.
//! - Any HTTP answer below 500 means "reachable" (the page answers a signed-out visitor with a
//!   redirect to the login page). A 5xx (a proxy whose relay is down) and every network or TLS
//!   failure are [`RelayReachError::Unreachable`] with the reason on one line.
//! - Nothing is sent but the request line and headers: no credentials, no device data.

use katachi_proto::device::VERIFY_PATH;

use crate::relay_link::https::{error_chain, relay_http_client, RelayHttpError, RelayUrl};

/// Why the relay is not usable for a sign-in.
#[derive(Debug, thiserror::Error)]
pub enum RelayReachError {
    /// The URL or the CA given is not usable (no request was made).
    #[error(transparent)]
    Http(#[from] RelayHttpError),
    /// No HTTPS answer: refused, timed out, a certificate not signed by the CA, TLS below 1.3, or
    /// a server error in front of the relay.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// What failed, on one line.
        reason: String,
    },
}

/// Checks that `relay` answers over HTTPS with `ca_pem` (when given) as its only trusted root.
///
/// Returns the HTTP status the relay answered with.
///
/// # Errors
/// [`RelayReachError::Http`] for an unusable CA, [`RelayReachError::Unreachable`] otherwise.
pub async fn check_relay_reachable(
    relay: &RelayUrl,
    ca_pem: Option<&str>,
) -> Result<u16, RelayReachError> {
    let client = relay_http_client(ca_pem)?;
    let url = relay.endpoint(VERIFY_PATH);
    let unreachable = |reason: String| RelayReachError::Unreachable {
        url: relay.as_str().to_owned(),
        reason,
    };
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|err| unreachable(error_chain(&err)))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(unreachable(format!(
            "it answered HTTP {status} (is the relay behind this address running?)"
        )));
    }
    Ok(status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_reason() {
        // bound then dropped: nothing listens there any more
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let relay = RelayUrl::parse(&format!("https://127.0.0.1:{port}")).unwrap();
        let err = check_relay_reachable(&relay, None).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, RelayReachError::Unreachable { .. }),
            "{message}"
        );
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    }

    #[tokio::test]
    async fn a_ca_that_is_not_pem_is_refused_before_any_request() {
        let relay = RelayUrl::parse("https://relay.invalid").unwrap();
        let err = check_relay_reachable(&relay, Some("not a pem"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RelayReachError::Http(RelayHttpError::InvalidCa { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_plain_http_listener_is_unreachable_over_tls() {
        // a listener that answers the TLS hello with plain HTTP: the handshake must fail
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let relay = RelayUrl::parse(&format!("https://127.0.0.1:{port}")).unwrap();
        let err = check_relay_reachable(&relay, None).await.unwrap_err();
        assert!(matches!(err, RelayReachError::Unreachable { .. }), "{err}");
    }
}
