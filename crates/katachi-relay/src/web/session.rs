//! Session and CSRF cookies, the signed-in user, and safe `next=` targets.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use subtle::ConstantTimeEq;

use crate::state::AppState;
use crate::store::User;
use crate::{now_unix, random_hex, sha256_hex};

/// Session cookie (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-katachi_session";
/// CSRF cookie (double submit).
pub const CSRF_COOKIE: &str = "__Host-katachi_csrf";
/// Session lifetime.
pub const SESSION_SECS: i64 = 7 * 24 * 3600;

/// The signed-in user of this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The account.
    pub user: User,
    /// Hash of the session id (sign-out deletes it).
    pub session_hash: String,
}

/// The session cookie's user; `Ok(None)` without a valid session.
///
/// # Errors
/// The store's error when the lookup failed: the database being unavailable is not "signed out"
/// (the caller answers `503`, it does not send the browser to sign in).
async fn current(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Option<CurrentUser>, crate::store::StoreError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(sid) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(None);
    };
    if sid.len() != 64 {
        return Ok(None);
    }
    let hash = sha256_hex(&sid);
    Ok(state
        .store
        .session_user(&hash, now_unix())
        .await?
        .map(|user| CurrentUser {
            user,
            session_hash: hash,
        }))
}

impl OptionalFromRequestParts<AppState> for CurrentUser {
    type Rejection = Response;

    /// `None` without a session; a failed lookup rejects the request (`503` while the database
    /// is unavailable) instead of treating the browser as signed out.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        current(parts, state)
            .await
            .map_err(|e| crate::error::ApiError::from(e).into_response())
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Response;

    /// Pages that need a user send everyone else to sign in, coming back afterwards.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match current(parts, state).await {
            Ok(Some(u)) => Ok(u),
            Err(e) => Err(crate::error::ApiError::from(e).into_response()),
            Ok(None) => {
                if parts.uri.path().starts_with("/api/") {
                    return Err(crate::error::ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "session.required",
                        "sign in first",
                    )
                    .into_response());
                }
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(Redirect::to(&format!("/login?next={}", urlencode(next))).into_response())
            }
        }
    }
}

/// A new session for `user_id`: stored by hash, cookie set on the returned jar.
///
/// # Errors
/// Store failures.
pub async fn start_session(
    state: &AppState,
    jar: CookieJar,
    user_id: &str,
) -> Result<CookieJar, crate::store::StoreError> {
    let sid = random_hex(32);
    let now = now_unix();
    state
        .store
        .create_session(&sha256_hex(&sid), user_id, now, now + SESSION_SECS)
        .await?;
    let cookie = Cookie::build((SESSION_COOKIE, sid))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time_secs(SESSION_SECS))
        .build();
    Ok(jar.add(cookie))
}

/// Removes the session cookie. The removal carries the cookie's attributes: browsers ignore a
/// `__Host-` cookie without Secure, so a bare removal would leave the cookie in place.
pub fn end_session(jar: CookieJar) -> CookieJar {
    jar.remove(
        Cookie::build((SESSION_COOKIE, ""))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(SameSite::Lax)
            .build(),
    )
}

fn time_secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

/// The CSRF token of this browser, creating the cookie when missing.
pub fn csrf_token(jar: CookieJar) -> (CookieJar, String) {
    if let Some(c) = jar.get(CSRF_COOKIE) {
        if c.value().len() == 64 {
            let v = c.value().to_owned();
            return (jar, v);
        }
    }
    let token = random_hex(32);
    let cookie = Cookie::build((CSRF_COOKIE, token.clone()))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .build();
    (jar.add(cookie), token)
}

/// Checks a form post: the CSRF field must equal the cookie (constant time), and a present `Origin`
/// must be ours. Stops cross-site form posts.
pub fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    field: Option<&str>,
) -> Result<(), Response> {
    if let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) {
        if origin != state.public_origin() {
            return Err(forbidden(
                "this form was posted from another site; open katachi directly and try again",
            ));
        }
    }
    let cookie = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let field = field.unwrap_or_default();
    if cookie.len() != 64 || !bool::from(cookie.as_bytes().ct_eq(field.as_bytes())) {
        return Err(forbidden("the form expired or did not come from this site (missing CSRF token); reload the page and try again"));
    }
    Ok(())
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        super::layout::message_page("Request refused", message),
    )
        .into_response()
}

/// A safe local redirect target: a path on this site, never another host (`//x`, `/\x`, `https:`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\')
                && n.len() <= 512 =>
        {
            n.to_owned()
        }
        _ => "/agents".to_owned(),
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_only_allows_local_paths() {
        assert_eq!(
            safe_next(Some("/device?user_code=ABCD-EFGH")),
            "/device?user_code=ABCD-EFGH"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "/\u{0}x",
            "evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/agents", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/agents");
    }
}
