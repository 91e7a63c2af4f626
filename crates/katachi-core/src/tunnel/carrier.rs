//! What carries the tunnel's HTTP/2 to the relay: the direct upgrade or the WebSocket carrier, the
//! rule for trying the other one, and the memory of the one that worked.
//!
//! - **Direct** (`Upgrade: katachi-tunnel/1`): the upgraded connection's own bytes. Preferred.
//! - **WebSocket** (`Upgrade: websocket`, subprotocol `katachi-tunnel.v1`): the bytes inside
//!   binary WebSocket messages ([`katachi_proto::transport::WebSocketBytes`]), for hops that pass
//!   WebSocket upgrades only (Cloudflare, some load balancers and corporate proxies).
//!
//! # Fallback rule
//! A non-`101` answer to one carrier's upgrade makes the dialer try the other one at once only
//! when it says a hop on the way would not pass the upgrade ([`refused_on_the_way`]): an answer
//! that is not the relay's JSON error (a proxy's 400, 426, 502, an HTML page, a `200`), or the
//! relay's own `tunnel.upgrade_required` / `tunnel.not_upgradable` (the upgrade header was
//! stripped, or a hop spoke HTTP/2 to it). Any other relay error (a signature, a revoked agent)
//! is the relay's verdict on the agent and is never retried over another carrier; nor are
//! `429`, `503` and `504` (busy or down, whatever the carrier).
//!
//! The carrier that opened the tunnel is remembered by the dialer for the rest of the agent's
//! session, so redials go straight to it; it is shown in the tunnel status and logged.

use std::sync::atomic::{AtomicU8, Ordering};

use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Builder;
use axum::http::HeaderMap;
use hyper_util::rt::TokioIo;
use katachi_proto::agent::TUNNEL_PROTOCOL;
use katachi_proto::relay_error::RelayErrorCode;
use katachi_proto::transport::{
    new_websocket_key, websocket_accept_key, WebSocketBytes, WebSocketRole,
    TUNNEL_WEBSOCKET_PROTOCOL,
};
use serde::{Deserialize, Serialize};
use tokio_util::either::Either;

/// The byte stream the tunnel's HTTP/2 runs on, whichever the carrier.
pub(crate) type CarriedStream = TokioIo<
    Either<TokioIo<hyper::upgrade::Upgraded>, WebSocketBytes<TokioIo<hyper::upgrade::Upgraded>>>,
>;

/// What carries the tunnel (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Carrier {
    /// The direct upgrade (`Upgrade: katachi-tunnel/1`).
    #[default]
    #[serde(rename = "direct")]
    Direct,
    /// The WebSocket carrier (`Upgrade: websocket`).
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Carrier {
    /// `direct` or `websocket`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Direct => "direct",
            Carrier::WebSocket => "websocket",
        }
    }

    /// The carrier to try when this one is refused on the way.
    pub(crate) fn other(self) -> Self {
        match self {
            Carrier::Direct => Carrier::WebSocket,
            Carrier::WebSocket => Carrier::Direct,
        }
    }

    /// Adds this carrier's upgrade headers to the tunnel request; the WebSocket key sent, if any.
    pub(crate) fn upgrade_request(self, request: Builder) -> (Builder, Option<String>) {
        let request = request.header(CONNECTION, "upgrade");
        match self {
            Carrier::Direct => (request.header(UPGRADE, TUNNEL_PROTOCOL), None),
            Carrier::WebSocket => {
                let key = new_websocket_key();
                let request = request
                    .header(UPGRADE, "websocket")
                    .header(SEC_WEBSOCKET_VERSION, "13")
                    .header(SEC_WEBSOCKET_KEY, &key)
                    .header(SEC_WEBSOCKET_PROTOCOL, TUNNEL_WEBSOCKET_PROTOCOL);
                (request, Some(key))
            }
        }
    }

    /// Checks a `101` answer: a WebSocket one must accept the key sent and pick the tunnel's
    /// subprotocol (RFC 6455 §4.1), or the bytes after it are not the relay's.
    ///
    /// # Errors
    /// What is wrong with the answer, in words.
    pub(crate) fn check_switch(self, headers: &HeaderMap, key: Option<&str>) -> Result<(), String> {
        let (Carrier::WebSocket, Some(key)) = (self, key) else {
            return Ok(());
        };
        let is = |name, expected: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
        };
        if !is(UPGRADE, "websocket") {
            return Err("the WebSocket upgrade was answered with another protocol".to_owned());
        }
        let accept = websocket_accept_key(key.as_bytes());
        if headers.get(SEC_WEBSOCKET_ACCEPT).map(|v| v.as_bytes()) != Some(accept.as_bytes()) {
            return Err(
                "the WebSocket upgrade was answered with a wrong Sec-WebSocket-Accept".to_owned(),
            );
        }
        if !is(SEC_WEBSOCKET_PROTOCOL, TUNNEL_WEBSOCKET_PROTOCOL) {
            return Err(format!(
                "the WebSocket upgrade was answered without the {TUNNEL_WEBSOCKET_PROTOCOL} subprotocol"
            ));
        }
        Ok(())
    }

    /// The byte stream over the upgraded connection.
    pub(crate) async fn carry(self, upgraded: hyper::upgrade::Upgraded) -> CarriedStream {
        let io = TokioIo::new(upgraded);
        TokioIo::new(match self {
            Carrier::Direct => Either::Left(io),
            Carrier::WebSocket => {
                Either::Right(WebSocketBytes::new(io, WebSocketRole::Client).await)
            }
        })
    }
}

impl std::fmt::Display for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a non-`101` answer (`status`, the relay's error `code` when the body was one) says a
/// hop on the way would not pass the upgrade, so the other carrier may get through (see the
/// module docs).
pub(crate) fn refused_on_the_way(status: u16, code: Option<&RelayErrorCode>) -> bool {
    match code {
        Some(RelayErrorCode::UpgradeRequired | RelayErrorCode::NotUpgradable) => true,
        Some(_) => false,
        None => !matches!(status, 429 | 503 | 504),
    }
}

/// The carrier to dial first: the one that last opened a tunnel (direct until one has).
#[derive(Debug, Default)]
pub(crate) struct CarrierMemory(AtomicU8);

impl CarrierMemory {
    /// The carrier to try first.
    pub(crate) fn preferred(&self) -> Carrier {
        match self.0.load(Ordering::Relaxed) {
            1 => Carrier::WebSocket,
            _ => Carrier::Direct,
        }
    }

    /// Remembers the carrier that opened a tunnel.
    pub(crate) fn remember(&self, carrier: Carrier) {
        let value = match carrier {
            Carrier::Direct => 0,
            Carrier::WebSocket => 1,
        };
        self.0.store(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_proxys_refusal_or_a_stripped_upgrade_falls_back_and_the_relays_verdicts_do_not() {
        // Not the relay's JSON: a hop answered.
        for status in [400, 403, 404, 405, 426, 500, 501, 502, 200] {
            assert!(refused_on_the_way(status, None), "{status}");
        }
        // Busy or down, whatever the carrier: the backoff handles it.
        for status in [429, 503, 504] {
            assert!(!refused_on_the_way(status, None), "{status}");
        }
        // The relay saw a request without the upgrade, or over a hop that cannot upgrade.
        assert!(refused_on_the_way(
            426,
            Some(&RelayErrorCode::UpgradeRequired)
        ));
        assert!(refused_on_the_way(
            400,
            Some(&RelayErrorCode::NotUpgradable)
        ));
        // The relay's verdict on the agent or its request.
        for code in [
            "signature.bad_signature",
            "signature.stale_timestamp",
            "agent.revoked",
            "tunnel.websocket_invalid",
            "internal",
            "some.future_code",
        ] {
            let code = RelayErrorCode::parse(code);
            assert!(!refused_on_the_way(401, Some(&code)), "{code}");
            assert!(!refused_on_the_way(500, Some(&code)), "{code}");
        }
    }

    #[test]
    fn the_carrier_that_worked_is_dialled_first() {
        let memory = CarrierMemory::default();
        assert_eq!(memory.preferred(), Carrier::Direct);
        memory.remember(Carrier::WebSocket);
        assert_eq!(memory.preferred(), Carrier::WebSocket);
        assert_eq!(memory.preferred().other(), Carrier::Direct);
        memory.remember(Carrier::Direct);
        assert_eq!(memory.preferred(), Carrier::Direct);
    }

    #[test]
    fn a_websocket_switch_must_accept_the_key_and_pick_the_subprotocol() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let mut good = HeaderMap::new();
        good.insert(UPGRADE, HeaderValue::from_static("websocket"));
        good.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        good.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(TUNNEL_WEBSOCKET_PROTOCOL),
        );
        assert_eq!(Carrier::WebSocket.check_switch(&good, Some(key)), Ok(()));
        for (name, bad) in [
            (UPGRADE, "katachi-tunnel/1"),
            (SEC_WEBSOCKET_ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            (SEC_WEBSOCKET_PROTOCOL, "chat"),
        ] {
            let mut h = good.clone();
            h.insert(name.clone(), HeaderValue::from_static(bad));
            assert!(
                Carrier::WebSocket.check_switch(&h, Some(key)).is_err(),
                "{name}"
            );
            h.remove(&name);
            assert!(
                Carrier::WebSocket.check_switch(&h, Some(key)).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            Carrier::Direct.check_switch(&HeaderMap::new(), None),
            Ok(())
        );
    }

    #[test]
    fn carriers_serialise_as_their_names() {
        assert_eq!(
            serde_json::to_string(&Carrier::WebSocket).unwrap(),
            "\"websocket\""
        );
        assert_eq!(Carrier::Direct.to_string(), "direct");
    }
}
