//! The client's address: the TCP peer, or what trusted reverse proxies in front of the relay say.
//!
//! Every handler that limits, shows or records a client address takes [`ClientIp`]: the sign-in,
//! sign-up and device-code limits (`address_limit`, the store's windows), the OAuth start limit,
//! the device approval page (which compares the approver's address with the device's) and the
//! address recorded with a device code.
//!
//! # Rule
//! - The client is the TCP peer, unless the peer lies inside a `--trusted-proxy` CIDR.
//! - From a trusted peer, the relay reads **one** forwarding header, the one
//!   `--client-address-header` names: `x-forwarded-for` (default; nginx, HAProxy, Cloudflare) or
//!   `forwarded` (RFC 7239 `for=`). The other header is ignored entirely, so a client cannot slip
//!   an address in through the header a proxy passes along untouched; preferring one when both
//!   are present would let it do exactly that.
//! - The hops are walked from the right (the nearest first), skipping trusted addresses; the first
//!   untrusted address is the client. When every hop is trusted, the farthest one is.
//! - A missing header, one that does not parse, or a hop that is `unknown` or obfuscated before an
//!   untrusted address was found: the peer is the client (fail closed; logged at debug).
//! - Headers from a peer outside the trusted CIDRs are never read.
//!
//! Addresses are compared as IPv4 when they are IPv4-mapped IPv6 (`::ffff:192.0.2.7`).
//!
//! # Security
//! A proxy must append (or overwrite) the header it is trusted for, as nginx's
//! `$proxy_add_x_forwarded_for` and HAProxy's `option forwardfor` do: whatever a client wrote
//! lies to the left of the proxy's own entry, and the walk stops at the first untrusted address
//! before reaching it. Trusting a CIDR that untrusted machines can connect from lets those
//! machines choose their own address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

#[path = "client_ip_headers.rs"]
mod headers;

use self::headers::{HeaderError, Hop};

/// The forwarding header trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    #[value(name = "forwarded")]
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => axum::http::header::FORWARDED,
        }
    }
}

/// The reverse proxies whose forwarding header names the client (`--trusted-proxy`), and which
/// header that is. The default trusts no one: the client is always the TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// The trusted networks.
    nets: Vec<IpNet>,
    /// The one header read from them.
    header: ForwardedHeader,
}

/// Why the peer was taken as the client although it is a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerFallback {
    /// The proxy sent no forwarding header (or an empty one).
    #[error("the trusted proxy sent no {0} header")]
    Missing(&'static str),
    /// The header did not parse.
    #[error("the trusted proxy's forwarding header is unreadable: {0}")]
    Unreadable(HeaderError),
    /// A hop nearer than any untrusted address is `unknown` or obfuscated.
    #[error("a hop in the forwarding header hides its address")]
    Hidden,
}

impl TrustedProxies {
    /// Trusts `nets` for `header`.
    pub fn new(nets: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self {
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
            header,
        }
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// The header read from trusted proxies.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether `ip` lies in a trusted network.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers` (see the module docs).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        match self.resolve(peer, headers) {
            Ok(ip) => ip,
            Err(why) => {
                tracing::debug!(%peer, reason = %why, "client address: the proxy's own");
                peer.to_canonical()
            }
        }
    }

    /// The forwarded client, or why the peer stands (`Ok(peer)` for an untrusted peer).
    pub(crate) fn resolve(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<IpAddr, PeerFallback> {
        let peer = peer.to_canonical();
        // Headers from anyone but a trusted proxy are the client's own words: never read.
        if !self.trusts(peer) {
            return Ok(peer);
        }
        let lines = headers.get_all(self.header.name());
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => headers::x_forwarded_for(lines),
            ForwardedHeader::Forwarded => headers::forwarded(lines),
        }
        .map_err(PeerFallback::Unreadable)?;
        let mut farthest_trusted = None;
        // Nearest hop first: everything right of the first untrusted address was written by
        // trusted proxies; everything left of it may be the client's invention.
        for hop in hops.into_iter().rev() {
            match hop.map_err(PeerFallback::Unreadable)? {
                Hop::Ip(ip) if self.trusts(ip) => farthest_trusted = Some(ip.to_canonical()),
                Hop::Ip(ip) => return Ok(ip.to_canonical()),
                Hop::Hidden => return Err(PeerFallback::Hidden),
            }
        }
        farthest_trusted.ok_or(PeerFallback::Missing(match self.header {
            ForwardedHeader::XForwardedFor => "X-Forwarded-For",
            ForwardedHeader::Forwarded => "Forwarded",
        }))
    }
}

/// `--trusted-proxy` values: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or one address (`127.0.0.1`).
///
/// # Errors
/// A value that is neither, said in words.
pub fn parse_trusted_proxy(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "{value:?} is not an address or CIDR (say 10.0.0.0/8, 2001:db8::/32 or 127.0.0.1)"
            )
        })
}

/// The client's address for this request (see the module docs): the extractor every limit, page
/// and record of a client address uses. Resolved once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(known) = parts.extensions.get::<ClientIp>() {
            return Ok(*known);
        }
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Err(ApiError::internal("a request without its peer address"));
        };
        let client = ClientIp(
            state
                .config
                .trusted_proxies
                .client_ip(peer.ip(), &parts.headers),
        );
        parts.extensions.insert(client);
        Ok(client)
    }
}

#[cfg(test)]
#[path = "client_ip_tests.rs"]
mod tests;
