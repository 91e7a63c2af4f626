//! Wire types shared by the agent and the relay, so both sides agree by construction.
//!
//! # Layout
//! - [`ProtocolVersion`]: the version both sides announce.
//! - [`device`]: RFC 8628 device authorization messages and the token the agent receives.
//! - [`device_form`]: the relay's checks of the device flow's two form requests.
//! - [`signing`]: HMAC-SHA256 request signing (canonical string, headers, verification).
//! - [`signed_request`]: the relay's reading of a signed request's headers, and its verification.
//! - [`forwarding`]: a browser's request rebuilt into the agent's, directly or across relay
//!   instances.
//! - [`agent`]: signed agent → relay calls (heartbeat, activity events, unregister) and API errors.
//! - [`mcp`]: the signed MCP calls (list the user's MCP tools, call one) run by the relay.
//! - [`relay_error`]: every relay error code and the one rule for what the agent does on each.
//! - `transport` (feature `io`): stream helpers both ends of the tunnel put under TLS, and the
//!   tunnel's WebSocket carrier.
//!
//! `device_form`, `signed_request` and `forwarding` hold the relay's pure parsing of what agents,
//! browsers and other relay instances send, so that `fuzz/` can run it without the relay (and its
//! database stack).

#![forbid(unsafe_code)]

pub mod agent;
pub mod device;
pub mod device_form;
pub mod forwarding;
pub mod mcp;
pub mod relay_error;
pub mod signed_request;
pub mod signing;
#[cfg(feature = "io")]
pub mod transport;

use serde::{Deserialize, Serialize};

/// The agent↔relay protocol version. A relay refuses agents whose major version differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
}

impl ProtocolVersion {
    /// The version this build speaks.
    pub const CURRENT: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

    /// True when a peer speaking `other` can be served.
    pub fn is_compatible_with(self, other: ProtocolVersion) -> bool {
        self.major == other.major
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_major_version_decides_compatibility() {
        let v = ProtocolVersion::CURRENT;
        assert!(v.is_compatible_with(ProtocolVersion {
            major: v.major,
            minor: v.minor + 3
        }));
        assert!(!v.is_compatible_with(ProtocolVersion {
            major: v.major + 1,
            minor: 0
        }));
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<ProtocolVersion>(&json).unwrap(), v);
    }
}
