//! The relay's reading of signed agent → relay requests (`katachi_proto::signed_request`, what
//! `katachi-relay`'s `agent_api.rs` runs before any database work), on arbitrary request heads
//! and bodies (`request_text.rs` format). Beyond "never panics", every input checks:
//! - an accepted request's fields are single lines, its nonce is 32 hex digits, and every field
//!   is the header's text exactly: the timestamp header is the decimal text that is signed;
//! - its canonical string has exactly the six lines of the design, each the request's own field,
//!   so no two requests share one (no field can smuggle a line break);
//! - signed with the right secret, it verifies exactly when its timestamp is within ±30 s of the
//!   relay's clock (else `Stale`/`Future` with the true skew), and not with another body, secret
//!   or the fuzzer's own signature (unless that is the right MAC);
//! - a refusal names one of the signing headers, with a code the agent knows.
//!
//! Seeds (`corpus/signed_request/seed-*`, made by `fuzz/make_seeds.py`) are well-signed heads at
//! the fuzz clock and variants missing, malformed or skewed.

#![no_main]

#[path = "request_text.rs"]
mod request_text;

use axum::http::HeaderValue;
use katachi_proto::relay_error::RelayErrorCode;
use katachi_proto::signed_request::{SignedRequest, HEADER_AUTHORIZATION};
use katachi_proto::signing::{
    sign, SignatureError, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    MAX_SKEW_SECS,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

use request_text::is_single_line;

/// The relay's clock in this target (the seeds are signed at it).
const NOW: i64 = 1_700_000_000;
/// The agent's signing secret in this target.
const SECRET: &[u8] = b"fuzz-agent-signing-secret";

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = request_text::parse(data) else {
        return;
    };
    let signed = match SignedRequest::parse(&head) {
        Ok(signed) => signed,
        Err(e) => return check_refusal(&e),
    };

    // Every field is a single line of the header's own text.
    let text = |name: &str| head.headers.get(name).map(HeaderValue::as_bytes);
    for field in [
        signed.agent_id(),
        signed.nonce(),
        signed.bearer_token(),
        head.method.as_str(),
    ] {
        assert!(
            is_single_line(field.as_bytes()),
            "a field spans lines: {field:?}"
        );
    }
    assert_eq!(text(HEADER_AGENT_ID), Some(signed.agent_id().as_bytes()));
    assert_eq!(text(HEADER_NONCE), Some(signed.nonce().as_bytes()));
    assert!(signed.nonce().len() == 32 && signed.nonce().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(signed.replay_key(), signed.nonce().to_ascii_lowercase());
    assert_eq!(
        text(HEADER_AUTHORIZATION).map(|v| &v[7..]),
        Some(signed.bearer_token().as_bytes())
    );
    let timestamp = signed.timestamp().to_string();
    assert_eq!(
        text(HEADER_TIMESTAMP),
        Some(timestamp.as_bytes()),
        "the timestamp accepted is not the text that is signed"
    );

    // The canonical string: six lines, each the request's own field.
    let parts = signed.signed_parts(body);
    let canonical = parts.canonical_string();
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let body_hash = hex::encode(Sha256::digest(body));
    let method = head.method.as_str().to_ascii_uppercase();
    let lines: Vec<&str> = canonical.split('\n').collect();
    assert_eq!(
        lines,
        ["v1", &method, path, &timestamp, signed.nonce(), &body_hash],
        "the canonical string is not one line per field"
    );

    // The fuzzer's own signature verifies only if it is the right MAC, never outside the window.
    let right = sign(SECRET, &parts);
    let given = head
        .headers
        .get(HEADER_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let skew = signed.timestamp().saturating_sub(NOW);
    let in_window = (-MAX_SKEW_SECS..=MAX_SKEW_SECS).contains(&skew);
    match signed.verify(SECRET, body, NOW) {
        Ok(()) => {
            assert!(in_window, "verified outside the window: skew {skew}");
            assert!(
                given.eq_ignore_ascii_case(&right),
                "verified a wrong signature"
            );
        }
        Err(e) => check_window_error(&e, skew),
    }

    // The same request with the right signature: verifies exactly inside the window.
    let mut resigned = head.clone();
    let Ok(value) = HeaderValue::from_str(&right) else {
        panic!("a hex signature is a header value");
    };
    resigned.headers.insert(HEADER_SIGNATURE, value);
    let Ok(again) = SignedRequest::parse(&resigned) else {
        panic!("replacing the signature made the request unreadable");
    };
    match again.verify(SECRET, body, NOW) {
        Ok(()) => assert!(in_window, "verified outside the window: skew {skew}"),
        Err(e) => {
            assert!(
                !in_window,
                "a right signature inside the window was refused: {e}"
            );
            check_window_error(&e, skew);
        }
    }
    if in_window {
        let mut other_body = body.to_vec();
        other_body.push(b'x');
        assert_eq!(
            again.verify(SECRET, &other_body, NOW),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            again.verify(b"another secret", body, NOW),
            Err(SignatureError::BadSignature)
        );
    }
});

/// A refusal of `verify` for a request `skew` seconds off the relay's clock.
fn check_window_error(e: &SignatureError, skew: i64) {
    match e {
        SignatureError::Stale { skew_secs } => {
            assert!(
                skew < -MAX_SKEW_SECS && *skew_secs == skew.saturating_neg(),
                "{e}"
            )
        }
        SignatureError::Future { skew_secs } => {
            assert!(skew > MAX_SKEW_SECS && *skew_secs == skew, "{e}")
        }
        // the window is checked first: a signature is only looked at inside it
        SignatureError::BadSignature => assert!((-MAX_SKEW_SECS..=MAX_SKEW_SECS).contains(&skew)),
        SignatureError::MalformedHeader(name) => {
            assert_eq!(*name, HEADER_SIGNATURE);
            assert!((-MAX_SKEW_SECS..=MAX_SKEW_SECS).contains(&skew));
        }
        other => panic!("verify gave a refusal only the database can give: {other}"),
    }
}

/// A refusal of `parse`: one of the signing headers, with a code the agent knows.
fn check_refusal(e: &SignatureError) {
    let headers = [
        HEADER_AGENT_ID,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
        HEADER_AUTHORIZATION,
    ];
    match e {
        SignatureError::MissingHeader(name) | SignatureError::MalformedHeader(name) => {
            assert!(headers.contains(name), "refused naming {name}")
        }
        other => panic!("parse gave a refusal it cannot know: {other}"),
    }
    assert!(
        !matches!(RelayErrorCode::parse(e.code()), RelayErrorCode::Unknown(_)),
        "{} is not a code the agent knows",
        e.code()
    );
}
