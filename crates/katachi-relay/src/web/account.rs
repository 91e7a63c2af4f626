//! Password accounts: sign-up, sign-in, sign-out.
//!
//! Passwords are hashed with argon2id. Sign-in is rate limited per address, accounts lock after
//! repeated failures, and an unknown e-mail costs the same argon2 verification as a known one, so
//! response time does not reveal which e-mails have accounts.

use std::net::SocketAddr;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::html;
use serde::Deserialize;

use super::layout::{minutes, notice, page};
use super::session::{check_csrf, csrf_token, end_session, safe_next, start_session, CurrentUser};
use crate::error::ApiError;
use crate::now_unix;
use crate::state::AppState;
use crate::store::RateLimit;

/// Failed sign-ins before an account locks.
const MAX_FAILURES: i64 = 5;
/// Lock duration.
const LOCK_SECS: i64 = 15 * 60;
/// Sign-in attempts per address per window.
const ATTEMPTS_PER_IP: i64 = 30;
/// Rate-limit window.
const WINDOW_SECS: i64 = 15 * 60;
/// Minimum password length.
const MIN_PASSWORD: usize = 10;

/// Hashes a password with argon2id (default parameters: m=19 MiB, t=2, p=1).
///
/// # Errors
/// The argon2 error, as text.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// `?next=` and `?error=` of the forms.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    next: Option<String>,
}

/// Posted sign-in / sign-up form.
#[derive(Debug, Deserialize)]
pub struct CredentialsForm {
    /// E-mail.
    email: String,
    /// Password.
    password: String,
    /// CSRF token.
    csrf: Option<String>,
    /// Where to go afterwards.
    next: Option<String>,
}

fn providers_markup(state: &AppState, next: &str) -> maud::Markup {
    html! {
        @if state.config.github.is_some() || state.config.google.is_some() {
            div.providers {
                @if state.config.github.is_some() { a.button.secondary href=(format!("/auth/github/start?next={}", super::session::urlencode(next))) { "Sign in with GitHub" } }
                @if state.config.google.is_some() { a.button.secondary href=(format!("/auth/google/start?next={}", super::session::urlencode(next))) { "Sign in with Google" } }
            }
        }
    }
}

fn credentials_page(
    state: &AppState,
    jar: CookieJar,
    signup: bool,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_token(jar);
    let (title, action, button, other) = if signup {
        (
            "Create your account",
            "/signup",
            "Create account",
            html! { "Already have an account? " a href=(format!("/login?next={}", super::session::urlencode(next))) { "Sign in" } },
        )
    } else {
        (
            "Sign in",
            "/login",
            "Sign in",
            html! { "New here? " a href=(format!("/signup?next={}", super::session::urlencode(next))) { "Create an account" } },
        )
    };
    let body = html! {
        section.card {
            h1 { (title) }
            (notice("error", error))
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { "E-mail" input type="email" name="email" autocomplete="email" required; }
                label { "Password" input type="password" name="password" autocomplete=(if signup { "new-password" } else { "current-password" }) minlength=(if signup { MIN_PASSWORD } else { 1 }) required; }
                button type="submit" { (button) }
            }
            (providers_markup(state, next))
            p.muted { (other) }
        }
    };
    (status, jar, page(title, None, None, body)).into_response()
}

/// `GET /signup`.
pub async fn signup_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> Response {
    credentials_page(
        &state,
        jar,
        true,
        &safe_next(q.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
    user: Option<CurrentUser>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if user.is_some() {
        return Redirect::to(&next).into_response();
    }
    credentials_page(&state, jar, false, &next, None, StatusCode::OK)
}

fn valid_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `POST /signup`.
pub async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<CredentialsForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf.as_deref()) {
        return r;
    }
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return credentials_page(
            &state,
            jar,
            true,
            &next,
            Some("That does not look like an e-mail address."),
            StatusCode::BAD_REQUEST,
        );
    }
    if form.password.chars().count() < MIN_PASSWORD || form.password.len() > 1024 {
        return credentials_page(
            &state,
            jar,
            true,
            &next,
            Some("Use a password of at least 10 characters."),
            StatusCode::BAD_REQUEST,
        );
    }
    let now = now_unix();
    match state
        .store
        .hit_rate_limit(&format!("signup:{}", peer.ip()), 20, 3600, now)
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { retry_after }) => {
            return credentials_page(
                &state,
                jar,
                true,
                &next,
                Some(&format!(
                    "Too many sign-ups from this address; try again in {} minutes.",
                    minutes(retry_after)
                )),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let password = form.password;
    let hash = match tokio::task::spawn_blocking(move || hash_password(&password)).await {
        Ok(Ok(h)) => h,
        _ => return ApiError::internal("password hashing failed").into_response(),
    };
    match state.store.create_user(&email, Some(&hash), now).await {
        Ok(Some(user)) => match start_session(&state, jar, &user.id).await {
            Ok(jar) => (jar, Redirect::to(&next)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
        Ok(None) => credentials_page(
            &state,
            jar,
            true,
            &next,
            Some("An account with this e-mail already exists; sign in instead."),
            StatusCode::CONFLICT,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<CredentialsForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf.as_deref()) {
        return r;
    }
    let next = safe_next(form.next.as_deref());
    let now = now_unix();
    match state
        .store
        .hit_rate_limit(
            &format!("login:{}", peer.ip()),
            ATTEMPTS_PER_IP,
            WINDOW_SECS,
            now,
        )
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { retry_after }) => {
            return credentials_page(
                &state,
                jar,
                false,
                &next,
                Some(&format!(
                    "Too many sign-in attempts from this address; try again in {} minutes.",
                    minutes(retry_after)
                )),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let email = form.email.trim().to_ascii_lowercase();
    let user = match state.store.user_by_email(&email).await {
        Ok(u) => u,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Unknown e-mail and provider-only accounts verify against a dummy hash: same time, same answer.
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let wrong = "Wrong e-mail or password.";
    let Some(user) = user.filter(|u| u.password_hash.is_some()) else {
        return credentials_page(
            &state,
            jar,
            false,
            &next,
            Some(wrong),
            StatusCode::UNAUTHORIZED,
        );
    };
    if user.locked_until > now {
        let minutes = minutes(user.locked_until - now);
        return credentials_page(&state, jar, false, &next, Some(&format!("This account is locked after too many failed sign-ins; try again in {minutes} minutes.")), StatusCode::TOO_MANY_REQUESTS);
    }
    if !ok {
        if let Err(e) = state
            .store
            .record_failed_login(&user.id, MAX_FAILURES, now + LOCK_SECS)
            .await
        {
            return ApiError::from(e).into_response();
        }
        return credentials_page(
            &state,
            jar,
            false,
            &next,
            Some(wrong),
            StatusCode::UNAUTHORIZED,
        );
    }
    if let Err(e) = state.store.reset_failed_logins(&user.id).await {
        return ApiError::from(e).into_response();
    }
    match start_session(&state, jar, &user.id).await {
        Ok(jar) => (jar, Redirect::to(&next)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Posted sign-out form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// CSRF token.
    csrf: Option<String>,
}

impl CsrfForm {
    /// The posted token.
    pub fn csrf_value(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    user: Option<CurrentUser>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&state, &headers, &jar, form.csrf.as_deref()) {
        return r;
    }
    if let Some(u) = user {
        if let Err(e) = state.store.delete_session(&u.session_hash).await {
            return ApiError::from(e).into_response();
        }
        // Downloads and runs this session started end with it (other instances: within 2 s).
        state.streams.end_session(&u.session_hash);
    }
    (end_session(jar), Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn email_shape_is_checked() {
        assert!(valid_email("a@b.co"));
        for bad in ["", "a", "a@b", "@b.co", "a b@c.d", "a@.co", "a@co."] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
