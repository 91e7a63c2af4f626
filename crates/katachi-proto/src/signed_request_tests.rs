use http::request::Parts;
use http::Request;

use super::*;
use crate::signing::sign;

const NOW: i64 = 1_700_000_000;
const NONCE: &str = "00112233445566778899aabbccddeeff";
const SECRET: &[u8] = b"per-agent-secret";
const BODY: &[u8] = br#"{"version":"1","workspaces":1}"#;

/// A head with every signing header, `replace` overriding (or, with `None`, dropping) some.
fn head(replace: &[(&str, Option<&str>)]) -> Parts {
    let parts = SignedParts {
        method: "POST",
        path_and_query: "/api/agent/heartbeat?x=1",
        timestamp: NOW,
        nonce: NONCE,
        body: BODY,
    };
    let signature = sign(SECRET, &parts);
    let timestamp = NOW.to_string();
    let mut headers = vec![
        (HEADER_AGENT_ID, Some("agt_1")),
        (HEADER_TIMESTAMP, Some(timestamp.as_str())),
        (HEADER_NONCE, Some(NONCE)),
        (HEADER_SIGNATURE, Some(signature.as_str())),
        (HEADER_AUTHORIZATION, Some("Bearer tok")),
    ];
    for (name, value) in replace {
        if let Some(slot) = headers.iter_mut().find(|(n, _)| n == name) {
            slot.1 = *value;
        }
    }
    let mut builder = Request::post("/api/agent/heartbeat?x=1");
    for (name, value) in headers {
        if let Some(value) = value {
            builder = builder.header(name, value);
        }
    }
    builder.body(()).unwrap().into_parts().0
}

#[test]
fn a_well_signed_request_parses_and_verifies() {
    let head = head(&[]);
    let signed = SignedRequest::parse(&head).unwrap();
    assert_eq!(signed.agent_id(), "agt_1");
    assert_eq!(signed.timestamp(), NOW);
    assert_eq!(signed.nonce(), NONCE);
    assert_eq!(signed.bearer_token(), "tok");
    assert_eq!(signed.verify(SECRET, BODY, NOW + 30), Ok(()));
    let body_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(BODY));
    assert_eq!(
        signed.signed_parts(BODY).canonical_string(),
        format!("v1\nPOST\n/api/agent/heartbeat?x=1\n{NOW}\n{NONCE}\n{body_hash}")
    );
}

#[test]
fn the_first_missing_header_is_named_in_the_relays_order() {
    let order = [
        HEADER_AGENT_ID,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
        HEADER_AUTHORIZATION,
    ];
    for (i, missing) in order.iter().enumerate() {
        // everything from `missing` on is absent: the first of them is the one reported
        let dropped: Vec<_> = order[i..].iter().map(|n| (*n, None)).collect();
        let head = head(&dropped);
        assert_eq!(
            SignedRequest::parse(&head).unwrap_err(),
            SignatureError::MissingHeader(missing)
        );
    }
}

#[test]
fn malformed_headers_are_refused_by_name() {
    let cases = [
        (HEADER_TIMESTAMP, "soon", HEADER_TIMESTAMP),
        (HEADER_TIMESTAMP, "99999999999999999999", HEADER_TIMESTAMP),
        (HEADER_NONCE, "short", HEADER_NONCE),
        (
            HEADER_NONCE,
            "zz112233445566778899aabbccddeeff",
            HEADER_NONCE,
        ),
        (HEADER_AUTHORIZATION, "Basic dG9r", HEADER_AUTHORIZATION),
        (HEADER_AUTHORIZATION, "bearer tok", HEADER_AUTHORIZATION),
    ];
    for (name, value, reported) in cases {
        let head = head(&[(name, Some(value))]);
        assert_eq!(
            SignedRequest::parse(&head).unwrap_err(),
            SignatureError::MalformedHeader(reported),
            "{name}: {value}"
        );
    }
}

#[test]
fn a_timestamp_spelt_otherwise_than_it_is_signed_is_malformed() {
    // the fuzz target `signed_request` found `0850000000` accepted as 850000000: the header text
    // must be the text in the canonical string
    let spellings = [
        format!("0{NOW}"),
        format!("+{NOW}"),
        format!("00{NOW}"),
        "-0".to_owned(),
        "0850000000".to_owned(),
    ];
    for text in &spellings {
        let head = head(&[(HEADER_TIMESTAMP, Some(text.as_str()))]);
        assert_eq!(
            SignedRequest::parse(&head).unwrap_err(),
            SignatureError::MalformedHeader(HEADER_TIMESTAMP),
            "{text}"
        );
    }
    for text in ["0", "-1", "850000000"] {
        let head = head(&[(HEADER_TIMESTAMP, Some(text))]);
        assert_eq!(
            SignedRequest::parse(&head).unwrap().timestamp().to_string(),
            text
        );
    }
}

#[test]
fn a_header_that_is_not_visible_ascii_is_malformed() {
    let mut head = head(&[]);
    head.headers.insert(
        HEADER_AGENT_ID,
        http::HeaderValue::from_bytes("agt_\u{e9}".as_bytes()).unwrap(),
    );
    assert_eq!(
        SignedRequest::parse(&head).unwrap_err(),
        SignatureError::MalformedHeader(HEADER_AGENT_ID)
    );
}

#[test]
fn the_window_is_checked_before_the_signature() {
    let head = head(&[(HEADER_SIGNATURE, Some("not hex"))]);
    let signed = SignedRequest::parse(&head).unwrap();
    assert_eq!(
        signed.verify(SECRET, BODY, NOW + 31),
        Err(SignatureError::Stale { skew_secs: 31 })
    );
    assert_eq!(
        signed.verify(SECRET, BODY, NOW - 31),
        Err(SignatureError::Future { skew_secs: 31 })
    );
    assert_eq!(
        signed.verify(SECRET, BODY, NOW),
        Err(SignatureError::MalformedHeader(HEADER_SIGNATURE))
    );
}

#[test]
fn an_altered_body_or_wrong_secret_is_a_bad_signature() {
    let head = head(&[]);
    let signed = SignedRequest::parse(&head).unwrap();
    assert_eq!(
        signed.verify(SECRET, b"{}", NOW),
        Err(SignatureError::BadSignature)
    );
    assert_eq!(
        signed.verify(b"other", BODY, NOW),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn nonces_differing_in_case_share_one_replay_key() {
    let upper = NONCE.to_ascii_uppercase();
    let head = head(&[(HEADER_NONCE, Some(upper.as_str()))]);
    let signed = SignedRequest::parse(&head).unwrap();
    assert_eq!(signed.nonce(), upper);
    assert_eq!(signed.replay_key(), NONCE);
}

#[test]
fn debug_output_leaves_the_token_and_signature_out() {
    let head = head(&[(HEADER_AUTHORIZATION, Some("Bearer s3cr3t-token"))]);
    let shown = format!("{:?}", SignedRequest::parse(&head).unwrap());
    assert!(shown.contains("agt_1"));
    assert!(!shown.contains("s3cr3t-token"));
    assert!(!shown.contains(&sign(
        SECRET,
        &SignedRequest::parse(&head).unwrap().signed_parts(BODY)
    )));
}
