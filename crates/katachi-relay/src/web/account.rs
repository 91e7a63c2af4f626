//! Password accounts: sign-up, sign-in, sign-out.
//!
//! # Security
//! - Passwords are hashed with argon2id, a bounded number at a time ([`crate::password`]).
//! - Sign-in and sign-up are limited per client address (IPv6 per /64): in memory first
//!   ([`crate::address_limit`]), then in the store's shared windows.
//! - Per-account delay: from the 5th consecutive failure, the account waits 30 s, doubling with each
//!   further failure up to an hour, before a password from an unknown browser is checked again.
//!   Failures during the wait are not counted, so a stranger cannot stretch it further than one
//!   failure per wait. A browser where the account signed in before ([`super::known_browser`])
//!   still gets its password checked: the owner is never locked out by a stranger.
//! - One answer for every refusal: unknown e-mail, provider-only account, wrong password and an
//!   account in its delay all get the same status, the same page and the same argon2 work, so
//!   neither the answer nor its time tells whether an account exists or is being attacked.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use maud::html;
use serde::Deserialize;

use super::layout::{minutes, notice, page};
use super::session::{check_csrf, csrf_token, end_session, safe_next, start_session, CurrentUser};
use crate::client_addr::address_bucket_key;
use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::metrics::Limiter;
use crate::now_unix;
use crate::state::AppState;
use crate::store::RateLimit;

/// Consecutive failures that cost nothing; from this one on, the account waits.
const FREE_FAILURES: i64 = 5;
/// The first wait, doubling with each further failure.
const FIRST_DELAY_SECS: i64 = 30;
/// The longest wait.
const MAX_DELAY_SECS: i64 = 3600;
/// Sign-in attempts per address per window.
const ATTEMPTS_PER_IP: i64 = 30;
/// Rate-limit window.
const WINDOW_SECS: i64 = 15 * 60;
/// Minimum password length.
const MIN_PASSWORD: usize = 10;
/// The one answer to every refused sign-in (see the module docs).
const REFUSED: &str = "Wrong e-mail or password, or too many failed attempts on this account. Try again later, or from a browser where you signed in before.";

/// The wait after `failures` consecutive failures: 30 s at the 5th, doubling, at most an hour.
fn failure_delay(failures: i64) -> i64 {
    let doublings = (failures - FREE_FAILURES).clamp(0, 20);
    FIRST_DELAY_SECS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_DELAY_SECS)
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
    ClientIp(client): ClientIp,
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
        .hit_rate_limit(
            &format!("signup:{}", address_bucket_key(client)),
            20,
            3600,
            now,
        )
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { retry_after }) => {
            state.metrics.rate_limited(Limiter::SignUp);
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
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let hash = match state.passwords.hash(form.password).await {
        Ok(h) => h,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    match state.store.create_user(&email, Some(&hash), now).await {
        Ok(Some(user)) => {
            // The account approves devices once the mailed link is opened; a failed send is
            // retried from the device page.
            if let Err(e) = super::verify_email::send_link(&state, &user).await {
                tracing::error!(error = %e, "sending the verification link failed");
            }
            signed_in(&state, jar, &user.id, &next, now).await
        }
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
    ClientIp(client): ClientIp,
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
            &format!("login:{}", address_bucket_key(client)),
            ATTEMPTS_PER_IP,
            WINDOW_SECS,
            now,
        )
        .await
    {
        Ok(RateLimit::Allowed) => {}
        Ok(RateLimit::Limited { retry_after }) => {
            state.metrics.rate_limited(Limiter::SignIn);
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
            );
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let email = form.email.trim().to_ascii_lowercase();
    let user = match state.store.user_by_email(&email).await {
        Ok(u) => u.filter(|u| u.password_hash.is_some()),
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Looked up for unknown accounts too (under an id no account has): the same queries either way.
    let user_id = user.as_ref().map_or("", |u| u.id.as_str());
    let known = match super::known_browser::is_known(&state, &jar, user_id, now).await {
        Ok(k) => k,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Every path does the same argon2 work: unknown accounts against the dummy hash.
    let ok = state
        .passwords
        .verify(
            user.as_ref().and_then(|u| u.password_hash.clone()),
            form.password,
        )
        .await;
    let refused = || {
        credentials_page(
            &state,
            jar.clone(),
            false,
            &next,
            Some(REFUSED),
            StatusCode::UNAUTHORIZED,
        )
    };
    let Some(user) = user else {
        return refused();
    };
    // In its delay, an account's password is checked only from a browser it signed in on; other
    // attempts are not counted (a stranger cannot stretch the delay) and get the common answer.
    if user.locked_until > now && !known {
        state.metrics.rate_limited(Limiter::AccountDelay);
        return refused();
    }
    if !ok {
        if let Err(e) = state
            .store
            .record_failed_login(&user.id, now, FREE_FAILURES, failure_delay)
            .await
        {
            return ApiError::from(e).into_response();
        }
        return refused();
    }
    if let Err(e) = state.store.reset_failed_logins(&user.id).await {
        return ApiError::from(e).into_response();
    }
    signed_in(&state, jar.clone(), &user.id, &next, now).await
}

/// A new session for `user_id`, this browser remembered as theirs, and on to `next`.
async fn signed_in(
    state: &AppState,
    jar: CookieJar,
    user_id: &str,
    next: &str,
    now: i64,
) -> Response {
    let jar = match super::known_browser::remember(state, jar, user_id, now).await {
        Ok(j) => j,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match start_session(state, jar, user_id).await {
        Ok(jar) => (jar, Redirect::to(next)).into_response(),
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
        // Downloads and runs this session started end with it, on every instance.
        state.streams.end_session(&u.session_hash);
        crate::cluster::broadcast::publish(
            &state,
            crate::cluster::broadcast::Notice::SignedOut {
                session_hash: u.session_hash.clone(),
            },
        )
        .await;
    }
    (end_session(jar), Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_delay_starts_at_the_fifth_failure_doubles_and_stops_at_an_hour() {
        assert_eq!(failure_delay(5), 30);
        assert_eq!(failure_delay(6), 60);
        assert_eq!(failure_delay(7), 120);
        assert_eq!(failure_delay(12), 3600);
        assert_eq!(failure_delay(i64::MAX), 3600);
    }

    #[test]
    fn email_shape_is_checked() {
        assert!(valid_email("a@b.co"));
        for bad in ["", "a", "a@b", "@b.co", "a b@c.d", "a@.co", "a@co."] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
