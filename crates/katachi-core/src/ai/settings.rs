//! Which provider, model and base URL a workspace uses: checked when set (CLI, tray) and again
//! when read (the store is input too), with the workspace's own row winning over the default.
//!
//! # Guarantees
//! - A provider is one of the known kinds; a base URL is `https://`, or `http://` only to a
//!   loopback address (a local server such as Ollama); it has no user info, query or fragment.
//! - The API key is named, never stored here: it lives in the vault under `key_name` (the
//!   provider kind's name unless set), so settings can be shown anywhere.

use serde::Serialize;
use url::Url;

use crate::store::{AiSettingsRow, Store, StoreError, DEFAULT_AI_SETTINGS};

/// The provider kinds katachi speaks.
pub const PROVIDER_KINDS: [&str; 2] = ["openai", "anthropic"];

/// Longest model name accepted.
const MAX_MODEL_CHARS: usize = 200;

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Not a provider katachi speaks.
    #[error("unknown provider {0:?}: use `openai` (also for OpenAI-compatible servers such as Ollama, llama.cpp or vLLM, with --base-url) or `anthropic`")]
    UnknownProvider(String),
    /// The model name is empty, too long or has control characters.
    #[error("invalid model name {0:?}: give the provider's model name, e.g. gpt-4.1 or claude-sonnet-4-5")]
    InvalidModel(String),
    /// The base URL is not acceptable.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key name breaks the vault's naming rule.
    #[error("invalid key name {0:?}: use 1-64 characters from a-z, 0-9, '-' and '_'")]
    InvalidKeyName(String),
    /// The folder is not an allowed workspace, so it has no settings of its own.
    #[error("{0} is not an allowed workspace; allow it first with `katachi workspace add {0}` or in the tray window's Workspaces")]
    NotAWorkspace(String),
    /// No provider is set for the workspace nor as the default.
    #[error("no AI provider is set: on the agent's machine run `katachi ai use openai gpt-4.1` (or `anthropic <model>`), or choose one in the tray's Settings")]
    NotConfigured,
    /// The store could not be read or written.
    #[error("the AI settings cannot be read or written: {0}")]
    Store(String),
}

impl SettingsError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            SettingsError::NotConfigured => "ai.not_configured",
            SettingsError::Store(_) => "store.unavailable",
            SettingsError::NotAWorkspace(_) => "workspace.not_allowed",
            _ => "ai.settings_invalid",
        }
    }
}

impl From<StoreError> for SettingsError {
    fn from(e: StoreError) -> Self {
        SettingsError::Store(e.to_string())
    }
}

/// Checked provider settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiSettings {
    /// One of [`PROVIDER_KINDS`].
    pub provider: String,
    /// The model name.
    pub model: String,
    /// Another base URL than the provider's own.
    pub base_url: Option<Url>,
    /// The vault entry of the API key.
    pub key_name: String,
    /// These are the workspace's own settings, not the default.
    pub own: bool,
}

impl AiSettings {
    /// Checks settings as given by the user.
    ///
    /// # Errors
    /// [`SettingsError`] naming what is wrong.
    pub fn check(
        provider: &str,
        model: &str,
        base_url: Option<&str>,
        key_name: Option<&str>,
    ) -> Result<AiSettings, SettingsError> {
        let provider = provider.trim().to_ascii_lowercase();
        if !PROVIDER_KINDS.contains(&provider.as_str()) {
            return Err(SettingsError::UnknownProvider(provider));
        }
        let model = model.trim();
        if model.is_empty()
            || model.chars().count() > MAX_MODEL_CHARS
            || model.chars().any(char::is_control)
        {
            return Err(SettingsError::InvalidModel(model.to_owned()));
        }
        let base_url = base_url.map(check_base_url).transpose()?;
        let key_name = key_name.unwrap_or(&provider).to_owned();
        let key_ok = (1..=64).contains(&key_name.len())
            && key_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !key_ok {
            return Err(SettingsError::InvalidKeyName(key_name));
        }
        Ok(AiSettings {
            provider,
            model: model.to_owned(),
            base_url,
            key_name,
            own: false,
        })
    }

    /// The settings workspace `workspace_id` uses: its own row, else the default.
    ///
    /// # Errors
    /// [`SettingsError::NotConfigured`] when neither is set; a stored row that no longer passes
    /// the checks is refused with what is wrong.
    pub fn for_workspace(store: &Store, workspace_id: i64) -> Result<AiSettings, SettingsError> {
        let table = store.ai_settings();
        let (row, own) = match table.get(workspace_id)? {
            Some(row) => (row, true),
            None => (
                table
                    .get(DEFAULT_AI_SETTINGS)?
                    .ok_or(SettingsError::NotConfigured)?,
                false,
            ),
        };
        let mut settings = Self::check(
            &row.provider,
            &row.model,
            row.base_url.as_deref(),
            row.key_name.as_deref(),
        )?;
        settings.own = own;
        Ok(settings)
    }

    /// Stores these settings for `workspace_id` ([`DEFAULT_AI_SETTINGS`]: the default).
    ///
    /// # Errors
    /// [`SettingsError::Store`] when the store fails.
    pub fn save(&self, store: &Store, workspace_id: i64) -> Result<(), SettingsError> {
        let key_name = (self.key_name != self.provider).then(|| self.key_name.clone());
        store.ai_settings().set(
            workspace_id,
            &AiSettingsRow {
                provider: self.provider.clone(),
                model: self.model.clone(),
                base_url: self.base_url.as_ref().map(Url::to_string),
                key_name,
            },
        )?;
        Ok(())
    }
}

/// A base URL: https, or http to loopback only; no credentials, query or fragment.
fn check_base_url(raw: &str) -> Result<Url, SettingsError> {
    let bad = |reason| SettingsError::InvalidBaseUrl {
        url: raw.to_owned(),
        reason,
    };
    let url =
        Url::parse(raw.trim()).map_err(|_| bad("not a URL; e.g. https://api.example.com/v1"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it must not carry a user name or password; set the key with `katachi ai key set`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(bad("it has no host")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(bad("plain http is allowed only to this machine (127.0.0.1, ::1, localhost): the prompt and the key would cross the network in clear")),
        _ => Err(bad("use https:// (or http:// to a server on this machine)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_a_reason_for_each_refusal() {
        let ok = AiSettings::check(
            "OpenAI",
            " gpt-4.1 ",
            Some("http://127.0.0.1:11434/v1"),
            None,
        )
        .unwrap();
        assert_eq!(
            (
                ok.provider.as_str(),
                ok.model.as_str(),
                ok.key_name.as_str()
            ),
            ("openai", "gpt-4.1", "openai")
        );
        assert!(matches!(
            AiSettings::check("gemini", "m", None, None),
            Err(SettingsError::UnknownProvider(_))
        ));
        assert!(matches!(
            AiSettings::check("openai", "", None, None),
            Err(SettingsError::InvalidModel(_))
        ));
        for (url, why) in [
            ("http://example.com/v1", "plain http"),
            ("https://user:pw@example.com", "user name"),
            ("https://example.com/v1?x=1", "query"),
            ("ftp://example.com", "use https"),
            ("not a url", "not a URL"),
        ] {
            let err = AiSettings::check("openai", "m", Some(url), None).unwrap_err();
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
        assert!(AiSettings::check("anthropic", "m", Some("https://[::1]:8443"), None).is_ok());
        assert!(AiSettings::check(
            "openai",
            "m",
            Some("http://localhost:8080/v1"),
            Some("ollama")
        )
        .is_ok());
        assert!(matches!(
            AiSettings::check("openai", "m", None, Some("Bad Name")),
            Err(SettingsError::InvalidKeyName(_))
        ));
    }

    #[test]
    fn a_workspace_uses_its_own_settings_else_the_default_else_none() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(
            &tmp.path().join("s.db"),
            &crate::vault::DerivedKey::from_bytes([3; 32], crate::vault::Purpose::STORE),
        )
        .unwrap();
        assert_eq!(
            AiSettings::for_workspace(&store, 5),
            Err(SettingsError::NotConfigured)
        );
        AiSettings::check("anthropic", "claude-x", None, None)
            .unwrap()
            .save(&store, DEFAULT_AI_SETTINGS)
            .unwrap();
        let default = AiSettings::for_workspace(&store, 5).unwrap();
        assert_eq!(
            (default.provider.as_str(), default.own),
            ("anthropic", false)
        );
        // a stored row that is no longer valid is refused when read
        store
            .ai_settings()
            .set(
                5,
                &AiSettingsRow {
                    provider: "openai".into(),
                    model: "m".into(),
                    base_url: Some("http://example.com".into()),
                    key_name: None,
                },
            )
            .unwrap();
        assert!(matches!(
            AiSettings::for_workspace(&store, 5),
            Err(SettingsError::InvalidBaseUrl { .. })
        ));
    }
}
