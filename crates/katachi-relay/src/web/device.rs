//! The device approval page: the signed-in user enters the code an agent printed, sees the
//! device's name, OS and address, and approves or denies it.
//!
//! # Security
//! - Remote phishing (RFC 8628 §5.4): an attacker starts a device flow on their own machine and
//!   sends the victim the `verification_uri_complete` link. Approval reached through that link is
//!   never one click: the page does not show the code, and approving needs the code typed by the
//!   user as the device shows it (`confirm_code`). Only a code the user typed into the entry form
//!   (a CSRF-checked post) counts as already typed.
//! - The page shows the device's name, OS and the address that asked for the code, and warns in
//!   words when that address is not the approver's (IPv6 compared per /64).
//! - Only accounts with a verified address (or a provider account) approve devices.
//! - Code guessing (wrong codes, wrong confirmations) is bounded per user and per address.

use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use katachi_proto::device::{display_user_code, normalise_user_code};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout::{minutes, notice, page};
use super::session::{check_csrf, csrf_token, CurrentUser};
use super::verify_email::verify_needed_page;
use crate::client_addr::{address_bucket_key, same_bucket};
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::now_unix;
use crate::state::AppState;
use crate::store::{DeviceCode, DeviceStatus, RateLimit};

/// Wrong codes a user (or an address) may enter per window.
const MAX_WRONG_CODES: i64 = 10;
/// Window for wrong codes.
const WRONG_CODE_WINDOW: i64 = 15 * 60;

/// `?user_code=`.
#[derive(Debug, Deserialize)]
pub struct CodeQuery {
    /// The code, as typed or from the agent's link.
    user_code: Option<String>,
}

/// Posted decision.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    /// The code.
    user_code: String,
    /// `approve` or `deny`; absent when only looking the code up.
    action: Option<String>,
    /// The code as the user typed it to confirm an approval (never prefilled from a link).
    confirm_code: Option<String>,
    /// CSRF token.
    csrf: Option<String>,
}

fn enter_code_page(jar: CookieJar, who: &str, error: Option<&str>, status: StatusCode) -> Response {
    let (jar, csrf) = csrf_token(jar);
    let body = html! {
        section.card {
            h1 { "Connect a device" }
            p { "Enter the code your katachi agent shows." }
            (notice("error", error))
            form method="post" action="/device" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Code" input type="text" name="user_code" placeholder="XXXX-XXXX" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="12" required autofocus; }
                button type="submit" { "Continue" }
            }
        }
    };
    (
        status,
        jar.clone(),
        page("Connect a device", Some(who), Some(&csrf_value(&jar)), body),
    )
        .into_response()
}

fn csrf_value(jar: &CookieJar) -> String {
    jar.get(super::session::CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// How the user reached the confirmation.
enum Reached<'a> {
    /// Through a link carrying the code (`verification_uri_complete`): the code must be typed.
    Link,
    /// By typing this code into the entry form: that typing is the confirmation.
    Typed(&'a str),
}

fn confirm_page(
    jar: CookieJar,
    who: &str,
    d: &DeviceCode,
    approver: IpAddr,
    reached: Reached<'_>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_token(jar);
    let shown = display_user_code(&d.user_code);
    let elsewhere = !same_bucket(&d.device_ip, approver);
    let body = html! {
        section.card {
            h1 { "Connect this device?" }
            p { "A katachi agent asks to connect to your account. Approve only if you started katachi yourself, just now, on this device." }
            (notice("error", error))
            dl.device {
                dt { "Device" } dd #device-name { (d.device_name) }
                dt { "Operating system" } dd #device-os { (d.device_os) }
                dt { "Address" } dd #device-ip { (d.device_ip) }
            }
            @if elsewhere {
                p #ip-warning.notice.warning role="alert" {
                    "Warning: this device asked for its code from the address " (d.device_ip)
                    ", but you are connecting from " (approver.to_canonical())
                    ". If the device is not on your own network right now, someone may be trying to get you to connect their machine to your account: deny it."
                }
            }
            form.actions method="post" action="/device" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="user_code" value=(shown);
                @match reached {
                    Reached::Typed(typed) => {
                        input type="hidden" name="confirm_code" value=(typed);
                        p { "You typed the code " strong.code { (display_user_code(typed)) } "." }
                    }
                    Reached::Link => {
                        label { "Type the code your device shows"
                            input #confirm-code type="text" name="confirm_code" placeholder="XXXX-XXXX" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="12" autofocus;
                        }
                    }
                }
                button #approve type="submit" name="action" value="approve" { "Approve" }
                button #deny.secondary type="submit" name="action" value="deny" { "Deny" }
            }
        }
    };
    (
        status,
        jar,
        page("Connect this device?", Some(who), Some(&csrf), body),
    )
        .into_response()
}

fn who(u: &CurrentUser) -> String {
    u.user
        .email
        .clone()
        .unwrap_or_else(|| "signed in".to_owned())
}

/// Looks a typed code up, counting wrong ones against the user and the address.
/// "Too many wrong codes" for a user or address over the limit: `count` records a wrong code,
/// otherwise the buckets are only looked at.
async fn wrong_code_limit(
    state: &AppState,
    user: &CurrentUser,
    client: IpAddr,
    now: i64,
    count: bool,
) -> Result<Option<(String, StatusCode)>, ApiError> {
    for bucket in [
        format!("usercode-user:{}", user.user.id),
        format!("usercode-ip:{}", address_bucket_key(client)),
    ] {
        let limit = if count {
            state
                .store
                .hit_rate_limit(&bucket, MAX_WRONG_CODES, WRONG_CODE_WINDOW, now)
                .await?
        } else {
            state
                .store
                .peek_rate_limit(&bucket, MAX_WRONG_CODES, WRONG_CODE_WINDOW, now)
                .await?
        };
        if let RateLimit::Limited { retry_after } = limit {
            state
                .metrics
                .rate_limited(crate::metrics::Limiter::UserCode);
            return Ok(Some((
                format!(
                    "Too many wrong codes; try again in {} minutes.",
                    minutes(retry_after)
                ),
                StatusCode::TOO_MANY_REQUESTS,
            )));
        }
    }
    Ok(None)
}

async fn find_pending(
    state: &AppState,
    user: &CurrentUser,
    client: IpAddr,
    typed: &str,
) -> Result<Result<DeviceCode, (String, StatusCode)>, ApiError> {
    let now = now_unix();
    // A user or address already over the wrong-code limit gets no lookup at all.
    if let Some(refusal) = wrong_code_limit(state, user, client, now, false).await? {
        return Ok(Err(refusal));
    }
    let found = match normalise_user_code(typed) {
        Some(code) => state.store.device_by_user_code(&code).await?,
        None => None,
    };
    match found {
        Some(d) if d.status == DeviceStatus::Pending && d.expires_at > now => Ok(Ok(d)),
        Some(d) if d.expires_at <= now => Ok(Err((
            "This code has expired. Start katachi again to get a new one.".into(),
            StatusCode::GONE,
        ))),
        Some(_) => Ok(Err((
            "This code was already used.".into(),
            StatusCode::CONFLICT,
        ))),
        None => {
            if let Some(refusal) = wrong_code_limit(state, user, client, now, true).await? {
                return Ok(Err(refusal));
            }
            Ok(Err((
                "No device is waiting for this code. Check it on the device and try again.".into(),
                StatusCode::NOT_FOUND,
            )))
        }
    }
}

/// `GET /device[?user_code=…]`.
pub async fn show(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    jar: CookieJar,
    user: CurrentUser,
    Query(q): Query<CodeQuery>,
) -> Response {
    // An unverified password account cannot approve: its address may belong to someone else.
    if !user.user.may_approve_devices() {
        return verify_needed_page(&state, jar, &user.user, None, StatusCode::FORBIDDEN);
    }
    let who = who(&user);
    let Some(typed) = q.user_code.filter(|c| !c.trim().is_empty()) else {
        return enter_code_page(jar, &who, None, StatusCode::OK);
    };
    match find_pending(&state, &user, client, &typed).await {
        Ok(Ok(d)) => confirm_page(jar, &who, &d, client, Reached::Link, None, StatusCode::OK),
        Ok(Err((msg, status))) => enter_code_page(jar, &who, Some(&msg), status),
        Err(e) => e.into_response(),
    }
}

/// `POST /device`: look a code up, or approve / deny it.
pub async fn decide(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    user: CurrentUser,
    Form(form): Form<DecisionForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf.as_deref()) {
        return r;
    }
    if !user.user.may_approve_devices() {
        return verify_needed_page(&state, jar, &user.user, None, StatusCode::FORBIDDEN);
    }
    let who = who(&user);
    let device = match find_pending(&state, &user, client, &form.user_code).await {
        Ok(Ok(d)) => d,
        Ok(Err((msg, status))) => return enter_code_page(jar, &who, Some(&msg), status),
        Err(e) => return e.into_response(),
    };
    let approve = match form.action.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        // Looked up from the entry form: the user typed this code.
        _ => {
            return confirm_page(
                jar,
                &who,
                &device,
                client,
                Reached::Typed(&device.user_code),
                None,
                StatusCode::OK,
            )
        }
    };
    // Remote phishing (RFC 8628 §5.4): approving needs the code typed by the user, matching the
    // device's; the code in the link or the hidden field is not a confirmation.
    if approve {
        let typed = form.confirm_code.as_deref().and_then(normalise_user_code);
        let matches = typed
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(device.user_code.as_bytes())));
        if !matches {
            let now = now_unix();
            if typed.is_some() {
                // A wrong confirmation is a wrong code: it counts against the guessing limit.
                match wrong_code_limit(&state, &user, client, now, true).await {
                    Ok(Some((msg, status))) => {
                        return enter_code_page(jar, &who, Some(&msg), status)
                    }
                    Ok(None) => {}
                    Err(e) => return e.into_response(),
                }
            }
            let msg = if typed.is_some() {
                "The code you typed is not this device's code. Check the code on the device; if it shows none, deny."
            } else {
                "Type the code your device shows to approve it."
            };
            return confirm_page(
                jar,
                &who,
                &device,
                client,
                Reached::Link,
                Some(msg),
                StatusCode::BAD_REQUEST,
            );
        }
    }
    match state
        .store
        .decide_device(&device.user_code, &user.user.id, approve, now_unix())
        .await
    {
        Ok(true) => {
            let (title, text) = if approve {
                ("Device connected", format!("{} is now connected to your account. You can return to it; it finishes signing in by itself.", device.device_name))
            } else {
                (
                    "Device denied",
                    format!("{} was not connected.", device.device_name),
                )
            };
            let body = html! { section.card { h1 #result { (title) } p { (text) } p { a href="/agents" { "See my agents" } } } };
            (
                jar.clone(),
                page(title, Some(&who), Some(&csrf_value(&jar)), body),
            )
                .into_response()
        }
        Ok(false) => enter_code_page(
            jar,
            &who,
            Some("This code is no longer waiting (expired or already decided)."),
            StatusCode::CONFLICT,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}
