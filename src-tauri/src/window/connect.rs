//! The Connect view's Rust side: relay URLs and `katachi://` links validated here (never in the
//! webview), and the QR code of the verification URL drawn as SVG.
//!
//! # Links
//! The only link is `katachi://connect?relay=https://host[:port]`. A link only *fills in* the
//! Connect view: the user is asked before anything happens, and a sign-in never starts by itself.
//! Anything else (another action, other parameters, a relay that is not `https://`) is refused with
//! a sentence saying what is wrong.

use katachi_core::RelayUrl;
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Serialize;

use super::ipc_error::IpcError;

/// The scheme the app registers.
pub const LINK_SCHEME: &str = "katachi";
/// Longest link or URL accepted (a relay URL is far shorter).
const MAX_LINK_LEN: usize = 2048;

/// What a valid `katachi://connect` link asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectLink {
    /// The relay to fill in (normalised).
    pub relay: String,
}

/// Validates and normalises a relay URL typed by the user or given by a link.
///
/// # Errors
/// [`IpcError::invalid`] with the reason.
pub fn relay_url(input: &str) -> Result<RelayUrl, IpcError> {
    if input.len() > MAX_LINK_LEN {
        return Err(IpcError::invalid("the relay URL is too long"));
    }
    RelayUrl::parse(input).map_err(|err| IpcError::invalid(err.to_string()))
}

/// Reads a `katachi://connect?relay=…` link.
///
/// # Errors
/// [`IpcError::invalid`] saying what is wrong with the link.
pub fn parse_link(link: &str) -> Result<ConnectLink, IpcError> {
    if link.len() > MAX_LINK_LEN {
        return Err(IpcError::invalid(
            "the link is too long to be a Katachi link",
        ));
    }
    let url = url::Url::parse(link)
        .map_err(|err| IpcError::invalid(format!("the link is not a URL: {err}")))?;
    if url.scheme() != LINK_SCHEME {
        return Err(IpcError::invalid(format!(
            "not a Katachi link: it starts with {}:// instead of {LINK_SCHEME}://",
            url.scheme()
        )));
    }
    if url.host_str() != Some("connect") || !matches!(url.path(), "" | "/") {
        return Err(IpcError::invalid(
            "unknown Katachi link: the only link is katachi://connect?relay=https://…",
        ));
    }
    if url.fragment().is_some() || !url.username().is_empty() {
        return Err(IpcError::invalid(
            "the Katachi link carries unexpected parts",
        ));
    }
    let mut relay = None;
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), &relay) {
            ("relay", None) => relay = Some(value.into_owned()),
            ("relay", Some(_)) => {
                return Err(IpcError::invalid("the Katachi link names the relay twice"))
            }
            (other, _) => {
                return Err(IpcError::invalid(format!(
                    "the Katachi link has an unknown parameter {other:?}"
                )))
            }
        }
    }
    let relay = relay.ok_or_else(|| IpcError::invalid("the Katachi link names no relay"))?;
    let relay = relay_url(&relay)?;
    Ok(ConnectLink {
        relay: relay.as_str().to_owned(),
    })
}

/// The QR code of `url` (an `https://` URL) as a standalone SVG document.
///
/// # Errors
/// [`IpcError::invalid`] for anything but a short `https://` URL.
pub fn qr_svg(url: &str) -> Result<String, IpcError> {
    if url.len() > MAX_LINK_LEN || !url.starts_with("https://") {
        return Err(IpcError::invalid(
            "only an https:// verification URL is drawn as a QR code",
        ));
    }
    let code = QrCode::new(url.as_bytes())
        .map_err(|err| IpcError::invalid(format!("cannot draw this URL as a QR code: {err}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_link_gives_the_normalised_relay() -> Result<(), IpcError> {
        let link = parse_link("katachi://connect?relay=https://relay.example:8443/")?;
        assert_eq!(link.relay, "https://relay.example:8443");
        let encoded = parse_link("katachi://connect/?relay=https%3A%2F%2Frelay.example")?;
        assert_eq!(encoded.relay, "https://relay.example");
        Ok(())
    }

    #[test]
    fn bad_links_are_refused_with_what_is_wrong() {
        let cases = [
            ("https://relay.example", "instead of katachi://"),
            (
                "katachi://sign-in?relay=https://r.example",
                "unknown Katachi link",
            ),
            ("katachi://connect", "names no relay"),
            ("katachi://connect?relay=http://r.example", "not https://"),
            (
                "katachi://connect?relay=https://r.example&go=1",
                "unknown parameter",
            ),
            (
                "katachi://connect?relay=https://a.example&relay=https://b.example",
                "twice",
            ),
            (
                "katachi://connect?relay=https://r.example#x",
                "unexpected parts",
            ),
            ("not a link", "not a URL"),
        ];
        for (link, expected) in cases {
            let err = parse_link(link).expect_err(link);
            assert!(err.message.contains(expected), "{link}: {}", err.message);
        }
        let long = format!("katachi://connect?relay=https://{}", "a".repeat(3000));
        assert!(parse_link(&long).is_err());
    }

    #[test]
    fn the_qr_code_is_an_svg_and_only_for_https_urls() -> Result<(), IpcError> {
        let svg = qr_svg("https://relay.example/device?user_code=ABCD-EFGH")?;
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("#000000"));
        assert!(qr_svg("javascript:alert(1)").is_err());
        assert!(qr_svg("http://relay.example/device").is_err());
        Ok(())
    }
}
