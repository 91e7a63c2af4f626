//! Allowed-host patterns and the egress decision the proxy makes for each connection attempt.
//!
//! A pattern is `host[:port]`: an exact name (`crates.io`), a suffix (`*.npmjs.org`: its
//! subdomains, not the bare name), or an IP literal (`10.0.0.5`, `[::1]:8080`). Without a port a
//! pattern allows 443 and 80 only.
//!
//! # Security
//! - Names are checked before they are resolved: a refused name never reaches DNS.
//! - IP literals are reached only when an entry is that literal: `*.x` never matches an address.
//! - Each name is resolved by the proxy, and an address that is not public (loopback, private,
//!   link-local, CGNAT, unique-local, multicast, unspecified) is refused unless an entry is that
//!   literal address (or the entry is exactly `localhost`, which names loopback by definition): an
//!   allowed name pointing at `127.0.0.1` or `169.254.169.254` (DNS rebinding, cloud metadata)
//!   does not open the agent's own machine or network.
//! - The proxy connects to the address it checked; it never resolves twice.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::denied::{DenialKind, SandboxDenied};
use super::policy::PolicyError;

/// Ports a pattern without a port allows.
const DEFAULT_PORTS: [u16; 2] = [443, 80];

/// What part of a destination a pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// Exactly this name (lowercase, no trailing dot).
    Exact(String),
    /// Any name below this suffix (`*.suffix`), not the suffix itself.
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One entry of the allowed-hosts list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

/// The host of a destination, as the command asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A DNS name (lowercase).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Self::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Exact(n) => f.write_str(n)?,
            HostMatch::Subdomains(s) => write!(f, "*.{s}")?,
            HostMatch::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            HostMatch::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl HostPattern {
    /// Parses `host[:port]`, `*.suffix[:port]`, `1.2.3.4[:port]` or `[v6][:port]`.
    ///
    /// # Errors
    /// [`PolicyError::BadHost`] for anything else (a URL, a path, an empty label, port 0).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadHost(text.to_owned());
        let t = text.trim().to_ascii_lowercase();
        let (host, port) = split_host_port(&t).ok_or_else(bad)?;
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?),
            None => None,
        };
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Subdomains(check_name(suffix).ok_or_else(bad)?)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostMatch::Ip(ip)
        } else {
            HostMatch::Exact(check_name(host).ok_or_else(bad)?)
        };
        Ok(Self { host, port })
    }

    fn port_ok(&self, port: u16) -> bool {
        self.port
            .map_or(DEFAULT_PORTS.contains(&port), |p| p == port)
    }

    /// Whether the pattern names `host`, whatever the port.
    fn names(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostMatch::Exact(e), Host::Name(n)) => e == n,
            (HostMatch::Subdomains(s), Host::Name(n)) => n
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostMatch::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }

    /// Whether this entry lets `addr` be reached although it is not public.
    fn allows_private(&self, addr: IpAddr, port: u16) -> bool {
        self.port_ok(port)
            && match &self.host {
                HostMatch::Ip(a) => canonical_ip(*a) == canonical_ip(addr),
                HostMatch::Exact(n) => n == "localhost" && canonical_ip(addr).is_loopback(),
                HostMatch::Subdomains(_) => false,
            }
    }
}

/// Splits `host[:port]` / `[v6][:port]`; `None` when malformed.
pub(crate) fn split_host_port(t: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = t.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        return match after {
            "" => Some((v6, None)),
            _ => Some((v6, Some(after.strip_prefix(':')?))),
        };
    }
    match t.rsplit_once(':') {
        // a bare IPv6 address without brackets has several colons
        Some((h, _)) if h.contains(':') => Some((t, None)),
        Some((h, p)) => Some((h, Some(p))),
        None => Some((t, None)),
    }
}

/// A DNS name made of letters, digits and `-` labels; returned lowercase without a final dot.
fn check_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then(|| name.to_ascii_lowercase())
}

/// Parses the host of a CONNECT target (`Host::Name` lowercase), `None` when it is no host.
pub(crate) fn parse_target_host(host: &str) -> Option<Host> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    check_name(host).map(Host::Name)
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical_ip(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `a` is an address of the public internet.
pub(crate) fn is_public(a: IpAddr) -> bool {
    match canonical_ip(a) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, ..] = a.octets();
    let cgnat = o0 == 100 && (o1 & 0xc0) == 64;
    !(a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || cgnat
        || o0 == 0
        || o0 >= 240)
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s0 = a.segments()[0];
    let unique_local = (s0 & 0xfe00) == 0xfc00;
    let link_local = (s0 & 0xffc0) == 0xfe80;
    !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || unique_local || link_local)
}

/// How a denial tells the user to allow `host:port`.
fn allow_hint(host: &Host, port: u16) -> String {
    let pattern = if DEFAULT_PORTS.contains(&port) {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    // quoted for the shell: `[::1]:8080` would otherwise be a glob
    format!("add --allow-host {}", super::denied::shell_word(&pattern))
}

/// Why the proxy refused a destination: the reason for the log, the fix for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// `host:port` as asked.
    pub(crate) target: String,
    /// Why (`not in the allowed hosts`).
    pub(crate) reason: String,
    /// The setting that would allow it (`add --allow-host evil.com`).
    pub(crate) how_to_allow: String,
}

impl Refusal {
    /// The structured denial returned to the caller.
    pub(crate) fn to_denied(&self) -> SandboxDenied {
        SandboxDenied {
            kind: DenialKind::Network,
            target: self.target.clone(),
            how_to_allow: self.how_to_allow.clone(),
        }
    }
}

fn network_denial(target: String, reason: &str, how_to_allow: String) -> Refusal {
    Refusal {
        target,
        reason: reason.to_owned(),
        how_to_allow,
    }
}

/// The first check, before any DNS lookup: is `host:port` on the list?
///
/// # Errors
/// A [`Refusal`] saying which entry would allow it.
pub(crate) fn check_destination(
    patterns: &[HostPattern],
    host: &Host,
    port: u16,
) -> Result<(), Refusal> {
    let target = format!("{host}:{port}");
    let named: Vec<&HostPattern> = patterns.iter().filter(|p| p.names(host)).collect();
    if named.iter().any(|p| p.port_ok(port)) {
        return Ok(());
    }
    let reason = match (host, named.is_empty()) {
        (_, false) => format!("port {port} is not allowed for {host}"),
        (Host::Ip(_), true) => {
            "an IP address is reached only when it is allowed literally".to_owned()
        }
        (Host::Name(_), true) => "not in the allowed hosts".to_owned(),
    };
    Err(network_denial(target, &reason, allow_hint(host, port)))
}

/// The second check, on the proxy's own resolution of `host`: the first address that is public,
/// or that an entry allows literally.
///
/// # Errors
/// A [`Refusal`] when every address is private (or there is none).
pub(crate) fn choose_address(
    patterns: &[HostPattern],
    host: &Host,
    port: u16,
    resolved: &[IpAddr],
) -> Result<SocketAddr, Refusal> {
    let target = format!("{host}:{port}");
    let ok = |a: IpAddr| is_public(a) || patterns.iter().any(|p| p.allows_private(a, port));
    if let Some(a) = resolved.iter().copied().find(|&a| ok(a)) {
        return Ok(SocketAddr::new(a, port));
    }
    match resolved.first() {
        None => Err(network_denial(
            target,
            "the name does not resolve",
            "check the host name".to_owned(),
        )),
        Some(&a) => Err(network_denial(
            target,
            &format!("it resolves to {a}, a loopback, private or link-local address"),
            allow_hint(&Host::Ip(a), port),
        )),
    }
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
