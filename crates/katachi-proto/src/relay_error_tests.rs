use super::*;
use crate::device::TokenErrorCode;
use crate::signing::SignatureError;

/// The classification of every code, written out by hand: changing one is a visible decision.
const PINNED: &[(&str, Disposition)] = &[
    ("signature.missing_header", Disposition::Fatal),
    ("signature.malformed_header", Disposition::Fatal),
    ("signature.stale_timestamp", Disposition::Retryable),
    ("signature.future_timestamp", Disposition::Retryable),
    ("signature.replayed_nonce", Disposition::Retryable),
    ("signature.bad_signature", Disposition::NeedsSignIn),
    ("agent.unknown", Disposition::NeedsSignIn),
    ("agent.revoked", Disposition::NeedsSignIn),
    ("request.malformed_json", Disposition::Fatal),
    ("request.too_large", Disposition::Fatal),
    ("request.invalid", Disposition::Fatal),
    ("request.too_many_events", Disposition::Fatal),
    ("request.invalid_event", Disposition::Fatal),
    ("internal", Disposition::Retryable),
    ("relay.database_unavailable", Disposition::Retryable),
    // the MCP calls: final for the call, the model is told why
    ("mcp.server_unknown", Disposition::Fatal),
    ("mcp.not_remote", Disposition::Fatal),
    ("mcp.misconfigured", Disposition::Fatal),
    ("mcp.address_refused", Disposition::Fatal),
    ("mcp.unreachable", Disposition::Fatal),
    ("mcp.timeout", Disposition::Fatal),
    ("mcp.server_error", Disposition::Fatal),
    ("mcp.tool_failed", Disposition::Fatal),
    ("mcp.result_too_large", Disposition::Fatal),
    ("tunnel.upgrade_required", Disposition::Fatal),
    ("tunnel.not_upgradable", Disposition::Fatal),
    ("tunnel.websocket_invalid", Disposition::Fatal),
    ("session.required", Disposition::Fatal),
    ("request.cross_origin", Disposition::Fatal),
    ("agent.not_found", Disposition::Fatal),
    ("agent.offline", Disposition::Retryable),
    ("agent.unreachable", Disposition::Retryable),
    ("request.ended", Disposition::Retryable),
    ("agent.timeout", Disposition::Retryable),
    ("agent.invalid_response", Disposition::Fatal),
    ("agent.busy", Disposition::Retryable),
    ("authorization_pending", Disposition::Retryable),
    ("slow_down", Disposition::Retryable),
    ("access_denied", Disposition::NeedsSignIn),
    ("expired_token", Disposition::NeedsSignIn),
    ("invalid_grant", Disposition::NeedsSignIn),
    ("invalid_request", Disposition::Fatal),
    ("unsupported_grant_type", Disposition::Fatal),
    ("invalid_client", Disposition::Fatal),
];

#[test]
fn every_code_has_its_pinned_classification_whatever_the_status() {
    assert_eq!(
        PINNED.len(),
        RelayErrorCode::ALL.len(),
        "a code is not pinned"
    );
    for (wire, expected) in PINNED {
        let code = RelayErrorCode::parse(wire);
        assert!(!matches!(code, RelayErrorCode::Unknown(_)), "{wire}");
        assert_eq!(code.as_str(), *wire);
        for status in [400, 401, 403, 429, 500, 503] {
            assert_eq!(
                classify_refusal(status, Some(&code)),
                *expected,
                "{wire} {status}"
            );
        }
    }
}

#[test]
fn every_code_the_relay_sends_is_known() {
    let signature = [
        SignatureError::MissingHeader("x"),
        SignatureError::MalformedHeader("x"),
        SignatureError::Stale { skew_secs: 0 },
        SignatureError::Future { skew_secs: 0 },
        SignatureError::ReplayedNonce,
        SignatureError::BadSignature,
        SignatureError::UnknownAgent,
        SignatureError::RevokedAgent,
    ];
    for e in signature {
        assert!(
            RelayErrorCode::parse(e.code())
                .known_disposition()
                .is_some(),
            "{}",
            e.code()
        );
    }
    let token = [
        TokenErrorCode::AuthorizationPending,
        TokenErrorCode::SlowDown,
        TokenErrorCode::AccessDenied,
        TokenErrorCode::ExpiredToken,
        TokenErrorCode::InvalidGrant,
        TokenErrorCode::InvalidRequest,
        TokenErrorCode::UnsupportedGrantType,
        TokenErrorCode::InvalidClient,
    ];
    for e in token {
        let wire = serde_json::to_value(e).unwrap();
        let wire = wire.as_str().unwrap();
        assert!(
            RelayErrorCode::parse(wire).known_disposition().is_some(),
            "{wire}"
        );
    }
}

#[test]
fn an_unknown_code_never_asks_for_sign_in() {
    let code = RelayErrorCode::parse("agent.teleported");
    assert_eq!(code, RelayErrorCode::Unknown("agent.teleported".to_owned()));
    assert_eq!(code.to_string(), "agent.teleported");
    assert_eq!(classify_refusal(403, Some(&code)), Disposition::Fatal);
    assert_eq!(classify_refusal(401, Some(&code)), Disposition::Fatal);
    assert_eq!(classify_refusal(503, Some(&code)), Disposition::Retryable);
    assert_eq!(classify_refusal(429, Some(&code)), Disposition::Retryable);
}

#[test]
fn a_refusal_without_a_code_is_classified_by_its_status() {
    assert_eq!(classify_refusal(502, None), Disposition::Retryable);
    assert_eq!(classify_refusal(429, None), Disposition::Retryable);
    assert_eq!(classify_refusal(404, None), Disposition::Fatal);
    assert_eq!(classify_refusal(401, None), Disposition::Fatal);
}
