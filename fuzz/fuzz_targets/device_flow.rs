//! The relay's checks of the RFC 8628 device flow's two forms (`katachi_proto::device_form`, what
//! `katachi-relay`'s `device_flow.rs` runs before any database work), on arbitrary form bodies
//! decoded by axum's `Form` extractor exactly as the relay's handlers decode them.
//!
//! Input: a first byte `T` makes the rest a token request (`POST /oauth/token`), anything else a
//! device authorization request (`POST /oauth/device/code`). Beyond "never panics", every input
//! checks, against the same body decoded into a plain struct with public fields:
//! - the client id is accepted exactly when it is `katachi-agent`, the grant type exactly when it
//!   is the device-code grant; the checks run in the relay's order;
//! - an accepted device name or OS is what the approval page may show: trimmed, 1 to 100
//!   characters, no control character, the sender's text or the fallback when that was blank; a
//!   refused one really is too long or holds a control character;
//! - an accepted device code is the one sent, 1 to 128 bytes; no refusal's message holds it;
//! - each refusal's RFC code and status make the agent stop (never "sign in again", never retry).
//!
//! Seeds (`corpus/device_flow/seed-*`, made by `fuzz/make_seeds.py`) are the agent's real forms and
//! refusals of each kind.

#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request};
use axum::Form;
use katachi_proto::device::{TokenError, AGENT_CLIENT_ID, DEVICE_CODE_GRANT};
use katachi_proto::device_form::{
    DeviceCodeForm, DeviceFormError, TokenForm, MAX_DEVICE_CODE, MAX_DEVICE_FIELD, UNKNOWN_OS,
    UNNAMED_DEVICE,
};
use katachi_proto::relay_error::{classify_refusal, Disposition, RelayErrorCode};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The device authorization form's fields, readable.
#[derive(Deserialize)]
struct RawDeviceForm {
    client_id: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
    device_name: Option<String>,
    device_os: Option<String>,
}

/// The token form's fields, readable.
#[derive(Deserialize)]
struct RawTokenForm {
    grant_type: Option<String>,
    device_code: Option<String>,
    client_id: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b'T', body)) => token_request(body),
        Some((_, body)) => device_request(body),
        None => {}
    }
});

fn device_request(body: &[u8]) {
    let (Some(form), Some(raw)) = (
        decode::<DeviceCodeForm>(body),
        decode::<RawDeviceForm>(body),
    ) else {
        // the relay's extractor refuses it (422) before the handler: both decodes must agree
        assert_eq!(
            decode::<DeviceCodeForm>(body).is_some(),
            decode::<RawDeviceForm>(body).is_some()
        );
        return;
    };
    match form.check_client() {
        Ok(()) => assert_eq!(raw.client_id.as_deref(), Some(AGENT_CLIENT_ID)),
        Err(e) => {
            assert_eq!(e, DeviceFormError::UnknownClient);
            assert_ne!(raw.client_id.as_deref(), Some(AGENT_CLIENT_ID));
            check_refusal(&e, None);
        }
    }
    let name = expected_field(raw.device_name.as_deref(), UNNAMED_DEVICE);
    let os = expected_field(raw.device_os.as_deref(), UNKNOWN_OS);
    match form.into_device() {
        Ok(device) => {
            assert_eq!(Ok(device.device_name.as_str()), name.as_deref());
            assert_eq!(Ok(device.device_os.as_str()), os.as_deref());
            for shown in [&device.device_name, &device.device_os] {
                assert!(!shown.is_empty() && shown.trim() == shown);
                assert!(shown.chars().count() <= MAX_DEVICE_FIELD);
                assert!(!shown.chars().any(misleading), "{shown:?}");
            }
        }
        Err(e) => {
            // the name is checked first
            let first = name.err().or(os.err());
            assert_eq!(Some(&e), first.as_ref(), "refused for the wrong reason");
            check_refusal(&e, None);
        }
    }
}

fn token_request(body: &[u8]) {
    let (Some(form), Some(raw)) = (decode::<TokenForm>(body), decode::<RawTokenForm>(body)) else {
        assert_eq!(
            decode::<TokenForm>(body).is_some(),
            decode::<RawTokenForm>(body).is_some()
        );
        return;
    };
    let expected = if raw.grant_type.as_deref() != Some(DEVICE_CODE_GRANT) {
        Err(DeviceFormError::UnsupportedGrant)
    } else if raw.client_id.as_deref() != Some(AGENT_CLIENT_ID) {
        Err(DeviceFormError::UnknownClient)
    } else {
        match &raw.device_code {
            Some(c) if (1..=MAX_DEVICE_CODE).contains(&c.len()) => Ok(c.clone()),
            _ => Err(DeviceFormError::MissingDeviceCode),
        }
    };
    let got = form.into_device_code();
    assert_eq!(got, expected);
    if let Err(e) = got {
        check_refusal(&e, raw.device_code.as_deref());
    }
}

/// What the relay should make of a device name or OS `sent`.
fn expected_field(sent: Option<&str>, fallback: &str) -> Result<String, DeviceFormError> {
    let trimmed = sent.unwrap_or_default().trim();
    if trimmed.chars().count() > MAX_DEVICE_FIELD {
        Err(DeviceFormError::DeviceFieldTooLong)
    } else if trimmed.chars().any(misleading) {
        Err(DeviceFormError::DeviceFieldControl)
    } else if trimmed.is_empty() {
        Ok(fallback.to_owned())
    } else {
        Ok(trimmed.to_owned())
    }
}

/// A character the approval page must never show: a control character, a line or paragraph
/// separator, or one of Unicode's bidirectional formatting characters (UAX #9, table 1).
fn misleading(c: char) -> bool {
    const BIDI_FORMATTING: [char; 12] = [
        '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
        '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];
    c.is_control() || c == '\u{2028}' || c == '\u{2029}' || BIDI_FORMATTING.contains(&c)
}

/// A refusal as the agent receives it: the RFC error body round-trips, its code is one the agent
/// knows and stops on, and the message never holds the device `code` sent.
fn check_refusal(e: &DeviceFormError, code: Option<&str>) {
    let body = TokenError {
        error: e.code(),
        error_description: Some(e.to_string()),
    };
    let Ok(json) = serde_json::to_string(&body) else {
        panic!("a token error does not serialise");
    };
    let Ok(back) = serde_json::from_str::<TokenError>(&json) else {
        panic!("a token error does not parse back: {json}");
    };
    assert_eq!(back, body);
    let Ok(serde_json::Value::String(wire)) = serde_json::to_value(e.code()) else {
        panic!("a token error code is not a string");
    };
    let known = RelayErrorCode::parse(&wire);
    assert!(!matches!(known, RelayErrorCode::Unknown(_)), "{wire}");
    assert_eq!(
        classify_refusal(e.status().as_u16(), Some(&known)),
        Disposition::Fatal,
        "a malformed form must stop the agent: {wire}"
    );
    if let Some(code) = code.filter(|c| c.len() >= 16) {
        assert!(!json.contains(code), "the device code leaked into {json}");
    }
}

/// `body` through axum's `Form` extractor, as the relay's handlers receive it.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().ok())
        .as_ref()?;
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_vec()))
        .ok()?;
    runtime
        .block_on(Form::<T>::from_request(request, &()))
        .ok()
        .map(|Form(form)| form)
}
