//! Client addresses as the relay groups them for limits and comparisons.
//!
//! An IPv4 client is its own address. An IPv6 client is its `/64`: one home or one cloud machine
//! usually owns a whole `/64`, so counting single IPv6 addresses would let one attacker rotate
//! through 2^64 of them and never meet a limit. IPv4-mapped IPv6 addresses count as IPv4.
//!
//! The address grouped here is the client's as [`crate::client_ip::ClientIp`] resolves it (the TCP
//! peer, or a trusted proxy's forwarding header).

use std::net::{IpAddr, Ipv6Addr};

/// The group an address counts in: the IPv4 address itself, or the IPv6 `/64` it lies in.
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The bucket as text for rate-limit keys and pages: `192.0.2.7` or `2001:db8:1:2::/64`.
pub fn address_bucket_key(ip: IpAddr) -> String {
    match address_bucket(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// Whether two addresses belong to the same bucket; `recorded` is a stored address as text (an
/// unparsable one never matches).
pub fn same_bucket(recorded: &str, ip: IpAddr) -> bool {
    recorded
        .parse::<IpAddr>()
        .is_ok_and(|r| address_bucket(r) == address_bucket(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_bucket() {
        let a = address_bucket_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        let b = address_bucket_key(ip("2001:db8:1:2::1"));
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, address_bucket_key(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn ipv4_addresses_are_their_own_bucket_also_when_mapped_into_ipv6() {
        assert_eq!(address_bucket_key(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(address_bucket_key(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_ne!(
            address_bucket_key(ip("192.0.2.7")),
            address_bucket_key(ip("192.0.2.8"))
        );
    }

    #[test]
    fn same_bucket_compares_a_stored_address_with_a_peer() {
        assert!(same_bucket("127.0.0.1", ip("127.0.0.1")));
        assert!(!same_bucket("127.0.0.2", ip("127.0.0.1")));
        assert!(same_bucket("2001:db8::5", ip("2001:db8::9")));
        assert!(!same_bucket("not an address", ip("127.0.0.1")));
    }
}
