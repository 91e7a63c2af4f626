//! What the request-head targets share: an HTTP request head written as text, so mutation works on
//! methods, URIs and header bytes without having to keep an HTTP/1 or HPACK encoding valid.
//!
//! ```text
//! METHOD URI
//! name: value
//! …
//!
//! body
//! ```
//! Lines end with `\n`; a value is taken byte for byte after `:` and leading spaces, so it may be
//! any bytes the `http` types accept (`HeaderValue::from_bytes` refuses CR, LF, NUL and the other
//! controls but tab, as hyper's parser does). A head the `http` types refuse is no input for the
//! relay's code: `parse` gives `None`, as hyper would answer `400` before any handler runs.

use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request};

/// The head and the body of `data`; `None` when the head is no HTTP request.
pub fn parse(data: &[u8]) -> Option<(Parts, &[u8])> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let (method, uri) = first.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(uri);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = &line[colon + 1..];
        let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
        let value = HeaderValue::from_bytes(&value[start..]).ok()?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    Some((parts, body))
}

/// True when `bytes` holds nothing that could end or split a header line (CR, LF, NUL).
pub fn is_single_line(bytes: &[u8]) -> bool {
    !bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}
