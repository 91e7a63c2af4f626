//! Who signed in at a provider, once the authorization code has been exchanged for a token.
//!
//! - GitHub: `GET {api_base}/user` with the access token (the numeric `id` is the subject, never the
//!   renameable `login`), and `GET {api_base}/user/emails` for the primary *verified* e-mail.
//! - Google: the OpenID Connect `id_token` from the token response. It came straight from the token
//!   endpoint over the relay's own TLS connection, so per OpenID Connect Core §3.1.3.7 the TLS server
//!   check stands in for its signature; the issuer, audience and expiry are still checked.
//!
//! An e-mail is only ever taken when the provider says it is verified, and it is never used to
//! find an existing account (see `Store::user_for_identity`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::oauth_login::Provider;
use crate::config::ProviderConfig;

/// Largest provider response read (user JSON, e-mail list).
const MAX_PROVIDER_BODY: usize = 64 * 1024;

/// A provider account as the relay records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// Stable id at the provider (GitHub user id, Google `sub`).
    pub subject: String,
    /// A verified e-mail, when the provider shared one.
    pub email: Option<String>,
}

/// Why the identity could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The provider's API could not be reached or answered with a non-success status: it is down,
    /// or the token was not accepted.
    #[error("the provider's user endpoint failed: {0}")]
    Request(String),
    /// The provider answered something that is not the expected JSON (or too large).
    #[error("the provider's answer has an unexpected shape: {0}")]
    Malformed(String),
    /// The token response carried no `id_token` (Google without the `openid` scope).
    #[error("the token response has no id_token")]
    MissingIdToken,
    /// The `id_token` is for another client, from another issuer, or expired: it was not issued
    /// for this sign-in.
    #[error("the id_token is not valid for this relay: {0}")]
    InvalidIdToken(&'static str),
}

/// `GET {api_base}/user` (and `/user/emails`).
///
/// # Errors
/// [`IdentityError::Request`] or [`IdentityError::Malformed`].
pub async fn fetch_github_identity(
    http: &reqwest::Client,
    config: &ProviderConfig,
    access_token: &str,
) -> Result<ProviderIdentity, IdentityError> {
    #[derive(Deserialize)]
    struct GithubUser {
        id: u64,
    }
    #[derive(Deserialize)]
    struct GithubEmail {
        email: String,
        primary: bool,
        verified: bool,
    }
    let base = config.api_base.trim_end_matches('/');
    let user: GithubUser = github_get(http, &format!("{base}/user"), access_token).await?;
    // Without the `user:email` grant this fails: the account then simply has no e-mail.
    let email = match github_get::<Vec<GithubEmail>>(
        http,
        &format!("{base}/user/emails"),
        access_token,
    )
    .await
    {
        Ok(list) => list
            .into_iter()
            .find(|e| e.primary && e.verified)
            .map(|e| e.email.to_ascii_lowercase()),
        Err(e) => {
            tracing::info!(error = %e, "GitHub e-mail list unavailable; signing in without e-mail");
            None
        }
    };
    Ok(ProviderIdentity {
        subject: user.id.to_string(),
        email,
    })
}

async fn github_get<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<T, IdentityError> {
    let response = http
        .get(url)
        .bearer_auth(access_token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        // GitHub refuses API calls without a User-Agent.
        .header(
            "user-agent",
            concat!("katachi-relay/", env!("CARGO_PKG_VERSION")),
        )
        .send()
        .await
        .map_err(|e| IdentityError::Request(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(IdentityError::Request(format!(
            "HTTP {}",
            response.status().as_u16()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PROVIDER_BODY as u64)
    {
        return Err(IdentityError::Malformed("response too large".into()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| IdentityError::Request(e.without_url().to_string()))?;
    if body.len() > MAX_PROVIDER_BODY {
        return Err(IdentityError::Malformed("response too large".into()));
    }
    serde_json::from_slice(&body).map_err(|e| IdentityError::Malformed(e.to_string()))
}

/// Claims of a Google `id_token` that the relay reads.
#[derive(Debug, Deserialize)]
struct IdTokenClaims {
    iss: String,
    aud: Audience,
    sub: String,
    exp: i64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// `aud` is a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Audience::One(a) => a == client_id,
            Audience::Many(list) => list.iter().any(|a| a == client_id),
        }
    }
}

/// Issuers accepted for `config`: its authorization base, with and without scheme (Google's
/// tokens say `https://accounts.google.com` or `accounts.google.com`).
fn issuer_matches(iss: &str, config: &ProviderConfig) -> bool {
    let base = config.auth_base.trim_end_matches('/');
    let bare = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .unwrap_or(base);
    iss == base || iss == bare
}

/// Reads a Google `id_token` received from the token endpoint.
///
/// # Errors
/// [`IdentityError::Malformed`] for a token that is not a JWT, [`IdentityError::InvalidIdToken`]
/// for another issuer or audience, or an expired token.
///
/// # Security
/// The signature is not checked: the token came directly from the provider's token endpoint over
/// a server-authenticated connection (OpenID Connect Core §3.1.3.7). Never call this with a token
/// that came through the browser.
pub fn read_google_id_token(
    id_token: &str,
    config: &ProviderConfig,
    now: i64,
) -> Result<ProviderIdentity, IdentityError> {
    let mut parts = id_token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err(IdentityError::Malformed("id_token is not a JWT".into())),
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| IdentityError::Malformed("id_token payload is not base64url".into()))?;
    let claims: IdTokenClaims =
        serde_json::from_slice(&json).map_err(|e| IdentityError::Malformed(e.to_string()))?;
    // A token minted for another application must not sign anyone in here.
    if !claims.aud.contains(&config.client_id) {
        return Err(IdentityError::InvalidIdToken("audience is another client"));
    }
    if !issuer_matches(&claims.iss, config) {
        return Err(IdentityError::InvalidIdToken("issued by someone else"));
    }
    if claims.exp <= now {
        return Err(IdentityError::InvalidIdToken("expired"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(IdentityError::InvalidIdToken("subject missing or too long"));
    }
    // Google sends `true` (and, in older tokens, `"true"`).
    let verified = matches!(claims.email_verified, Some(serde_json::Value::Bool(true)))
        || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "true");
    Ok(ProviderIdentity {
        subject: claims.sub,
        email: claims
            .email
            .filter(|_| verified)
            .map(|e| e.to_ascii_lowercase()),
    })
}

/// What each provider contributes to the sign-in.
pub(crate) fn scopes(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::GitHub => &["read:user", "user:email"],
        Provider::Google => &["openid", "email"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProviderConfig {
        ProviderConfig {
            client_id: "client-1".into(),
            client_secret: "s".into(),
            auth_base: "https://accounts.google.com".into(),
            api_base: "https://oauth2.googleapis.com".into(),
        }
    }

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn google_id_token_gives_subject_and_only_a_verified_email() {
        let ok = jwt(serde_json::json!({
            "iss": "accounts.google.com", "aud": "client-1", "sub": "1234", "exp": 2000,
            "email": "Ana@Example.com", "email_verified": true
        }));
        let id = read_google_id_token(&ok, &config(), 1000).unwrap();
        assert_eq!(id.subject, "1234");
        assert_eq!(id.email.as_deref(), Some("ana@example.com"));

        let unverified = jwt(serde_json::json!({
            "iss": "https://accounts.google.com", "aud": ["x", "client-1"], "sub": "1234", "exp": 2000,
            "email": "ana@example.com", "email_verified": false
        }));
        assert_eq!(
            read_google_id_token(&unverified, &config(), 1000)
                .unwrap()
                .email,
            None
        );
    }

    #[test]
    fn google_id_token_for_another_client_issuer_or_time_is_refused() {
        for (claims, why) in [
            (
                serde_json::json!({"iss": "accounts.google.com", "aud": "other", "sub": "1", "exp": 2000}),
                "audience",
            ),
            (
                serde_json::json!({"iss": "https://evil.example", "aud": "client-1", "sub": "1", "exp": 2000}),
                "issuer",
            ),
            (
                serde_json::json!({"iss": "accounts.google.com", "aud": "client-1", "sub": "1", "exp": 999}),
                "expired",
            ),
        ] {
            assert!(
                matches!(
                    read_google_id_token(&jwt(claims), &config(), 1000),
                    Err(IdentityError::InvalidIdToken(_))
                ),
                "{why}"
            );
        }
        for bad in ["", "a.b", "a.!!!.c", "a.b.c.d"] {
            assert!(read_google_id_token(bad, &config(), 1000).is_err(), "{bad}");
        }
    }
}
