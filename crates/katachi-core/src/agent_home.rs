//! One agent home opened as a whole: folders, config, keystore, fingerprint, machine key, and from
//! them the store, sealed files and API keys. The CLI, the tray and tests all start here.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, KeystoreBackend};
use crate::dirs::{DirsError, KatachiDirs};
use crate::fingerprint::{
    Fingerprint, FingerprintError, FingerprintRecord, FingerprintSource, RecordError,
};
use crate::store::{Store, StoreError};
use crate::vault::{
    load_or_create_machine_secret, ApiKeys, FileKeystore, Keystore, KeystoreError, MachineKey,
    OsKeychain, Purpose, SealedFile,
};

/// Why the agent home could not be opened; each variant names the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The folders could not be found or created.
    #[error(transparent)]
    Dirs(#[from] DirsError),
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The machine's identity could not be read.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// The keystore is unreachable, locked or holds a corrupted secret.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The fingerprint record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// An opened agent home.
pub struct AgentHome {
    /// Where everything lives.
    dirs: KatachiDirs,
    /// The parsed config.
    config: Config,
    /// Where the machine secret and API keys live.
    keystore: Box<dyn Keystore>,
    /// The machine's identity now.
    fingerprint: Fingerprint,
    /// Derived from the keystore secret and the fingerprint.
    machine_key: MachineKey,
}

impl std::fmt::Debug for AgentHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHome")
            .field("dirs", &self.dirs)
            .field("keystore", &self.keystore.kind())
            .finish_non_exhaustive()
    }
}

/// The keystore the config asks for.
pub fn keystore_for(
    config: &Config,
    dirs: &KatachiDirs,
    fingerprint: &Fingerprint,
) -> Box<dyn Keystore> {
    match config.keystore.backend {
        KeystoreBackend::Keychain => Box::new(OsKeychain::new(dirs.keychain_service())),
        KeystoreBackend::File => {
            Box::new(FileKeystore::new(dirs.file_keystore_path(), fingerprint))
        }
    }
}

impl AgentHome {
    /// Opens the home with the keystore its config names, creating folders and the machine secret on
    /// first run.
    ///
    /// # Errors
    /// [`HomeError`] naming the layer that failed.
    pub fn open(dirs: KatachiDirs, source: &dyn FingerprintSource) -> Result<Self, HomeError> {
        dirs.ensure()?;
        let config = Config::load(&dirs.config_file())?;
        let fingerprint = source.read()?;
        let keystore = keystore_for(&config, &dirs, &fingerprint);
        Self::assemble(dirs, config, fingerprint, keystore)
    }

    /// Opens the home with an explicit keystore (other crates' tests use [`crate::vault::MemoryKeystore`]).
    ///
    /// # Errors
    /// [`HomeError`] naming the layer that failed.
    pub fn open_with_keystore(
        dirs: KatachiDirs,
        source: &dyn FingerprintSource,
        keystore: Box<dyn Keystore>,
    ) -> Result<Self, HomeError> {
        dirs.ensure()?;
        let config = Config::load(&dirs.config_file())?;
        let fingerprint = source.read()?;
        Self::assemble(dirs, config, fingerprint, keystore)
    }

    fn assemble(
        dirs: KatachiDirs,
        config: Config,
        fingerprint: Fingerprint,
        keystore: Box<dyn Keystore>,
    ) -> Result<Self, HomeError> {
        let (secret, created) = load_or_create_machine_secret(keystore.as_ref())?;
        let record_path = dirs.fingerprint_record_path();
        // Record the machine when the secret is new (a new identity) or nothing is recorded yet. An
        // existing record is kept as is, so `doctor` can still name what changed later.
        if created || FingerprintRecord::load(&record_path)?.is_none() {
            FingerprintRecord::of(&fingerprint).save(&record_path)?;
        }
        let machine_key = MachineKey::derive(&secret, &fingerprint);
        Ok(Self {
            dirs,
            config,
            keystore,
            fingerprint,
            machine_key,
        })
    }

    /// The folders.
    pub fn dirs(&self) -> &KatachiDirs {
        &self.dirs
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keystore in use.
    pub fn keystore(&self) -> &dyn Keystore {
        self.keystore.as_ref()
    }

    /// The machine's identity.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The machine key.
    pub fn machine_key(&self) -> &MachineKey {
        &self.machine_key
    }

    /// Opens the store (one connection; call again for another thread).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn store(&self) -> Result<Store, StoreError> {
        Store::open(
            &self.dirs.store_path(),
            &self.machine_key.key_for(Purpose::STORE),
        )
    }

    /// API keys of AI providers.
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys::new(self.keystore.as_ref(), &self.machine_key)
    }

    /// The sealed file holding the agent's relay credentials.
    pub fn agent_credentials(&self) -> SealedFile {
        SealedFile::new(
            self.dirs.agent_credentials_path(),
            Purpose::AGENT_CREDENTIALS,
        )
    }

    /// The sealed file holding the tunnel credentials.
    pub fn tunnel_credentials(&self) -> SealedFile {
        SealedFile::new(
            self.dirs.credentials_dir().join("tunnel.sealed"),
            Purpose::TUNNEL_CREDENTIALS,
        )
    }

    /// Folders that must never become workspaces: katachi's own data and config.
    pub fn protected_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.dirs.data().to_path_buf(),
            self.dirs.config().to_path_buf(),
        ]
    }
}
