//! The known-browser cookie: a browser where an account signed in with its password.
//!
//! # Security
//! A stranger who sends wrong passwords makes the account wait longer and longer before a password
//! is checked again (`account`). That delay must not lock the owner out: a browser that carries a
//! known-browser token of the account still gets its password checked. The token is 32 random bytes
//! (`__Host-`, Secure, HttpOnly), stored by hash with the account, valid for 180 days; it grants
//! nothing by itself — the password is still required.

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::state::AppState;
use crate::store::StoreError;
use crate::{random_hex, sha256_hex};

/// Cookie naming this browser to the accounts that signed in on it.
pub const KNOWN_BROWSER_COOKIE: &str = "__Host-katachi_known";
/// How long a browser stays known.
const KNOWN_SECS: i64 = 180 * 24 * 3600;

/// Whether this request comes from a browser known to `user_id`.
///
/// # Errors
/// Store failures.
pub async fn is_known(
    state: &AppState,
    jar: &CookieJar,
    user_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(token) = jar.get(KNOWN_BROWSER_COOKIE).map(Cookie::value) else {
        return Ok(false);
    };
    if token.len() != 64 {
        return Ok(false);
    }
    state
        .store
        .is_known_browser(&sha256_hex(token), user_id, now)
        .await
}

/// Marks this browser as known to `user_id` (after a correct password): keeps a token that
/// already names the account, otherwise sets a fresh one.
///
/// # Errors
/// Store failures.
pub async fn remember(
    state: &AppState,
    jar: CookieJar,
    user_id: &str,
    now: i64,
) -> Result<CookieJar, StoreError> {
    if is_known(state, &jar, user_id, now).await? {
        return Ok(jar);
    }
    let token = random_hex(32);
    state
        .store
        .add_known_browser(&sha256_hex(&token), user_id, now, now + KNOWN_SECS)
        .await?;
    let cookie = Cookie::build((KNOWN_BROWSER_COOKIE, token))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(KNOWN_SECS))
        .build();
    Ok(jar.add(cookie))
}
