//! A small OAuth 2.0 provider on `127.0.0.1` that speaks GitHub's and Google's real protocol, so the
//! relay's sign-in is tested without the internet.
//!
//! - Authorization endpoints (`/login/oauth/authorize` as GitHub, `/o/oauth2/v2/auth` as Google)
//!   check the client id, `response_type=code`, a `state` and an S256 `code_challenge`, then show a
//!   consent page with "Authorize" and "Cancel" links that redirect back with `code` + `state` or
//!   `error=access_denied` + `state`.
//! - Token endpoints (`/login/oauth/access_token`, `/token`) check the client secret (form fields or
//!   HTTP Basic), that the code is known, unused, young and issued for this `redirect_uri`, and that
//!   `BASE64URL(SHA-256(code_verifier))` equals the challenge — then issue a bearer token (and, for
//!   Google, an `id_token` with `iss`, `aud`, `sub`, `exp`, `email`, `email_verified`).
//! - `GET /user` and `/user/emails` (GitHub API) require that bearer token.
//!
//! Plain HTTP on loopback: the relay accepts http provider URLs only for localhost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use katachi_relay::config::ProviderConfig;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// How long an authorization code stays exchangeable (GitHub: 10 minutes).
const CODE_TTL: Duration = Duration::from_secs(600);

/// Which provider a request speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    GitHub,
    Google,
}

/// The person signed in at the provider.
#[derive(Debug, Clone)]
pub struct ProviderAccount {
    /// GitHub numeric user id.
    pub github_id: u64,
    /// GitHub login (renameable; the relay must not key on it).
    pub github_login: String,
    /// Google subject.
    pub google_sub: String,
    /// E-mail at the provider.
    pub email: String,
    /// Whether the provider has verified the e-mail.
    pub email_verified: bool,
}

impl Default for ProviderAccount {
    fn default() -> Self {
        Self {
            github_id: 583_231,
            github_login: "octocat".into(),
            google_sub: "110248495921238986420".into(),
            email: "octo@example.com".into(),
            email_verified: true,
        }
    }
}

/// An authorization request waiting on the consent page.
#[derive(Debug, Clone)]
struct PendingAuthorization {
    flavor: Flavor,
    redirect_uri: String,
    state: String,
    code_challenge: String,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
struct IssuedCode {
    flavor: Flavor,
    redirect_uri: String,
    code_challenge: String,
    issued_at: Instant,
    used: bool,
}

/// What the handlers share.
struct Shared {
    base_url: String,
    client_id: String,
    client_secret: String,
    account: Mutex<ProviderAccount>,
    pending: Mutex<HashMap<String, PendingAuthorization>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    tokens: Mutex<HashMap<String, Flavor>>,
    token_endpoint_down: AtomicBool,
    exchanges: AtomicUsize,
    pkce_failures: AtomicUsize,
    client_auth_failures: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running local provider; stops when dropped.
pub struct LocalOAuthProvider {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LocalOAuthProvider {
    /// Starts a provider for the client `client_id` / `client_secret` on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(client_id: &str, client_secret: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            account: Mutex::new(ProviderAccount::default()),
            pending: Mutex::default(),
            codes: Mutex::default(),
            tokens: Mutex::default(),
            token_endpoint_down: AtomicBool::new(false),
            exchanges: AtomicUsize::new(0),
            pkce_failures: AtomicUsize::new(0),
            client_auth_failures: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize_github))
            .route("/o/oauth2/v2/auth", get(authorize_google))
            .route("/consent", get(consent))
            .route("/login/oauth/access_token", post(token_github))
            .route("/token", post(token_google))
            .route("/user", get(github_user))
            .route("/user/emails", get(github_emails))
            .with_state(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            shared,
            addr,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's provider settings pointing at this server, with this client's credentials.
    pub fn relay_config(&self) -> ProviderConfig {
        ProviderConfig {
            client_id: self.shared.client_id.clone(),
            client_secret: self.shared.client_secret.clone(),
            auth_base: self.shared.base_url.clone(),
            api_base: self.shared.base_url.clone(),
        }
    }

    /// Changes who is signed in at the provider.
    pub fn set_account(&self, account: ProviderAccount) {
        *lock(&self.shared.account) = account;
    }

    /// Makes the token endpoints answer `503 temporarily_unavailable` (or work again).
    pub fn set_token_endpoint_down(&self, down: bool) {
        self.shared
            .token_endpoint_down
            .store(down, Ordering::SeqCst);
    }

    /// Codes exchanged successfully so far.
    pub fn successful_exchanges(&self) -> usize {
        self.shared.exchanges.load(Ordering::SeqCst)
    }

    /// Token requests refused because the PKCE verifier did not match the challenge.
    pub fn pkce_failures(&self) -> usize {
        self.shared.pkce_failures.load(Ordering::SeqCst)
    }

    /// Token requests refused because of a wrong or missing client secret.
    pub fn client_auth_failures(&self) -> usize {
        self.shared.client_auth_failures.load(Ordering::SeqCst)
    }
}

impl Drop for LocalOAuthProvider {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Query of the authorization endpoints.
#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

fn provider_page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
        )),
    )
        .into_response()
}

async fn authorize_github(
    State(s): State<Arc<Shared>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    authorize(&s, Flavor::GitHub, q)
}

async fn authorize_google(
    State(s): State<Arc<Shared>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    authorize(&s, Flavor::Google, q)
}

/// Like the real providers, a bad client or redirect gets an error page, never a redirect.
fn authorize(s: &Shared, flavor: Flavor, q: AuthorizeQuery) -> Response {
    let bad = |why: &str| provider_page(StatusCode::BAD_REQUEST, "Invalid request", why);
    if q.client_id.as_deref() != Some(s.client_id.as_str()) {
        return bad("unknown client_id");
    }
    if q.response_type.as_deref() != Some("code") {
        return bad("response_type must be code");
    }
    let Some(redirect_uri) = q.redirect_uri.filter(|r| r.starts_with("https://")) else {
        return bad("redirect_uri missing or not https");
    };
    let Some(state) = q.state.filter(|st| !st.is_empty()) else {
        return bad("state missing");
    };
    let Some(code_challenge) = q.code_challenge.filter(|c| c.len() == 43) else {
        return bad("code_challenge missing");
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return bad("code_challenge_method must be S256");
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    lock(&s.pending).insert(
        id.clone(),
        PendingAuthorization {
            flavor,
            redirect_uri,
            state,
            code_challenge,
        },
    );
    let who = lock(&s.account).email.clone();
    provider_page(
        StatusCode::OK,
        "Authorize katachi",
        &format!(
            "<p>katachi wants to know who you are ({who}).</p>\
             <p><a id=\"authorize\" href=\"/consent?request={id}&amp;approve=yes\">Authorize</a> \
             <a id=\"cancel\" href=\"/consent?request={id}&amp;approve=no\">Cancel</a></p>"
        ),
    )
}

/// Query of the consent links.
#[derive(Debug, Deserialize)]
struct ConsentQuery {
    request: String,
    approve: String,
}

/// The user's answer: back to the client with a code, or with `access_denied`.
async fn consent(State(s): State<Arc<Shared>>, Query(q): Query<ConsentQuery>) -> Response {
    let Some(pending) = lock(&s.pending).remove(&q.request) else {
        return provider_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "unknown request",
        );
    };
    let Ok(mut target) = url::Url::parse(&pending.redirect_uri) else {
        return provider_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "bad redirect_uri",
        );
    };
    if q.approve == "yes" {
        let code = hex::encode(rand::random::<[u8; 20]>());
        lock(&s.codes).insert(
            code.clone(),
            IssuedCode {
                flavor: pending.flavor,
                redirect_uri: pending.redirect_uri.clone(),
                code_challenge: pending.code_challenge,
                issued_at: Instant::now(),
                used: false,
            },
        );
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &pending.state);
    } else {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair(
                "error_description",
                "The user has denied your application access.",
            )
            .append_pair("state", &pending.state);
    }
    Redirect::to(target.as_str()).into_response()
}

/// Form of the token endpoints.
#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form.
fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> (Option<String>, Option<String>) {
    let basic = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form.client_id.clone(), form.client_secret.clone()),
    }
}

async fn token_github(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    token(&s, Flavor::GitHub, &headers, &form)
}

async fn token_google(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    token(&s, Flavor::Google, &headers, &form)
}

fn token(s: &Shared, flavor: Flavor, headers: &HeaderMap, form: &TokenForm) -> Response {
    if s.token_endpoint_down.load(Ordering::SeqCst) {
        return token_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    }
    if form.grant_type.as_deref() != Some("authorization_code") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let (id, secret) = client_credentials(headers, form);
    if id.as_deref() != Some(s.client_id.as_str())
        || secret.as_deref() != Some(s.client_secret.as_str())
    {
        s.client_auth_failures.fetch_add(1, Ordering::SeqCst);
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(code) = form.code.as_deref() else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let issued = {
        let mut codes = lock(&s.codes);
        match codes.get_mut(code) {
            Some(c) if !c.used && c.issued_at.elapsed() < CODE_TTL && c.flavor == flavor => {
                // Single use, whatever happens next.
                c.used = true;
                c.clone()
            }
            _ => return token_error(StatusCode::BAD_REQUEST, "invalid_grant"),
        }
    };
    if form.redirect_uri.as_deref() != Some(issued.redirect_uri.as_str()) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // PKCE (RFC 7636 §4.6): BASE64URL(SHA256(code_verifier)) must equal the challenge.
    let verifier = form.code_verifier.as_deref().unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !(43..=128).contains(&verifier.len()) || computed != issued.code_challenge {
        s.pkce_failures.fetch_add(1, Ordering::SeqCst);
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let access_token = format!("gho_{}", hex::encode(rand::random::<[u8; 18]>()));
    lock(&s.tokens).insert(access_token.clone(), flavor);
    s.exchanges.fetch_add(1, Ordering::SeqCst);
    match flavor {
        Flavor::GitHub => Json(json!({
            "access_token": access_token,
            "token_type": "bearer",
            "scope": "read:user,user:email",
        }))
        .into_response(),
        Flavor::Google => {
            let account = lock(&s.account).clone();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let claims = json!({
                "iss": s.base_url,
                "aud": s.client_id,
                "azp": s.client_id,
                "sub": account.google_sub,
                "email": account.email,
                "email_verified": account.email_verified,
                "iat": now,
                "exp": now + 3600,
            });
            let id_token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims.to_string()),
                URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
            );
            Json(json!({
                "access_token": access_token,
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": "openid https://www.googleapis.com/auth/userinfo.email",
                "id_token": id_token,
            }))
            .into_response()
        }
    }
}

/// The GitHub bearer token of a request, if this provider issued it.
fn github_bearer(s: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("token "))
        })
        .is_some_and(|t| lock(&s.tokens).get(t) == Some(&Flavor::GitHub))
}

fn bad_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "message": "Bad credentials" })),
    )
        .into_response()
}

async fn github_user(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !github_bearer(&s, &headers) {
        return bad_credentials();
    }
    let a = lock(&s.account).clone();
    // The public e-mail is often null on GitHub: the relay reads /user/emails.
    Json(json!({ "id": a.github_id, "login": a.github_login, "email": null })).into_response()
}

async fn github_emails(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !github_bearer(&s, &headers) {
        return bad_credentials();
    }
    let a = lock(&s.account).clone();
    Json(json!([
        { "email": "old@example.com", "primary": false, "verified": true, "visibility": null },
        { "email": a.email, "primary": true, "verified": a.email_verified, "visibility": "private" },
    ]))
    .into_response()
}
