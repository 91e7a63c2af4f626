use axum::http::HeaderValue;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusting(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
    TrustedProxies::new(
        nets.iter()
            .map(|n| parse_trusted_proxy(n).unwrap())
            .collect(),
        header,
    )
}

fn xff(nets: &[&str]) -> TrustedProxies {
    trusting(nets, ForwardedHeader::XForwardedFor)
}

fn with(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in lines {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    h
}

#[test]
fn headers_from_an_untrusted_peer_are_never_read() {
    let proxies = xff(&["10.0.0.0/8"]);
    let spoofed = with(&[
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ]);
    assert_eq!(
        proxies.client_ip(ip("198.51.100.4"), &spoofed),
        ip("198.51.100.4")
    );
    // And with no trusted proxy configured at all, a loopback peer is no exception.
    assert_eq!(
        TrustedProxies::default().client_ip(ip("127.0.0.1"), &spoofed),
        ip("127.0.0.1")
    );
}

#[test]
fn the_first_untrusted_address_from_the_right_is_the_client() {
    let proxies = xff(&["10.0.0.0/8", "192.0.2.1"]);
    // A client's own X-Forwarded-For (a spoof) stays on the left of what the proxies appended.
    let h = with(&[(
        "x-forwarded-for",
        "203.0.113.66, 198.51.100.7, 192.0.2.1, 10.1.2.3",
    )]);
    assert_eq!(proxies.client_ip(ip("10.9.9.9"), &h), ip("198.51.100.7"));
}

#[test]
fn a_chain_of_several_trusted_proxies_over_several_lines_is_walked() {
    let proxies = xff(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
    let h = with(&[
        ("x-forwarded-for", "2001:db8:1::7"),
        ("x-forwarded-for", "2001:db8:ffff::1 , 10.0.0.2"),
    ]);
    assert_eq!(proxies.client_ip(ip("10.0.0.3"), &h), ip("2001:db8:1::7"));
}

#[test]
fn ports_and_brackets_are_dropped_and_mapped_addresses_read_as_ipv4() {
    let proxies = xff(&["127.0.0.0/8"]);
    for (value, client) in [
        ("192.0.2.7:4711", "192.0.2.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ] {
        let h = with(&[("x-forwarded-for", value)]);
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), &h),
            ip(client),
            "{value}"
        );
    }
}

#[test]
fn when_every_hop_is_trusted_the_farthest_is_the_client() {
    let proxies = xff(&["10.0.0.0/8"]);
    let h = with(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
    assert_eq!(proxies.client_ip(ip("10.0.0.3"), &h), ip("10.0.0.1"));
}

#[test]
fn a_missing_or_malformed_header_from_a_trusted_proxy_leaves_the_peer() {
    let proxies = xff(&["10.0.0.0/8"]);
    let peer = ip("10.0.0.3");
    for lines in [
        vec![],
        vec![("x-forwarded-for", "")],
        vec![("x-forwarded-for", " , ")],
        vec![("x-forwarded-for", "not-an-address")],
        vec![("x-forwarded-for", "192.0.2.7:99999")],
        vec![("x-forwarded-for", "[2001:db8::1")],
        vec![("x-forwarded-for", "fe80::1%eth0")],
        vec![("x-forwarded-for", "198.51.100.7, unknown")],
        // Only X-Forwarded-For is read by this configuration: a Forwarded header is ignored.
        vec![("forwarded", "for=198.51.100.7")],
    ] {
        assert_eq!(
            proxies.resolve(peer, &with(&lines)).map_err(|_| ()),
            Err(()),
            "{lines:?}"
        );
        assert_eq!(proxies.client_ip(peer, &with(&lines)), peer, "{lines:?}");
    }
    let not_text = {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        h
    };
    assert_eq!(proxies.client_ip(peer, &not_text), peer);
}

#[test]
fn junk_left_of_the_client_is_never_read() {
    let proxies = xff(&["10.0.0.0/8"]);
    let h = with(&[("x-forwarded-for", "<script>, 198.51.100.7, 10.0.0.1")]);
    assert_eq!(proxies.client_ip(ip("10.0.0.3"), &h), ip("198.51.100.7"));
}

#[test]
fn forwarded_for_values_are_read_quoted_with_ports_and_case_insensitive() {
    let proxies = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let peer = ip("10.0.0.3");
    for (value, client) in [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        (r#"For="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
        (r#"for="192.0.2.60:_p1", for=10.0.0.1"#, "192.0.2.60"),
        (r#"proto=https;host="a,b;c";for=192.0.2.60"#, "192.0.2.60"),
        (r#"for="\1\9\8.51.100.7""#, "198.51.100.7"),
        ("for=192.0.2.60:8080", "192.0.2.60"),
        // Several trusted hops on the right; a spoof on the left is never reached.
        (
            "for=203.0.113.66, for=198.51.100.7;proto=https, for=10.0.0.2 , for=10.0.0.1",
            "198.51.100.7",
        ),
    ] {
        let h = with(&[("forwarded", value)]);
        assert_eq!(proxies.client_ip(peer, &h), ip(client), "{value}");
    }
    // This configuration reads only Forwarded: X-Forwarded-For is ignored.
    let h = with(&[("x-forwarded-for", "198.51.100.7")]);
    assert_eq!(proxies.client_ip(peer, &h), peer);
}

#[test]
fn obfuscated_and_unknown_hops_before_an_untrusted_address_leave_the_peer() {
    let proxies = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let peer = ip("10.0.0.3");
    for value in [
        "for=_hidden",
        "for=198.51.100.7, for=unknown",
        r#"for="_gazonk", for=10.0.0.1"#,
    ] {
        let h = with(&[("forwarded", value)]);
        assert_eq!(
            proxies.resolve(peer, &h),
            Err(PeerFallback::Hidden),
            "{value}"
        );
    }
    // An obfuscated hop left of the client does not matter.
    let h = with(&[("forwarded", "for=_hidden, for=198.51.100.7")]);
    assert_eq!(proxies.client_ip(peer, &h), ip("198.51.100.7"));
}

#[test]
fn malformed_forwarded_headers_leave_the_peer() {
    let proxies = trusting(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let peer = ip("10.0.0.3");
    for value in [
        // A quote left open by the client swallows the proxy's own element.
        r#"for="198.51.100.7, for=198.51.100.8"#,
        "for",
        "for=",
        "=198.51.100.7",
        "for=198.51.100.7 for=198.51.100.8",
        "proto=https",
        "for=198.51.100.7;for=198.51.100.8",
        "for=_",
        "for=198.51.100.7;;proto=http",
        r#"for="[2001:db8::1]:x""#,
    ] {
        let h = with(&[("forwarded", value)]);
        assert!(
            matches!(proxies.resolve(peer, &h), Err(PeerFallback::Unreadable(_))),
            "{value}: {:?}",
            proxies.resolve(peer, &h)
        );
    }
}

#[test]
fn trusted_proxy_flags_take_cidrs_and_single_addresses() {
    assert_eq!(
        parse_trusted_proxy("10.1.2.3/8").unwrap().to_string(),
        "10.1.2.3/8"
    );
    let trusted = xff(&["10.1.2.3/8", "127.0.0.1", "::1"]);
    assert_eq!(trusted.nets()[0].to_string(), "10.0.0.0/8");
    assert!(trusted.trusts(ip("10.200.0.1")));
    assert!(trusted.trusts(ip("::ffff:127.0.0.1")));
    assert!(trusted.trusts(ip("::1")));
    assert!(!trusted.trusts(ip("127.0.0.2")));
    for bad in ["", "10.0.0.0/33", "localhost", "10.0.0.0/8/8"] {
        assert!(parse_trusted_proxy(bad).is_err(), "{bad}");
    }
}
