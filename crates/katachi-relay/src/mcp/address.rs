//! The SSRF guard of MCP connections: which addresses the relay may connect to for a user.
//!
//! A user's MCP server URL is input from a browser; without a guard, it would let anyone with an
//! account make the relay call its own loopback services, the cloud metadata endpoint
//! (169.254.169.254) or the private network behind it. So by default every address a URL leads
//! to must be public:
//! - an IP literal in the URL is checked before connecting ([`check_url_host`]);
//! - a name is resolved by [`GuardedResolver`], the only resolver of the MCP HTTP client: when
//!   any address of the answer is not public, the whole name is refused. The connection then uses
//!   exactly the checked addresses, so a name that re-binds to a private address between a check
//!   and the connection (DNS rebinding) cannot slip through.
//!
//! `--mcp-allow-private-addresses` turns the guard off (a relay whose users' MCP servers live on
//! its own network, and the tests on loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest013::dns::{Addrs, Name, Resolve, Resolving};

/// A host that leads to an address the guard refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the MCP server's address is loopback, private, link-local or otherwise not public")]
pub struct AddressRefused;

/// True for an address on the public internet: not loopback, private, link-local, shared (CGNAT),
/// multicast, documentation, benchmarking, reserved or unspecified — also when an IPv4 address
/// hides inside an IPv6 one (mapped, compatible, NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // shared address space (carrier-grade NAT): 100.64.0.0/10
        || (a == 100 && (64..=127).contains(&b))
        // IETF protocol assignments: 192.0.0.0/24
        || (a == 192 && b == 0 && c == 0)
        // benchmarking: 198.18.0.0/15
        || (a == 198 && (b == 18 || b == 19))
        // reserved: 240.0.0.0/4
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96)
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // unique local fc00::/7
        || (s[0] & 0xfe00) == 0xfc00
        // link-local fe80::/10 and the deprecated site-local fec0::/10
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // documentation 2001:db8::/32
        || (s[0] == 0x2001 && s[1] == 0x0db8))
}

/// Checks the host of `url` when it is an IP literal (names are checked by [`GuardedResolver`]
/// when the connection resolves them; `localhost` is a name and resolves to loopback).
///
/// # Errors
/// [`AddressRefused`] for an IP literal that is not public while the guard is on.
pub fn check_url_host(url: &url::Url, allow_private: bool) -> Result<(), AddressRefused> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(AddressRefused),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(AddressRefused)
    }
}

/// Resolves names with the system resolver and refuses any name with a non-public address
/// (unless private addresses are allowed).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// `--mcp-allow-private-addresses`.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Refuse the whole name when one address is not public: an answer mixing a public
            // and a private address is a rebinding attempt as likely as a mistake.
            if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_private_link_local_and_hidden_ipv4_are_not_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!is_public(ip), "{refused} must be refused");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public(ip), "{public} is public");
        }
    }

    #[test]
    fn ip_literals_in_urls_are_checked_unless_private_addresses_are_allowed() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url_host(&url("http://127.0.0.1:9/mcp"), false).is_err());
        assert!(check_url_host(&url("https://[::1]/mcp"), false).is_err());
        assert!(check_url_host(&url("https://169.254.169.254/"), false).is_err());
        assert!(check_url_host(&url("https://1.1.1.1/mcp"), false).is_ok());
        assert!(check_url_host(&url("https://mcp.example.com/mcp"), false).is_ok());
        assert!(check_url_host(&url("http://127.0.0.1:9/mcp"), true).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost_unless_private_addresses_are_allowed() {
        let name: Name = "localhost".parse().unwrap();
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(name)
        .await;
        assert!(refused.is_err());
        let name: Name = "localhost".parse().unwrap();
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(name)
        .await;
        assert!(allowed.is_ok());
    }
}
