//! Reading the hops a forwarding header names: `X-Forwarded-For` (comma-separated addresses) and
//! RFC 7239 `Forwarded` (`for=` parameters of comma-separated elements).
//!
//! Both give the hops in order, farthest (the original client) first; the caller walks them from
//! the right. Parsing is strict about what it returns and lenient only where it is harmless: a
//! port after an address is dropped, empty list elements are skipped, an unquoted `Forwarded`
//! value may hold `:`, `[` and `]` (`for=192.0.2.7:4711` is common even though RFC 7239 asks for
//! quotes). Anything else that does not read as an address is an error, and the caller falls back
//! to the TCP peer.
//!
//! Written here rather than taken from a crate: the `Forwarded` parsers on crates.io split on `,`
//! and `;` inside quoted strings and strip quotes loosely, and the grammar (RFC 7239 §4 over RFC
//! 9110's lists, tokens and quoted strings) is small.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::header::GetAll;
use axum::http::HeaderValue;

/// One hop named in a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// An address (any port dropped).
    Ip(IpAddr),
    /// `unknown` or an obfuscated identifier (`_hidden`): a hop whose address nobody told.
    Hidden,
}

/// Why a forwarding header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    /// The header holds bytes that are not visible ASCII.
    #[error("the header is not plain text")]
    NotText,
    /// An element that is neither an address (with an optional port), `unknown`, nor an
    /// obfuscated identifier.
    #[error("{0:?} is not an address")]
    NotAnAddress(String),
    /// `Forwarded` syntax is broken (an unclosed quote, a missing `=`, a stray character).
    #[error("malformed Forwarded header: {0}")]
    Malformed(&'static str),
    /// A `Forwarded` element without a `for=` parameter, or with two.
    #[error("a Forwarded element must have exactly one for= parameter")]
    ForParameter,
}

/// The hops of every `X-Forwarded-For` line, farthest first (lines joined as one list). Elements
/// are parsed only when the caller reaches them, so junk a client put on the left is never read
/// once an untrusted hop to its right was found.
pub(crate) fn x_forwarded_for(
    lines: GetAll<'_, HeaderValue>,
) -> Result<Vec<Result<Hop, HeaderError>>, HeaderError> {
    let mut hops = Vec::new();
    for line in lines {
        let text = line.to_str().map_err(|_| HeaderError::NotText)?;
        for element in text.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if !element.is_empty() {
                hops.push(parse_node(element));
            }
        }
    }
    Ok(hops)
}

/// The `for=` hops of every `Forwarded` line, farthest first. The whole header must parse: a quote
/// left open on the left would otherwise swallow the commas of the proxies' own elements.
pub(crate) fn forwarded(
    lines: GetAll<'_, HeaderValue>,
) -> Result<Vec<Result<Hop, HeaderError>>, HeaderError> {
    let mut hops = Vec::new();
    for line in lines {
        let text = line.to_str().map_err(|_| HeaderError::NotText)?;
        for element in forwarded_elements(text)? {
            let mut fors = element
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("for"));
            let (Some((_, value)), None) = (fors.next(), fors.next()) else {
                return Err(HeaderError::ForParameter);
            };
            hops.push(parse_node(value));
        }
    }
    Ok(hops)
}

/// One node as `X-Forwarded-For` and `Forwarded: for=` write it: `192.0.2.7`, `192.0.2.7:4711`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `unknown`, `_hidden` (ports may be
/// obfuscated too: `192.0.2.7:_p1`).
pub(crate) fn parse_node(node: &str) -> Result<Hop, HeaderError> {
    let bad = || HeaderError::NotAnAddress(node.chars().take(64).collect());
    if node.eq_ignore_ascii_case("unknown") {
        return Ok(Hop::Hidden);
    }
    if let Some(name) = node.strip_prefix('_') {
        return if is_obfuscated(name) {
            Ok(Hop::Hidden)
        } else {
            Err(bad())
        };
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Ok(Hop::Ip(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| bad())?;
        return if after.is_empty() || after.strip_prefix(':').is_some_and(is_port) {
            Ok(Hop::Ip(IpAddr::V6(ip)))
        } else {
            Err(bad())
        };
    }
    let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
    let ip: Ipv4Addr = host.parse().map_err(|_| bad())?;
    if is_port(port) {
        Ok(Hop::Ip(IpAddr::V4(ip)))
    } else {
        Err(bad())
    }
}

/// A port number or an obfuscated port (`_` and 1+ of ALPHA / DIGIT / `.` / `_` / `-`).
fn is_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(name) => is_obfuscated(name),
        None => {
            (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
        }
    }
}

/// RFC 7239 §6.3: the part after `_` of an obfuscated node or port.
fn is_obfuscated(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A `Forwarded` element: its `name=value` pairs, values unquoted.
type Element = Vec<(String, String)>;

/// Splits one `Forwarded` line into elements (RFC 7239 §4: `#forwarded-element`, each
/// `forwarded-pair *( ";" forwarded-pair )`), honouring quoted strings.
fn forwarded_elements(text: &str) -> Result<Vec<Element>, HeaderError> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut elements = Vec::new();
    let mut current: Element = Vec::new();
    loop {
        at = skip_whitespace(bytes, at);
        let Some(&first) = bytes.get(at) else { break };
        if first == b',' {
            // An empty list element (`a, ,b`): allowed by the list syntax.
            at += 1;
            continue;
        }
        let name_end = scan(bytes, at, is_tchar);
        if name_end == at {
            return Err(HeaderError::Malformed("a parameter name was expected"));
        }
        let name = &text[at..name_end];
        if bytes.get(name_end) != Some(&b'=') {
            return Err(HeaderError::Malformed("a parameter without `=`"));
        }
        at = name_end + 1;
        let value;
        (value, at) = if bytes.get(at) == Some(&b'"') {
            quoted_string(text, at + 1)?
        } else {
            let end = scan(bytes, at, |b| {
                is_tchar(b) || matches!(b, b':' | b'[' | b']')
            });
            if end == at {
                return Err(HeaderError::Malformed("a parameter without a value"));
            }
            (text[at..end].to_owned(), end)
        };
        current.push((name.to_owned(), value));
        at = skip_whitespace(bytes, at);
        match bytes.get(at) {
            Some(b';') => at += 1,
            Some(b',') => {
                elements.push(std::mem::take(&mut current));
                at += 1;
            }
            None => break,
            Some(_) => return Err(HeaderError::Malformed("a stray character after a value")),
        }
    }
    if !current.is_empty() {
        elements.push(current);
    }
    Ok(elements)
}

/// The content of a quoted string whose opening quote ends just before `start`, and the index
/// after its closing quote.
fn quoted_string(text: &str, start: usize) -> Result<(String, usize), HeaderError> {
    let bytes = text.as_bytes();
    let mut value = String::new();
    let mut at = start;
    loop {
        match bytes.get(at) {
            None => return Err(HeaderError::Malformed("a quoted string is not closed")),
            Some(b'"') => return Ok((value, at + 1)),
            Some(b'\\') => {
                let escaped = bytes
                    .get(at + 1)
                    .ok_or(HeaderError::Malformed("a quoted string is not closed"))?;
                value.push(char::from(*escaped));
                at += 2;
            }
            Some(&b) => {
                value.push(char::from(b));
                at += 1;
            }
        }
    }
}

/// The index of the first byte at or after `at` that is not optional whitespace.
fn skip_whitespace(bytes: &[u8], at: usize) -> usize {
    scan(bytes, at, |b| b == b' ' || b == b'\t')
}

/// The index of the first byte at or after `at` for which `keep` is false.
fn scan(bytes: &[u8], at: usize, keep: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| !keep(b)))
        .map_or(bytes.len(), |n| at + n)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
