//! Unit tests of `config.rs`: flags into a configuration, refusals, redaction.
use super::*;

fn github_with(auth_base: &str) -> anyhow::Result<RelayConfig> {
    Args::try_parse_from([
        "katachi-relay",
        "--github-client-id",
        "id",
        "--github-client-secret",
        "secret",
        "--github-auth-base",
        auth_base,
    ])?
    .into_config()
}

#[test]
fn provider_endpoints_are_https_or_loopback_http() {
    assert!(github_with("https://github.com").is_ok());
    assert!(github_with("http://127.0.0.1:8080").is_ok());
    assert!(github_with("http://localhost:8080").is_ok());
    for bad in ["http://github.com", "ftp://127.0.0.1", "not a url"] {
        assert!(github_with(bad).is_err(), "{bad}");
    }
}

#[test]
fn smtp_passwords_stay_out_of_debug_output_and_from_needs_a_server() {
    let config = Args::try_parse_from([
        "katachi-relay",
        "--smtp-url",
        "smtps://relay:hunter2@mail.example.com:465",
        "--smtp-from",
        "katachi@example.com",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("mail.example.com"),
        "{shown}"
    );
    assert!(Args::try_parse_from(["katachi-relay", "--smtp-from", "k@example.com"]).is_err());
}

#[test]
fn private_mcp_addresses_are_refused_unless_the_flag_allows_them() {
    let default = Args::try_parse_from(["katachi-relay"])
        .unwrap()
        .into_config()
        .unwrap();
    assert!(!default.mcp.allow_private_addresses);
    let allowed = Args::try_parse_from(["katachi-relay", "--mcp-allow-private-addresses"])
        .unwrap()
        .into_config()
        .unwrap();
    assert!(allowed.mcp.allow_private_addresses);
}

fn metrics_listen(flags: &[&str]) -> anyhow::Result<Option<SocketAddr>> {
    let mut argv = vec!["katachi-relay"];
    argv.extend_from_slice(flags);
    Ok(Args::try_parse_from(argv)?.into_config()?.metrics_listen)
}

#[test]
fn metrics_listen_on_loopback_by_default_and_never_on_the_public_port() {
    assert_eq!(
        metrics_listen(&[]).unwrap(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(metrics_listen(&["--metrics-listen", "off"]).unwrap(), None);
    assert_eq!(
        metrics_listen(&["--metrics-listen", "127.0.0.1:9100"]).unwrap(),
        Some("127.0.0.1:9100".parse().unwrap())
    );
    for clash in [
        [
            "--listen",
            "127.0.0.1:8443",
            "--metrics-listen",
            "127.0.0.1:8443",
        ],
        [
            "--listen",
            "0.0.0.0:8443",
            "--metrics-listen",
            "127.0.0.1:8443",
        ],
        [
            "--listen",
            "127.0.0.1:8443",
            "--metrics-listen",
            "0.0.0.0:8443",
        ],
    ] {
        let err = metrics_listen(&clash).unwrap_err().to_string();
        assert!(err.contains("never served on the public port"), "{err}");
    }
    // Another address on the same port is another socket.
    assert!(metrics_listen(&[
        "--listen",
        "127.0.0.1:8443",
        "--metrics-listen",
        "127.0.0.2:8443"
    ])
    .is_ok());
    assert!(metrics_listen(&["--metrics-listen", "everywhere"]).is_err());
}

#[test]
fn flags_alone_serve_and_the_subcommand_takes_only_its_own_flags() {
    let serve = Args::try_parse_from(["katachi-relay", "--listen", "127.0.0.1:9000"]).unwrap();
    assert!(serve.command.is_none());
    let rotate = Args::try_parse_from([
        "katachi-relay",
        "rotate-master-key",
        "--new-key-file",
        "/tmp/new.key",
    ])
    .unwrap();
    assert!(matches!(rotate.command, Some(Command::RotateMasterKey(_))));
    assert!(Args::try_parse_from([
        "katachi-relay",
        "--listen",
        "127.0.0.1:9000",
        "rotate-master-key",
        "--new-key-file",
        "/tmp/new.key",
    ])
    .is_err());
    let json = Args::try_parse_from(["katachi-relay", "--log-format", "json"]).unwrap();
    assert_eq!(json.log_format, LogFormat::Json);
    assert!(Args::try_parse_from(["katachi-relay", "--log-format", "xml"]).is_err());
}

#[test]
fn a_wildcard_internal_listener_needs_an_advertised_address() {
    let parse = |args: &[&str]| {
        Args::try_parse_from(std::iter::once("katachi-relay").chain(args.iter().copied()))
            .map_err(anyhow::Error::from)
            .and_then(Args::into_config)
    };
    assert!(parse(&["--internal-listen", "0.0.0.0:7443"]).is_err());
    assert!(parse(&[
        "--internal-listen",
        "0.0.0.0:7443",
        "--internal-advertise",
        "nope"
    ])
    .is_err());
    let ok = parse(&[
        "--internal-listen",
        "0.0.0.0:7443",
        "--internal-advertise",
        "10.0.0.5:7443",
    ])
    .unwrap();
    assert_eq!(
        ok.internal.unwrap().advertise.as_deref(),
        Some("10.0.0.5:7443")
    );
    let plain = parse(&["--internal-listen", "127.0.0.1:7443"]).unwrap();
    assert!(plain.internal.unwrap().advertise.is_none());
    assert!(parse(&[]).unwrap().internal.is_none());
}

#[test]
fn trusted_proxies_are_repeatable_or_comma_separated_and_bad_ones_refused() {
    let config = Args::try_parse_from([
        "katachi-relay",
        "--trusted-proxy",
        "10.0.0.0/8,127.0.0.1",
        "--trusted-proxy",
        "2001:db8::/32",
        "--client-address-header",
        "forwarded",
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let shown: Vec<String> = config
        .trusted_proxies
        .nets()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]);
    assert_eq!(
        config.trusted_proxies.header(),
        crate::client_ip::ForwardedHeader::Forwarded
    );
    let default = Args::try_parse_from(["katachi-relay"])
        .unwrap()
        .into_config()
        .unwrap();
    assert!(default.trusted_proxies.nets().is_empty());
    let bad = Args::try_parse_from(["katachi-relay", "--trusted-proxy", "proxy.example"])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not an address or CIDR"), "{bad}");
}

#[test]
fn provider_secrets_stay_out_of_debug_output() {
    let config = github_with("https://github.com").unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains("<redacted>") && !shown.contains("\"secret\""),
        "{shown}"
    );
}
