//! E-mail verification of password accounts.
//!
//! # Security
//! A password account can approve devices only once its address is verified: otherwise anyone could
//! sign up with someone else's address and have agents registered under it. Sign-up mails a link
//! (`/verify-email/{token}`): 32 random bytes, stored by SHA-256 only, single use, valid 24 hours,
//! and bound to the address it was sent to. Re-sending is limited per account. Opening the link
//! only shows a confirmation page; the link is used by the button on it (a CSRF-checked `POST`), so
//! a mail scanner or a browser that prefetches links cannot use it up. Without SMTP (local
//! mode) the link goes to the relay's log, and the pages say so.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::html;

use super::account::CsrfForm;
use super::layout::{message_page, minutes, notice, page};
use super::session::{check_csrf, csrf_token, CurrentUser};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{RateLimit, User};
use crate::{now_unix, random_hex, sha256_hex};

/// How long a verification link works.
const LINK_SECS: i64 = 24 * 3600;
/// Links one account may ask for per hour.
const SENDS_PER_HOUR: i64 = 5;

/// Errors of sending a verification link.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The account has no address to verify (a provider account).
    #[error("this account has no e-mail address to verify")]
    NoAddress,
    /// The token could not be stored.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The mail server did not take the mail.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

/// Creates a verification link for `user` and mails it (or logs it in local mode).
///
/// # Errors
/// [`VerifyError`].
pub async fn send_link(state: &AppState, user: &User) -> Result<(), VerifyError> {
    let email = user.email.as_deref().ok_or(VerifyError::NoAddress)?;
    let token = zeroize::Zeroizing::new(random_hex(32));
    let now = now_unix();
    state
        .store
        .create_email_verification(&sha256_hex(&token), &user.id, email, now, now + LINK_SECS)
        .await?;
    let link = format!("{}/verify-email/{}", state.public_url, token.as_str());
    state.mailer.send_verification(email, &link).await?;
    Ok(())
}

/// Where the link went, in words for the pages.
fn where_the_link_went(state: &AppState, email: &str) -> String {
    if state.mailer.is_local() {
        format!("This relay has no mail server configured (local mode): the verification link for {email} was written to the relay's log. Ask whoever runs the relay for it, or open it from the log yourself.")
    } else {
        format!("We sent a verification link to {email}. Open it to confirm the address is yours.")
    }
}

/// The page a password account with an unverified address gets instead of device approval.
pub fn verify_needed_page(
    state: &AppState,
    jar: CookieJar,
    user: &User,
    info: Option<&str>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_token(jar);
    let email = user.email.clone().unwrap_or_default();
    let body = html! {
        section.card {
            h1 #verify-needed { "Verify your e-mail address first" }
            p { "Your account can connect devices once you have confirmed that " strong { (email) } " is your address." }
            (notice("info", info))
            p #verify-where { (where_the_link_went(state, &email)) }
            form method="post" action="/verify-email/resend" {
                input type="hidden" name="csrf" value=(csrf);
                button #resend type="submit" { "Send a new link" }
            }
        }
    };
    (
        status,
        jar,
        page(
            "Verify your e-mail address",
            Some(&email),
            Some(&csrf),
            body,
        ),
    )
        .into_response()
}

/// True for the shape of a link's token (64 hex digits); anything else is not looked up.
fn token_shaped(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The answer to a link that is used, expired, or was never issued.
fn dead_link() -> Response {
    (
        StatusCode::BAD_REQUEST,
        message_page(
            "This link does not work",
            "This verification link was already used, has expired, or was never issued. Sign in and ask for a new one from the device page.",
        ),
    )
        .into_response()
}

/// `GET /verify-email/{token}`: a page asking to confirm the address; uses nothing up.
pub async fn show(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    if !token_shaped(&token) {
        return dead_link();
    }
    let email = match state
        .store
        .live_email_verification(&sha256_hex(&token), now_unix())
        .await
    {
        Ok(Some(email)) => email,
        Ok(None) => return dead_link(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (jar, csrf) = csrf_token(jar);
    let body = html! {
        section.card {
            h1 #confirm-email { "Confirm your e-mail address" }
            p { "Confirm that " strong { (email) } " is your address, so your account can connect devices." }
            form method="post" action=(format!("/verify-email/{token}")) {
                input type="hidden" name="csrf" value=(csrf);
                button #confirm-verify type="submit" { "Confirm my address" }
            }
        }
    };
    (
        jar,
        page("Confirm your e-mail address", None, Some(&csrf), body),
    )
        .into_response()
}

/// `POST /verify-email/{token}`: uses the link (the button of [`show`]'s page).
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path(token): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf_value()) {
        return r;
    }
    let valid_shape = token_shaped(&token);
    let verified = if valid_shape {
        match state
            .store
            .consume_email_verification(&sha256_hex(&token), now_unix())
            .await
        {
            Ok(v) => v,
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        None
    };
    match verified {
        Some(_) => {
            let body = html! {
                section.card {
                    h1 #verified { "E-mail address verified" }
                    p { "Your account can now connect devices." }
                    p { a href="/device" { "Connect a device" } " · " a href="/agents" { "My agents" } }
                }
            };
            page("E-mail address verified", None, None, body).into_response()
        }
        None => dead_link(),
    }
}

/// `POST /verify-email/resend`: a new link for the signed-in account.
pub async fn resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    user: CurrentUser,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf_value()) {
        return r;
    }
    if user.user.may_approve_devices() {
        return axum::response::Redirect::to("/device").into_response();
    }
    let bucket = format!("verify-mail:{}", user.user.id);
    match state
        .store
        .hit_rate_limit(&bucket, SENDS_PER_HOUR, 3600, now_unix())
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { retry_after }) => {
            let msg = format!(
                "Too many links asked for; try again in {} minutes.",
                minutes(retry_after)
            );
            return verify_needed_page(
                &state,
                jar,
                &user.user,
                Some(&msg),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let info = match send_link(&state, &user.user).await {
        Ok(()) => "A new link is on its way.",
        Err(e) => {
            tracing::error!(error = %e, "sending a verification link failed");
            "The link could not be sent right now; try again in a few minutes."
        }
    };
    verify_needed_page(&state, jar, &user.user, Some(info), StatusCode::OK)
}
