//! [`AgentCredentials`]: what the relay issued to this agent, kept sealed with the machine key.
//!
//! Sealed-file plaintext (JSON):
//! ```json
//! {"version":1,"relay_url":"https://…","agent_id":"agt_…","access_token":"…","signing_secret":"…","ca_pem":null,"device_name":"my-laptop"}
//! ```
//! `device_name` is optional: files written before it existed still open (the id is shown then).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::agent_home::AgentHome;
use crate::relay_link::https::{RelayHttpError, RelayUrl};
use crate::secret::SecretBytes;
use crate::vault::{MachineKey, SealError, SealedFile};

/// Format version of the JSON inside the sealed file.
const FORMAT_VERSION: u32 = 1;

/// Why the credentials could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The sealed file could not be opened or written: another machine, tampering, disk full…
    /// (the [`SealError`] says which and what to do). On a failed write the credentials are still
    /// held by the caller.
    #[error("agent credentials: {0}")]
    Seal(#[from] SealError),
    /// The file opened but does not hold credentials this katachi understands (written by a newer
    /// version, or damaged before sealing). Sign in again.
    #[error("agent credentials are unreadable ({reason}); run `katachi unregister --local-only` and sign in again")]
    Malformed {
        /// What is wrong (never a secret).
        reason: String,
    },
}

/// The agent's identity at one relay: which relay, its id there, and the two secrets it proves
/// itself with.
///
/// # Security
/// No `Clone`, `Serialize` or derived `Debug`: the secrets leave only through [`Self::access_token`]
/// and [`Self::signing_secret`], whose call sites say why, or sealed through [`Self::save`].
pub struct AgentCredentials {
    /// The relay that issued them.
    relay_url: RelayUrl,
    /// The agent's id at that relay.
    agent_id: String,
    /// Bearer token sent with every signed call.
    access_token: SecretBytes,
    /// Per-agent HMAC key, exactly as the relay issued it (its UTF-8 bytes key the HMAC).
    signing_secret: SecretBytes,
    /// The relay's CA, PEM, when it was pinned at sign-in (`--ca`).
    ca_pem: Option<String>,
    /// The name the agent registered under (the device name sent at sign-in), for the screen;
    /// `None` in credentials saved before it was kept.
    device_name: Option<String>,
}

impl std::fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCredentials")
            .field("relay_url", &self.relay_url.as_str())
            .field("agent_id", &self.agent_id)
            .field("access_token", &self.access_token)
            .field("signing_secret", &self.signing_secret)
            .field("ca_pinned", &self.ca_pem.is_some())
            .field("device_name", &self.device_name)
            .finish()
    }
}

/// The JSON written (borrowed fields; the buffer it is encoded into is zeroized).
#[derive(Serialize)]
struct FileRef<'a> {
    version: u32,
    relay_url: &'a str,
    agent_id: &'a str,
    access_token: &'a str,
    signing_secret: &'a str,
    ca_pem: Option<&'a str>,
    device_name: Option<&'a str>,
}

/// The JSON read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOwned {
    version: u32,
    relay_url: String,
    agent_id: String,
    access_token: String,
    signing_secret: String,
    ca_pem: Option<String>,
    /// Absent in files written before the name was kept.
    #[serde(default)]
    device_name: Option<String>,
}

impl AgentCredentials {
    /// Credentials as the relay issued them.
    pub fn new(
        relay_url: RelayUrl,
        agent_id: impl Into<String>,
        access_token: SecretBytes,
        signing_secret: SecretBytes,
        ca_pem: Option<String>,
    ) -> Self {
        Self {
            relay_url,
            agent_id: agent_id.into(),
            access_token,
            signing_secret,
            ca_pem,
            device_name: None,
        }
    }

    /// The same credentials, naming the device they were registered under (the name sent at
    /// sign-in and shown by the relay).
    #[must_use]
    pub fn with_device_name(mut self, device_name: impl Into<String>) -> Self {
        self.device_name = Some(device_name.into());
        self
    }

    /// A second copy (each secret duplicated into its own zeroizing buffer), for a component that
    /// must own its credentials (a relay client per online period, the sign-out call).
    pub fn duplicate(&self) -> Self {
        Self {
            relay_url: self.relay_url.clone(),
            agent_id: self.agent_id.clone(),
            access_token: self.access_token.duplicate(),
            signing_secret: self.signing_secret.duplicate(),
            ca_pem: self.ca_pem.clone(),
            device_name: self.device_name.clone(),
        }
    }

    /// The relay that issued them.
    pub fn relay_url(&self) -> &RelayUrl {
        &self.relay_url
    }

    /// The agent's id at the relay.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The bearer token. Only the relay client needs it, for the `Authorization` header.
    pub fn access_token(&self) -> &SecretBytes {
        &self.access_token
    }

    /// The HMAC signing key. Only the request signer needs it.
    pub fn signing_secret(&self) -> &SecretBytes {
        &self.signing_secret
    }

    /// The name the agent registered under, when known (credentials saved before it was kept
    /// have none).
    pub fn device_name(&self) -> Option<&str> {
        self.device_name.as_deref()
    }

    /// What to call this agent on screen: its device name, else its id.
    pub fn display_name(&self) -> &str {
        self.device_name.as_deref().unwrap_or(&self.agent_id)
    }

    /// The pinned relay CA (PEM), if any.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Replaces the pinned CA (the relay rotated its certificate authority and the user passed the
    /// new one with `--ca`).
    pub fn set_ca_pem(&mut self, ca_pem: Option<String>) {
        self.ca_pem = ca_pem;
    }

    /// The JSON plaintext of the sealed file, in a buffer zeroized on drop.
    ///
    /// # Errors
    /// [`CredentialsError::Malformed`] when a secret is not UTF-8 (never for credentials the relay
    /// issued).
    pub fn to_json(&self) -> Result<SecretBytes, CredentialsError> {
        // The secrets leave their newtypes only to be encoded into a zeroized buffer and sealed.
        let file = FileRef {
            version: FORMAT_VERSION,
            relay_url: self.relay_url.as_str(),
            agent_id: &self.agent_id,
            access_token: secret_text(&self.access_token, "access token")?,
            signing_secret: secret_text(&self.signing_secret, "signing secret")?,
            ca_pem: self.ca_pem.as_deref(),
            device_name: self.device_name.as_deref(),
        };
        let json =
            Zeroizing::new(
                serde_json::to_vec(&file).map_err(|e| CredentialsError::Malformed {
                    reason: e.to_string(),
                })?,
            );
        Ok(SecretBytes::new(json.to_vec()))
    }

    /// Parses the JSON plaintext of the sealed file.
    ///
    /// # Errors
    /// [`CredentialsError::Malformed`] naming what is wrong, never quoting the content.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CredentialsError> {
        // Errors are reduced to their position: serde's messages can quote a value.
        let file: FileOwned =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Malformed {
                reason: format!(
                    "not the expected JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        if file.version != FORMAT_VERSION {
            return Err(CredentialsError::Malformed {
                reason: format!(
                    "format version {} (this katachi reads {FORMAT_VERSION})",
                    file.version
                ),
            });
        }
        let relay_url = RelayUrl::parse(&file.relay_url).map_err(|e: RelayHttpError| {
            CredentialsError::Malformed {
                reason: e.to_string(),
            }
        })?;
        if file.agent_id.is_empty()
            || file.access_token.is_empty()
            || file.signing_secret.is_empty()
        {
            return Err(CredentialsError::Malformed {
                reason: "an empty agent id, token or signing secret".to_owned(),
            });
        }
        Ok(Self {
            relay_url,
            agent_id: file.agent_id,
            access_token: SecretBytes::new(file.access_token.into_bytes()),
            signing_secret: SecretBytes::new(file.signing_secret.into_bytes()),
            ca_pem: file.ca_pem,
            // An empty name says nothing: show the id instead.
            device_name: file.device_name.filter(|n| !n.trim().is_empty()),
        })
    }

    /// Seals the credentials into `file` under `key` (atomic, `0600`). Borrows `self`: when this
    /// fails the caller still holds the credentials and can retry.
    ///
    /// # Errors
    /// [`CredentialsError::Seal`] when the file cannot be written; the previous file is intact.
    pub fn save_to(&self, file: &SealedFile, key: &MachineKey) -> Result<(), CredentialsError> {
        let json = self.to_json()?;
        file.write(key, json.expose())?;
        Ok(())
    }

    /// Opens the credentials in `file`; `Ok(None)` when there are none.
    ///
    /// # Errors
    /// [`CredentialsError::Seal`] (another machine, tampered…) or [`CredentialsError::Malformed`].
    pub fn load_from(
        file: &SealedFile,
        key: &MachineKey,
    ) -> Result<Option<Self>, CredentialsError> {
        match file.read(key)? {
            Some(plain) => Self::from_json(plain.expose()).map(Some),
            None => Ok(None),
        }
    }

    /// Seals the credentials into the agent home's credentials file.
    ///
    /// # Errors
    /// As [`Self::save_to`].
    pub fn save(&self, home: &AgentHome) -> Result<(), CredentialsError> {
        self.save_to(&home.agent_credentials(), home.machine_key())
    }

    /// The agent home's credentials; `Ok(None)` when the agent is not registered.
    ///
    /// # Errors
    /// As [`Self::load_from`].
    pub fn load(home: &AgentHome) -> Result<Option<Self>, CredentialsError> {
        Self::load_from(&home.agent_credentials(), home.machine_key())
    }

    /// Removes the agent home's credentials file; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// [`CredentialsError::Seal`] when the OS refuses.
    pub fn wipe(home: &AgentHome) -> Result<bool, CredentialsError> {
        Ok(home.agent_credentials().remove()?)
    }
}

/// A secret as text, for the JSON encoder only.
fn secret_text<'s>(secret: &'s SecretBytes, what: &str) -> Result<&'s str, CredentialsError> {
    std::str::from_utf8(secret.expose()).map_err(|_| CredentialsError::Malformed {
        reason: format!("{what} is not UTF-8"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;
    use crate::vault::Purpose;

    fn sample() -> AgentCredentials {
        AgentCredentials::new(
            RelayUrl::parse("https://relay.example:8443").unwrap(),
            "agt_0123",
            SecretBytes::new(b"token-secret-value".to_vec()),
            SecretBytes::new(b"signing-secret-value".to_vec()),
            Some("-----BEGIN CERTIFICATE-----\n…".to_owned()),
        )
        .with_device_name("my-laptop")
    }

    fn machine_key(secret: u8) -> MachineKey {
        MachineKey::derive(
            &SecretBytes::new(vec![secret; 32]),
            &Fingerprint::from_components([("machine-id", "abc")]).unwrap(),
        )
    }

    #[test]
    fn json_round_trips_every_field() {
        let c = sample();
        let json = c.to_json().unwrap();
        let back = AgentCredentials::from_json(json.expose()).unwrap();
        assert_eq!(back.relay_url(), c.relay_url());
        assert_eq!(back.agent_id(), "agt_0123");
        assert_eq!(back.access_token().expose(), b"token-secret-value");
        assert_eq!(back.signing_secret().expose(), b"signing-secret-value");
        assert_eq!(back.ca_pem(), c.ca_pem());
        assert_eq!(back.device_name(), Some("my-laptop"));
        assert_eq!(back.display_name(), "my-laptop");
    }

    #[test]
    fn credentials_written_before_the_device_name_was_kept_still_open_and_show_the_id() {
        // Exactly what version 1 wrote before `device_name` existed.
        let old = br#"{"version":1,"relay_url":"https://relay.example:8443","agent_id":"agt_0123","access_token":"t","signing_secret":"s","ca_pem":null}"#;
        let back = AgentCredentials::from_json(old).unwrap();
        assert_eq!(back.agent_id(), "agt_0123");
        assert_eq!(back.device_name(), None);
        assert_eq!(back.display_name(), "agt_0123");
        // Sealed the old way too: the file on disk opens.
        let tmp = tempfile::tempdir().unwrap();
        let file = SealedFile::new(tmp.path().join("agent.sealed"), Purpose::AGENT_CREDENTIALS);
        let key = machine_key(7);
        file.write(&key, old).unwrap();
        let loaded = AgentCredentials::load_from(&file, &key).unwrap().unwrap();
        assert_eq!(loaded.display_name(), "agt_0123");
    }

    #[test]
    fn sealed_file_round_trips_and_holds_no_plaintext() {
        let tmp = tempfile::tempdir().unwrap();
        let file = SealedFile::new(tmp.path().join("agent.sealed"), Purpose::AGENT_CREDENTIALS);
        let key = machine_key(7);
        assert!(AgentCredentials::load_from(&file, &key).unwrap().is_none());
        sample().save_to(&file, &key).unwrap();
        let raw = std::fs::read(file.path()).unwrap();
        for secret in [
            &b"token-secret-value"[..],
            b"signing-secret-value",
            b"agt_0123",
        ] {
            assert!(!raw.windows(secret.len()).any(|w| w == secret));
        }
        let back = AgentCredentials::load_from(&file, &key).unwrap().unwrap();
        assert_eq!(back.agent_id(), "agt_0123");
        assert_eq!(back.signing_secret().expose(), b"signing-secret-value");
        // Another machine's key cannot open them, and says so.
        assert!(matches!(
            AgentCredentials::load_from(&file, &machine_key(8)),
            Err(CredentialsError::Seal(SealError::WrongMachine { .. }))
        ));
    }

    #[test]
    fn a_failed_save_leaves_the_credentials_with_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        let file = SealedFile::new(
            tmp.path().join("missing-folder").join("agent.sealed"),
            Purpose::AGENT_CREDENTIALS,
        );
        let key = machine_key(7);
        let creds = sample();
        assert!(matches!(
            creds.save_to(&file, &key),
            Err(CredentialsError::Seal(SealError::Write(_)))
        ));
        // Still usable, and the retry succeeds once the folder exists.
        std::fs::create_dir(tmp.path().join("missing-folder")).unwrap();
        creds.save_to(&file, &key).unwrap();
        assert!(AgentCredentials::load_from(&file, &key).unwrap().is_some());
    }

    #[test]
    fn debug_shows_who_but_never_the_secrets() {
        let shown = format!("{:?}", sample());
        assert!(shown.contains("agt_0123"), "{shown}");
        assert!(!shown.contains("token-secret-value"), "{shown}");
        assert!(!shown.contains("signing-secret-value"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn malformed_json_errors_never_quote_the_content() {
        let bad = br#"{"version":1,"relay_url":"https://r","agent_id":"a","access_token":7,"signing_secret":"leaky-value","ca_pem":null}"#;
        let err = AgentCredentials::from_json(bad).unwrap_err().to_string();
        assert!(!err.contains("leaky-value"), "{err}");
        let newer = br#"{"version":2,"relay_url":"https://r","agent_id":"a","access_token":"t","signing_secret":"s","ca_pem":null}"#;
        assert!(matches!(
            AgentCredentials::from_json(newer),
            Err(CredentialsError::Malformed { .. })
        ));
    }
}
