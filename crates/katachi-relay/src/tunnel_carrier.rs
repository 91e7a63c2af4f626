//! How a tunnel's bytes travel between the agent and the relay.
//!
//! - **Direct** (`Upgrade: katachi-tunnel/1`): after the `101`, the connection's own bytes.
//! - **WebSocket** (`Upgrade: websocket`, RFC 6455, subprotocol `katachi-tunnel.v1`): after the
//!   `101`, the bytes inside the WebSocket's binary messages
//!   ([`katachi_proto::transport::WebSocketBytes`]). For hops that pass WebSocket upgrades only
//!   (Cloudflare, some load balancers); the agent prefers the direct upgrade.
//!
//! The same HTTP/2 runs over either, with the same flow control, and the route runs the same
//! signed-request checks before answering `101` whichever carrier was asked for.

use axum::body::Body;
use axum::http::header::{self, HeaderMap};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use hyper_util::rt::TokioIo;
use katachi_proto::agent::TUNNEL_PROTOCOL;
use katachi_proto::transport::{
    websocket_accept_key, WebSocketBytes, WebSocketRole, TUNNEL_WEBSOCKET_PROTOCOL,
};
use tokio_util::either::Either;

use crate::error::ApiError;

/// The byte stream a tunnel's HTTP/2 runs on, whichever the carrier.
pub(crate) type CarriedStream = TokioIo<
    Either<TokioIo<hyper::upgrade::Upgraded>, WebSocketBytes<TokioIo<hyper::upgrade::Upgraded>>>,
>;

/// The carrier an upgrade request asks for.
#[derive(Debug)]
pub(crate) enum Carrier {
    /// `Upgrade: katachi-tunnel/1`.
    Direct,
    /// `Upgrade: websocket` with the tunnel's subprotocol.
    WebSocket {
        /// `Sec-WebSocket-Accept` for the request's key.
        accept: HeaderValue,
    },
}

fn invalid_websocket(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "tunnel.websocket_invalid",
        message.to_owned(),
    )
}

/// Whether a comma-separated header `value` lists `token` (case-insensitive).
fn lists(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

impl Carrier {
    /// The carrier `headers` ask for.
    ///
    /// # Errors
    /// `426 tunnel.upgrade_required` without a tunnel or WebSocket upgrade (a hop stripped it, or
    /// an incompatible agent), `400 tunnel.websocket_invalid` for a WebSocket upgrade without
    /// version 13, a valid key or the `katachi-tunnel.v1` subprotocol.
    pub(crate) fn requested(headers: &HeaderMap) -> Result<Self, ApiError> {
        let upgrade = headers.get(header::UPGRADE);
        if lists(upgrade, TUNNEL_PROTOCOL) {
            return Ok(Carrier::Direct);
        }
        if !lists(upgrade, "websocket") {
            return Err(ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "tunnel.upgrade_required",
                format!(
                    "send Connection: Upgrade and Upgrade: {TUNNEL_PROTOCOL} (or a WebSocket upgrade with subprotocol {TUNNEL_WEBSOCKET_PROTOCOL})"
                ),
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(invalid_websocket("the WebSocket version must be 13"));
        }
        if !lists(
            headers.get(header::SEC_WEBSOCKET_PROTOCOL),
            TUNNEL_WEBSOCKET_PROTOCOL,
        ) {
            return Err(invalid_websocket(&format!(
                "the WebSocket subprotocol must be {TUNNEL_WEBSOCKET_PROTOCOL}"
            )));
        }
        // RFC 6455 §4.1: the key is 16 random bytes in base64.
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|k| {
                base64::engine::general_purpose::STANDARD
                    .decode(k.as_bytes())
                    .is_ok_and(|raw| raw.len() == 16)
            })
            .ok_or_else(|| invalid_websocket("the Sec-WebSocket-Key is missing or not 16 bytes"))?;
        let accept = HeaderValue::from_str(&websocket_accept_key(key.as_bytes()))
            .map_err(ApiError::internal)?;
        Ok(Carrier::WebSocket { accept })
    }

    /// `direct` or `websocket`, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Carrier::Direct => "direct",
            Carrier::WebSocket { .. } => "websocket",
        }
    }

    /// The `101 Switching Protocols` answer for this carrier.
    ///
    /// # Errors
    /// None in practice (the headers are valid); internal if building the response fails.
    pub(crate) fn switching_protocols(&self) -> Result<Response, ApiError> {
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade");
        let response = match self {
            Carrier::Direct => response.header(header::UPGRADE, TUNNEL_PROTOCOL),
            Carrier::WebSocket { accept } => response
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_ACCEPT, accept)
                .header(header::SEC_WEBSOCKET_PROTOCOL, TUNNEL_WEBSOCKET_PROTOCOL),
        };
        response.body(Body::empty()).map_err(ApiError::internal)
    }

    /// The byte stream over the upgraded connection.
    pub(crate) async fn carry(self, upgraded: hyper::upgrade::Upgraded) -> CarriedStream {
        let io = TokioIo::new(upgraded);
        TokioIo::new(match self {
            Carrier::Direct => Either::Left(io),
            Carrier::WebSocket { .. } => {
                Either::Right(WebSocketBytes::new(io, WebSocketRole::Server).await)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    const WS: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "chat, katachi-tunnel.v1"),
    ];

    #[test]
    fn the_direct_upgrade_and_a_websocket_upgrade_are_told_apart() {
        let direct = Carrier::requested(&headers(&[("upgrade", "Katachi-Tunnel/1")])).unwrap();
        assert_eq!(direct.name(), "direct");
        let ws = Carrier::requested(&headers(&WS)).unwrap();
        let Carrier::WebSocket { accept } = &ws else {
            panic!("{ws:?}")
        };
        // RFC 6455 §1.3's example key and answer.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let answer = ws.switching_protocols().unwrap();
        assert_eq!(answer.status(), 101);
        assert_eq!(
            answer.headers()["sec-websocket-protocol"],
            "katachi-tunnel.v1"
        );
        assert_eq!(answer.headers()["upgrade"], "websocket");
    }

    #[test]
    fn a_stripped_upgrade_is_426_and_a_bad_websocket_upgrade_400() {
        let stripped = Carrier::requested(&headers(&[])).unwrap_err();
        assert_eq!(
            (stripped.status.as_u16(), stripped.code),
            (426, "tunnel.upgrade_required")
        );
        for (name, bad) in [
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "c2hvcnQ="),
            ("sec-websocket-protocol", "chat"),
        ] {
            let mut h = headers(&WS);
            h.insert(name, HeaderValue::from_static(bad));
            let e = Carrier::requested(&h).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "tunnel.websocket_invalid"),
                "{name}"
            );
            h.remove(name);
            let e = Carrier::requested(&h).unwrap_err();
            assert_eq!(e.code, "tunnel.websocket_invalid", "{name} missing");
        }
    }
}
