//! RFC 8628 device authorization: `/oauth/device/code` and `/oauth/token`.
//!
//! Device codes are stored hashed; user codes are 8 characters from an unambiguous alphabet; a code
//! is exchanged at most once; polling faster than `interval` gets `slow_down` (and +5 s). The
//! forms' own checks (client id, grant type, device code, device name and OS) are
//! `katachi_proto::device_form` (fuzzed in `fuzz/`); this module adds what needs the database.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use katachi_proto::device::{
    display_user_code, DeviceCodeResponse, DeviceInfo, TokenError, TokenErrorCode,
    USER_CODE_ALPHABET, USER_CODE_LEN, VERIFY_PATH,
};
use katachi_proto::device_form::{DeviceCodeForm, DeviceFormError, TokenForm};

use crate::client_addr::address_bucket_key;
use crate::client_ip::ClientIp;
use crate::crypto::SealedRow;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{DeviceCode, DeviceStatus, NewAgent, RateLimit};
use crate::{now_unix, random_hex, sha256_hex};

fn token_error(status: StatusCode, error: TokenErrorCode, description: &str) -> Response {
    (
        status,
        Json(TokenError {
            error,
            error_description: Some(description.to_owned()),
        }),
    )
        .into_response()
}

/// The token endpoint's answer to a refused form.
fn form_error(e: &DeviceFormError) -> Response {
    token_error(e.status(), e.code(), &e.to_string())
}

/// A random user code: rejection sampling keeps every character equally likely.
fn new_user_code() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LEN)
        .map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect()
}

/// `POST /oauth/device/code`.
pub async fn device_code(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Form(form): Form<DeviceCodeForm>,
) -> Response {
    if let Err(e) = form.check_client() {
        return form_error(&e);
    }
    let now = now_unix();
    // Each code request creates a row: bound how fast one address can do that.
    match state
        .store
        .hit_rate_limit(
            &format!("device-code:{}", address_bucket_key(client)),
            30,
            600,
            now,
        )
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { .. }) => {
            state
                .metrics
                .rate_limited(crate::metrics::Limiter::DeviceCode);
            return token_error(
                StatusCode::TOO_MANY_REQUESTS,
                TokenErrorCode::SlowDown,
                "too many device codes requested from this address; wait a few minutes",
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let DeviceInfo {
        device_name: name,
        device_os: os,
    } = match form.into_device() {
        Ok(device) => device,
        Err(e) => return form_error(&e),
    };
    let device_code = random_hex(32);
    let interval = i64::try_from(state.config.device_poll_interval).unwrap_or(5);
    let ttl = i64::try_from(state.config.device_code_ttl).unwrap_or(600);
    for _ in 0..5 {
        let user_code = new_user_code();
        let row = DeviceCode {
            device_code_hash: sha256_hex(&device_code),
            user_code: user_code.clone(),
            device_name: name.clone(),
            device_os: os.clone(),
            device_ip: client.to_string(),
            expires_at: now + ttl,
            poll_interval: interval,
            last_poll_at: 0,
            status: DeviceStatus::Pending,
            user_id: None,
        };
        match state.store.create_device_code(&row, now).await {
            Ok(true) => {
                let shown = display_user_code(&user_code);
                let verification_uri = format!("{}{VERIFY_PATH}", state.public_url);
                return Json(DeviceCodeResponse {
                    device_code,
                    verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                    verification_uri,
                    user_code: shown,
                    expires_in: state.config.device_code_ttl,
                    interval: state.config.device_poll_interval,
                })
                .into_response();
            }
            Ok(false) => continue, // user code collision: draw another
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    ApiError::internal("could not draw a free user code").into_response()
}

/// `POST /oauth/token` (device-code grant only). Every answer, the credentials above all, is
/// marked `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub async fn token(State(state): State<AppState>, form: Form<TokenForm>) -> Response {
    let mut answer = token_answer(state, form).await;
    let headers = answer.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    answer
}

async fn token_answer(state: AppState, Form(form): Form<TokenForm>) -> Response {
    let code = match form.into_device_code() {
        Ok(code) => code,
        Err(e) => return form_error(&e),
    };
    let now = now_unix();
    let hash = sha256_hex(&code);
    let device = match state.store.device_by_hash(&hash).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                TokenErrorCode::InvalidGrant,
                "unknown device code",
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if device.status == DeviceStatus::Used {
        return token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::InvalidGrant,
            "device code was already used; start the sign-in again",
        );
    }
    if device.expires_at <= now {
        return token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::ExpiredToken,
            "device code expired; start the sign-in again",
        );
    }
    // Polling faster than the interval: slow_down and +5 s (RFC 8628 §3.5).
    let too_fast = device.last_poll_at > 0 && now - device.last_poll_at < device.poll_interval;
    let interval = if too_fast {
        device.poll_interval + 5
    } else {
        device.poll_interval
    };
    if let Err(e) = state.store.record_poll(&hash, now, interval).await {
        return ApiError::from(e).into_response();
    }
    if too_fast {
        return token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::SlowDown,
            &format!("polling too fast; wait {interval} s between polls"),
        );
    }
    match device.status {
        DeviceStatus::Pending => token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::AuthorizationPending,
            "waiting for the user to approve",
        ),
        DeviceStatus::Denied => token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::AccessDenied,
            "the user denied this device",
        ),
        DeviceStatus::Used => token_error(
            StatusCode::BAD_REQUEST,
            TokenErrorCode::InvalidGrant,
            "device code was already used",
        ),
        DeviceStatus::Approved => issue_agent(&state, &device, &hash, now).await,
    }
}

async fn issue_agent(state: &AppState, device: &DeviceCode, hash: &str, now: i64) -> Response {
    let Some(user_id) = device.user_id.as_deref() else {
        return ApiError::internal("approved device code without a user").into_response();
    };
    // Single use, even when two polls race: only the one that flips approved → used continues.
    match state.store.consume_device(hash).await {
        Ok(true) => {}
        Ok(false) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                TokenErrorCode::InvalidGrant,
                "device code was already used",
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let agent_id = format!("agt_{}", random_hex(12));
    let access_token = zeroize::Zeroizing::new(random_hex(32));
    let secret = zeroize::Zeroizing::new(random_hex(32));
    let sealed = state.master.seal(
        &SealedRow::agent_signing_secret(&agent_id, user_id),
        secret.as_bytes(),
    );
    let token_hash = sha256_hex(&access_token);
    let agent = NewAgent {
        id: &agent_id,
        user_id,
        name: &device.device_name,
        os: &device.device_os,
        token_hash: &token_hash,
        signing_secret_enc: &sealed,
    };
    if let Err(e) = state.store.create_agent(&agent, now).await {
        return ApiError::from(e).into_response();
    }
    tracing::info!(agent = %agent_id, "agent registered");
    Json(serde_json::json!({
        "access_token": access_token.as_str(),
        "token_type": "bearer",
        "agent_id": agent_id,
        "signing_secret": secret.as_str(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_only_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let c = new_user_code();
            assert_eq!(c.len(), USER_CODE_LEN);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            assert_eq!(
                katachi_proto::device::normalise_user_code(&display_user_code(&c)).as_deref(),
                Some(c.as_str())
            );
        }
    }
}
