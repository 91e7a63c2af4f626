use super::*;

fn pats(list: &[&str]) -> Vec<HostPattern> {
    list.iter()
        .map(|p| HostPattern::parse(p).unwrap())
        .collect()
}

fn name(n: &str) -> Host {
    Host::Name(n.to_owned())
}

#[test]
fn patterns_parse_and_print_canonically() {
    for (input, shown) in [
        ("Crates.IO", "crates.io"),
        ("*.npmjs.org", "*.npmjs.org"),
        ("example.org:8443", "example.org:8443"),
        ("10.0.0.5", "10.0.0.5"),
        ("[::1]:8080", "[::1]:8080"),
        ("::1", "[::1]"),
        ("localhost.", "localhost"),
    ] {
        assert_eq!(HostPattern::parse(input).unwrap().to_string(), shown);
    }
    for bad in [
        "",
        "a b",
        "https://crates.io",
        "crates.io/x",
        "x:0",
        "x:99999",
        "*.",
        "-a.org",
        "a..org",
        "[::1",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn names_match_exactly_or_as_subdomains_on_default_ports() {
    let p = pats(&["crates.io", "*.npmjs.org", "git.example:2222"]);
    assert!(check_destination(&p, &name("crates.io"), 443).is_ok());
    assert!(check_destination(&p, &name("crates.io"), 80).is_ok());
    assert!(check_destination(&p, &name("registry.npmjs.org"), 443).is_ok());
    assert!(check_destination(&p, &name("a.b.npmjs.org"), 443).is_ok());
    assert!(check_destination(&p, &name("git.example"), 2222).is_ok());
    // the bare suffix, look-alikes and other ports are refused
    for (host, port) in [
        ("npmjs.org", 443),
        ("evilnpmjs.org", 443),
        ("crates.io.evil.com", 443),
        ("git.example", 443),
    ] {
        assert!(check_destination(&p, &name(host), port).is_err(), "{host}");
    }
    let r = check_destination(&p, &name("crates.io"), 22).unwrap_err();
    assert_eq!(r.reason, "port 22 is not allowed for crates.io");
    assert_eq!(r.how_to_allow, "add --allow-host crates.io:22");
}

#[test]
fn unknown_host_refusal_names_the_flag_that_allows_it() {
    let r = check_destination(&pats(&["crates.io"]), &name("evil.com"), 443).unwrap_err();
    assert_eq!(r.target, "evil.com:443");
    assert_eq!(r.reason, "not in the allowed hosts");
    assert_eq!(r.how_to_allow, "add --allow-host evil.com");
    let d = r.to_denied();
    assert_eq!(d.kind, DenialKind::Network);
}

#[test]
fn ip_literals_need_a_literal_entry() {
    let p = pats(&["*.example.org", "93.184.215.14"]);
    let ip = |s: &str| Host::Ip(s.parse().unwrap());
    assert!(check_destination(&p, &ip("93.184.215.14"), 443).is_ok());
    let r = check_destination(&p, &ip("1.1.1.1"), 443).unwrap_err();
    assert!(r.reason.contains("allowed literally"), "{r:?}");
    assert_eq!(r.how_to_allow, "add --allow-host 1.1.1.1");
    let r = check_destination(&p, &ip("::1"), 8080).unwrap_err();
    assert_eq!(r.how_to_allow, "add --allow-host '[::1]:8080'");
}

#[test]
fn private_resolutions_are_refused_unless_allowed_literally() {
    let host = name("registry.example");
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let metadata: IpAddr = "169.254.169.254".parse().unwrap();
    let public: IpAddr = "93.184.215.14".parse().unwrap();
    let p = pats(&["registry.example"]);
    for private in [
        loopback,
        metadata,
        "10.1.2.3".parse().unwrap(),
        "::ffff:127.0.0.1".parse().unwrap(),
    ] {
        let r = choose_address(&p, &host, 443, &[private]).unwrap_err();
        assert!(r.reason.contains("private"), "{private}: {r:?}");
    }
    // a public address among private ones is chosen
    assert_eq!(
        choose_address(&p, &host, 443, &[loopback, public]).unwrap(),
        SocketAddr::new(public, 443)
    );
    // the literal entry opens exactly that address
    let p = pats(&["registry.example", "127.0.0.1"]);
    assert!(choose_address(&p, &host, 443, &[loopback]).is_ok());
    assert!(choose_address(&p, &host, 443, &[metadata]).is_err());
    // `localhost` names loopback: it may reach it, a wildcard never does
    let p = pats(&["localhost:8080", "*.example"]);
    assert!(choose_address(&p, &name("localhost"), 8080, &[loopback]).is_ok());
    assert!(choose_address(&p, &name("a.example"), 443, &[loopback]).is_err());
    assert!(choose_address(&p, &host, 443, &[]).is_err());
}

#[test]
fn public_address_classification() {
    for a in ["8.8.8.8", "2606:4700::1111", "93.184.215.14"] {
        assert!(is_public(a.parse().unwrap()), "{a}");
    }
    for a in [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(!is_public(a.parse().unwrap()), "{a}");
    }
}
